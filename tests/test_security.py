"""Security: no remote code, safetensors only unless pickle is allowed, torch.load with weights_only, the hub
token never logged, and no output path from config outside the working directory."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from base_model import load_source

from tests.conftest import ROOT, SCRIPTS


@pytest.fixture()
def pickle_model(tiny_model_dir, tmp_path) -> Path:
    """The tiny model with its weights only as a pickle file (pytorch_model.bin)."""
    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    folder.mkdir()
    for name in os.listdir(tiny_model_dir):
        if name != "model.safetensors":
            (folder / name).write_bytes((tiny_model_dir / name).read_bytes())
    torch.save(load_file(str(tiny_model_dir / "model.safetensors")), folder / "pytorch_model.bin")
    return folder


def test_pickle_weights_are_refused_unless_allowed(pickle_model):
    with pytest.raises(OSError, match="safetensors"):
        load_source(str(pickle_model), trust_remote_code=False, allow_pickle=False)
    model, _ = load_source(str(pickle_model), trust_remote_code=False, allow_pickle=True)
    assert model.config.model_type == "llama"


def test_remote_code_is_not_run(tiny_model_dir, tmp_path):
    folder = tmp_path / "remote"
    folder.mkdir()
    for name in os.listdir(tiny_model_dir):
        (folder / name).write_bytes((tiny_model_dir / name).read_bytes())
    marker = tmp_path / "remote_code_ran"
    (folder / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    try:
        load_source(str(folder), trust_remote_code=False, allow_pickle=False)
    except ValueError as err:
        assert "trust_remote_code" in str(err)
    assert not marker.exists()


def test_every_torch_load_is_weights_only():
    calls = []
    for path in [*SCRIPTS.rglob("*.py"), *(ROOT / "bench").rglob("*.py")]:
        calls += [(path.name, line) for line in path.read_text().splitlines() if "torch.load(" in line]
    assert calls, "expected checkpoint loading code"
    assert all("weights_only=True" in line for _, line in calls), calls


def test_hub_token_is_never_logged(tiny_model_dir, tmp_path):
    secret = "hf_SENTINEL_do_not_log_1234567890"
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPTS / "base_model.py"),
            "--source",
            str(tiny_model_dir),
            "--model-dir",
            str(tmp_path / "model"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_TOKEN": secret},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert secret not in result.stdout + result.stderr
    assert not any(secret in p.read_text(errors="ignore") for p in (tmp_path / "model").iterdir() if p.is_file())


def test_output_paths_cannot_leave_the_working_directory():
    """Every output path is fixed under results/ (or logs/, benchmarks/) but for run_name, whose pattern
    allows no separator or parent reference."""
    import yaml

    from ftpipe.workflow.config_check import config_problems, experiment_problems

    schema = yaml.safe_load((ROOT / "schemas" / "config.schema.yaml").read_text())
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    for bad in ("../up", "/abs", "a/b", ".hidden", "..", "a\\b"):
        assert config_problems({**config, "run_name": bad}, schema), bad
        assert experiment_problems({**config, "experiment": {"runs": {bad: {}}}}, schema), bad
        if "/" in bad or "\\" in bad:  # a grid run is named axis~value: a separator in a value is refused
            grid = {"axes": {"data.raw": [bad]}}
            assert experiment_problems({**config, "experiment": {"grid": grid}}, schema), bad
    for rule_file in (ROOT / "rules").glob("*.smk"):
        for path in re.findall(r'f?"((?:results|logs|benchmarks)[^"]*)"', rule_file.read_text()):
            assert ".." not in path
