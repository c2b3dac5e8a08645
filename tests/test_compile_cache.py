"""The workflow's compile cache (ftpipe.compile_cache): where Inductor's caches go, and who decides."""

import os

import torch
from torch._inductor.runtime.cache_dir_utils import default_cache_dir

from ftpipe.compile_cache import cache_key, use_compile_cache


def test_the_cache_goes_under_the_working_directory_keyed_by_torch_and_device(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for value in (None, default_cache_dir()):  # unset, or torch's own default written into the environment
        if value is None:
            monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
        else:
            monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", value)
        folder = use_compile_cache(torch.device("cpu"))
        assert folder == tmp_path / ".snakemake" / "compile_cache" / f"{torch.__version__}_cpu" and folder.is_dir()
        assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(folder)
    assert torch._inductor.config.fx_graph_cache and torch._functorch.config.enable_autograd_cache


def test_a_folder_the_user_chose_is_kept(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert use_compile_cache(torch.device("cpu")) == tmp_path / "mine"
    assert not (tmp_path / ".snakemake").exists()


def test_the_key_is_a_plain_folder_name():
    assert cache_key(torch.device("cpu")) == f"{torch.__version__}_cpu"
    assert "/" not in cache_key(torch.device("cpu"))


def test_training_points_the_cache_before_the_model_loads_only_when_it_compiles(tmp_path, monkeypatch):
    """start_compiler runs before the model loads: a compiling plan gets the workflow's cache (the compile
    workers it starts inherit that environment); a plan without compile leaves everything as it was."""
    from ftpipe.training.speed_plan import start_compiler

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    start_compiler({"compile": False}, torch.device("cpu"))
    assert "TORCHINDUCTOR_CACHE_DIR" not in os.environ and not (tmp_path / ".snakemake").exists()
    start_compiler({"compile": True}, torch.device("cpu"))
    folder = tmp_path / ".snakemake" / "compile_cache" / f"{torch.__version__}_cpu"
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(folder) and folder.is_dir()
