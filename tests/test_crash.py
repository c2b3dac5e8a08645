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

# The sampled titles and settings of base_samples and generate: generate reads base_samples' file for the same.
SAMPLING = [
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
]


def stage_command(stage: str, data: Path, out: Path, model: Path, base_samples: Path | None = None) -> list[str]:
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
        "base_samples": [
            "--test",
            str(data / "test.jsonl"),
            "--model-dir",
            str(model),
            "--base-samples",
            str(out / "base_samples.json"),
            *SAMPLING,
        ],
        "generate": [
            "--test",
            str(data / "test.jsonl"),
            "--model-dir",
            str(model),
            "--adapter",
            str(out / "adapter"),
            "--base-samples",
            str(base_samples),
            "--samples",
            str(out / "samples.json"),
            *SAMPLING,
        ],
    }
    return [sys.executable, str(SCRIPTS / f"{stage}.py"), *commands[stage]]


def outputs(out: Path) -> dict:
    """Every file of the stage's outputs (the adapter input of generate excluded; the generation timings,
    which differ from run to run, taken out of samples.json and base_samples.json)."""
    files = {k: v for k, v in folder_bytes(out).items() if not k.startswith("adapter")}
    for name in ("samples.json", "base_samples.json"):
        if name in files:
            samples = json.loads(files[name])
            samples.pop("timing")
            files[name] = json.dumps(samples, sort_keys=True).encode()
    return files


@pytest.fixture(scope="module")
def trained_adapter(packed_dir, tiny_model_dir, tmp_path_factory) -> Path:
    from tests.test_train import cli_args, run_train

    out = tmp_path_factory.mktemp("adapter_run")
    assert run_train(cli_args(packed_dir, tiny_model_dir, out, "--max-steps", "2")).wait(timeout=600) == 0
    return out / "adapter"


@pytest.fixture(scope="module")
def base_samples_file(packed_dir, tiny_model_dir, tmp_path_factory) -> Path:
    """base_samples' output for generate's titles and settings (generate's input)."""
    out = tmp_path_factory.mktemp("base_samples")
    command = stage_command("base_samples", packed_dir.parent, out, tiny_model_dir)
    assert subprocess.run(command, capture_output=True).returncode == 0
    return out / "base_samples.json"


@pytest.mark.parametrize("stage", ["tokenize_data", "pack", "base_samples", "generate"])
def test_sigkill_then_rerun_gives_the_uninterrupted_outputs(
    stage, packed_dir, tiny_model_dir, trained_adapter, base_samples_file, tmp_path
):
    import shutil

    data = packed_dir.parent

    def command(out: Path) -> list[str]:
        return stage_command(stage, data, out, tiny_model_dir, base_samples_file)

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    for out in (whole, killed):
        out.mkdir()
        shutil.copytree(trained_adapter, out / "adapter")
    started = time.perf_counter()
    assert subprocess.run(command(whole), capture_output=True).returncode == 0
    duration = time.perf_counter() - started
    expected = outputs(whole)
    rng = random.Random(stage)
    for _ in range(2):
        process = subprocess.Popen(command(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 0.95) * duration)
        process.send_signal(signal.SIGKILL)
        process.wait()
        left = outputs(killed)
        # Whatever is there under a final name is complete (a temporary name may remain until the rerun).
        finals = {k: v for k, v in left.items() if not Path(k).parts[0].startswith(".")}
        assert all(expected.get(name) == content for name, content in finals.items())
    assert subprocess.run(command(killed), capture_output=True).returncode == 0
    assert outputs(killed) == expected  # and the rerun removed what the killed runs left
