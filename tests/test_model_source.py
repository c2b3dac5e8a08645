"""base_model: a source that cannot be loaded ends in one line saying what was tried and what to do."""

import subprocess
import sys

import pytest
from base_model import load_source

from tests.conftest import SCRIPTS


def test_a_missing_local_folder_is_named_as_a_folder(tmp_path):
    missing = tmp_path / "no_model"
    with pytest.raises(SystemExit, match=r"tried a local folder, but .*no_model is not one; download the model"):
        load_source(str(missing), trust_remote_code=False, allow_pickle=False)


def test_a_hub_id_the_hub_cannot_provide_says_what_was_tried(monkeypatch):
    """No network here: the hub's answer is stood in for by the error transformers raises offline."""
    import transformers

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files.\nCheck your connection.")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", offline)
    with pytest.raises(SystemExit) as stop:
        load_source("TinyLlama/TinyLlama_v1.1", trust_remote_code=False, allow_pickle=False)
    message = str(stop.value.code)
    assert "\n" not in message
    assert (
        "tried a local folder (none here), an embedded model (not one of embedded:smollm2-135m) and the hub" in message
    )
    assert "We couldn't connect" in message and "set model.source to its folder" in message


def test_an_invalid_hub_id_stops_with_one_line_not_a_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "base_model.py"), "--source", "not a hub id!", "--model-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "base_model: model.source 'not a hub id!': tried a local folder" in result.stderr
