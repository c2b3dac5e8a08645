"""Every stage's failure lands in its rule's log with the traceback, and the console gets one short line.

A small Snakefile runs each stage script through `script:` (as the workflow does) on inputs it cannot use:
a folder given as the raw file, garbage where JSON is expected, an empty folder where a model should be."""

import re
import subprocess
import sys

from tests.conftest import SCRIPTS

BAD_JSON = "bad/garbage.json"
EMPTY = "bad/empty_folder"
TEMPLATES = {
    "instruction_template": "{title}",
    "response_template": "{content}",
    "base_prompt_template": "{title}",
}

# stage script -> (inputs, outputs, params); an output named with a trailing "/" is a folder
STAGES = {
    "prepare": (
        {"raw": EMPTY},
        ["train", "validation", "test", "counts", "rejects"],
        [],
    ),
    "tokenize_data": (
        {"train": BAD_JSON, "validation": BAD_JSON, "test": BAD_JSON, "model_dir": EMPTY},
        ["dataset/", "stats"],
        ["instruction_template", "response_template"],
    ),
    "pack": ({"tokenized": EMPTY, "tokenize_stats": BAD_JSON}, ["dataset/", "stats"], []),
    "base_model": ({}, ["model_dir/"], []),
    "train": (
        {"packed": EMPTY, "model_dir": EMPTY},
        ["adapter/", "train_log", "history", "timing"],
        [],
    ),
    "generate": (
        {"test": BAD_JSON, "model_dir": EMPTY, "adapter": EMPTY, "base_samples": BAD_JSON},
        ["samples"],
        ["instruction_template", "response_template", "base_prompt_template"],
    ),
    "base_samples": (
        {"test": BAD_JSON, "model_dir": EMPTY},
        ["base_samples"],
        ["instruction_template", "response_template", "base_prompt_template"],
    ),
    "base_eval": (
        {"test": BAD_JSON, "validation": BAD_JSON, "model_dir": EMPTY},
        ["base_eval"],
        ["instruction_template", "response_template", "base_prompt_template"],
    ),
    "metrics": (
        {"test": BAD_JSON, "validation": BAD_JSON, "model_dir": EMPTY, "adapter": EMPTY, "base_eval": BAD_JSON},
        ["metrics"],
        ["instruction_template", "response_template", "base_prompt_template"],
    ),
    "export": ({"model_dir": EMPTY, "adapter": EMPTY}, ["merged/"], []),
    "plots": ({"train_log": BAD_JSON, "tokenized": EMPTY}, ["curve", "lengths"], []),
    "run_report": (
        {
            name: BAD_JSON
            for name in ("counts", "token_stats", "pack_stats", "timing", "history", "samples", "metrics", "config")
        }
        | {"curve_png": BAD_JSON, "lengths_png": BAD_JSON},
        ["report"],
        [],
    ),
}
EXTRA_PARAMS = {
    "base_model": 'source="./no/such/model"',
    "train": 'checkpoint_dir="out/train/checkpoints", lora={"r": 4, "alpha": 4, "dropout": 0.0}',
}


def rule_text(stage: str) -> str:
    inputs, outputs, params = STAGES[stage]
    lines = [f"rule {stage}:", "    input:"]
    lines += [f'        {name}="{path}",' for name, path in inputs.items()] or ['        "bad/garbage.json",']
    lines.append("    output:")
    for name in outputs:
        path = f"out/{stage}/{name.rstrip('/')}"
        lines.append(
            f'        {name.rstrip("/")}=directory("{path}"),' if name.endswith("/") else f'        {name}="{path}",'
        )
    lines += ["    log:", f'        "logs/{stage}.log",', "    params:"]
    lines += [f"        {name}=lambda wildcards: {TEMPLATES[name]!r}," for name in params]
    lines += [f"        {EXTRA_PARAMS[stage]},"] if stage in EXTRA_PARAMS else []
    lines += ["    script:", f'        "{SCRIPTS / (stage + ".py")}"', ""]
    return "\n".join(lines)


def test_every_stage_failure_lands_in_its_log(tmp_path):
    (tmp_path / "bad" / "empty_folder").mkdir(parents=True)
    (tmp_path / BAD_JSON).write_text("this is not JSON {\n")
    targets = [f"out/{stage}/{STAGES[stage][1][0].rstrip('/')}" for stage in STAGES]
    (tmp_path / "Snakefile").write_text("\n\n".join(rule_text(stage) for stage in STAGES))
    command = [sys.executable, "-m", "snakemake", "--cores", "2", "--keep-going", "--directory", str(tmp_path)]
    result = subprocess.run([*command, *targets], capture_output=True, text=True, timeout=900, cwd=tmp_path)
    console = result.stdout + result.stderr
    assert result.returncode != 0
    for stage in STAGES:
        log = (tmp_path / "logs" / f"{stage}.log").read_text()
        assert "Traceback (most recent call last)" in log, (stage, log[-2000:], console[-3000:])
        # the console names the stage's one-line error and points to the log that holds the details
        short = re.search(rf"\b{stage}: [^\n]* \(details and traceback in logs/{stage}\.log\)", console)
        assert short, (stage, console[-3000:])
    assert "Traceback (most recent call last)" not in console
    assert "is a folder, not a file" in (tmp_path / "logs" / "prepare.log").read_text()
