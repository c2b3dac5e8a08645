"""Crash drills: SIGKILL a long stage at random points; nothing half-written is left under a final name, and
the rerun's outputs equal those of an uninterrupted run. (Training is drilled in test_train.py.)"""

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import PROMPT, SCRIPTS
from tests.test_tokenize_pack import folder_bytes


def stage_command(stage: str, data: Path, out: Path, model: Path) -> list[str]:
    splits = [item for s in ("train", "validation", "test") for item in (f"--{s}", str(data / f"{s}.jsonl"))]
    commands = {
        "tokenize_data": [
            *splits,
            "--model-dir",
            str(model),
            "--dataset",
            str(out / "dataset"),
            "--stats",
            str(out / "stats.json"),
            "--max-len",
            "128",
            "--instruction-template",
            PROMPT,
            "--response-template",
            "{content}<eos>",
        ],
        "pack": [
            "--tokenized",
            str(data / "tokenized"),
            "--tokenize-stats",
            str(data / "tokenize_stats.json"),
            "--dataset",
            str(out / "dataset"),
            "--stats",
            str(out / "stats.json"),
            "--max-len",
            "128",
        ],
        "generate": [
            "--test",
            str(data / "test.jsonl"),
            "--model-dir",
            str(model),
            "--adapter",
            str(out / "adapter"),
            "--samples",
            str(out / "samples.json"),
            "--num-titles",
            "4",
            "--max-new-tokens",
            "12",
            "--instruction-template",
            PROMPT,
            "--response-template",
            "{content}<eos>",
            "--base-prompt-template",
            "Describe: {title}\\n",
        ],
    }
    return [sys.executable, str(SCRIPTS / f"{stage}.py"), *commands[stage]]


def outputs(out: Path) -> dict:
    """Every file of the stage's outputs (the adapter input of generate excluded; the generation timings,
    which differ from run to run, taken out of samples.json)."""
    files = {k: v for k, v in folder_bytes(out).items() if not k.startswith("adapter")}
    if "samples.json" in files:
        samples = json.loads(files["samples.json"])
        samples.pop("timing")
        files["samples.json"] = json.dumps(samples, sort_keys=True).encode()
    return files


@pytest.fixture(scope="module")
def trained_adapter(packed_dir, tiny_model_dir, tmp_path_factory) -> Path:
    from tests.test_train import cli_args, run_train

    out = tmp_path_factory.mktemp("adapter_run")
    assert run_train(cli_args(packed_dir, tiny_model_dir, out, "--max-steps", "2")).wait(timeout=600) == 0
    return out / "adapter"


@pytest.mark.parametrize("stage", ["tokenize_data", "pack", "generate"])
def test_sigkill_then_rerun_gives_the_uninterrupted_outputs(
    stage, packed_dir, tiny_model_dir, trained_adapter, tmp_path
):
    import shutil

    data = packed_dir.parent
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    for out in (whole, killed):
        out.mkdir()
        shutil.copytree(trained_adapter, out / "adapter")
    started = time.perf_counter()
    assert subprocess.run(stage_command(stage, data, whole, tiny_model_dir), capture_output=True).returncode == 0
    duration = time.perf_counter() - started
    expected = outputs(whole)
    rng = random.Random(stage)
    for _ in range(2):
        process = subprocess.Popen(
            stage_command(stage, data, killed, tiny_model_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(0.3, 0.95) * duration)
        process.send_signal(signal.SIGKILL)
        process.wait()
        left = outputs(killed)
        # Whatever is there under a final name is complete (a temporary name may remain until the rerun).
        finals = {k: v for k, v in left.items() if not Path(k).parts[0].startswith(".")}
        assert all(expected.get(name) == content for name, content in finals.items())
    assert subprocess.run(stage_command(stage, data, killed, tiny_model_dir), capture_output=True).returncode == 0
    assert outputs(killed) == expected  # and the rerun removed what the killed runs left
