"""The whole workflow on a tiny config, every target checked; then dry runs: which jobs a change reruns."""

import html
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, run_snakemake

RULES_AFTER_TRAIN = {"train", "generate", "metrics", "plots", "report"}


def test_every_target(finished_run):
    import datasets
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    data, run = finished_run / "results" / "data", finished_run / "results" / "runs" / "tiny"
    tokenized = datasets.load_from_disk(str(data / "tokenized"))
    assert set(tokenized) == {"train", "validation", "test"} and len(tokenized["train"]) > 0
    packed = datasets.load_from_disk(str(data / "packed"))
    assert {len(ids) for ids in packed["train"]["input_ids"]} == {128}
    base = AutoModelForCausalLM.from_pretrained(finished_run / "results" / "base_model")
    PeftModel.from_pretrained(base, str(run / "adapter"))
    history = json.loads((run / "training_history.json").read_text())
    assert history["step"] == 4 and len(history["history"]) == 4
    assert (run / "train_log.csv").read_text().startswith("step,")
    assert json.loads((run / "timing.json").read_text())["steps"] == 4
    for png in ("train_curve.png", "token_lengths.png"):
        assert (run / "plots" / png).read_bytes().startswith(b"\x89PNG")
    samples = json.loads((run / "samples.json").read_text())["samples"]
    report = (finished_run / "results" / "report.html").read_text()
    assert len(samples) == 2
    for sample in samples:
        assert set(sample) >= {"title", "reference", "base_plain", "base_tagged", "adapter"}
        assert html.escape(sample["title"]) in report and html.escape(sample["adapter"]) in report
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["variants"]) == {"base_plain", "base_tagged", "adapter"}
    for values in metrics["variants"].values():
        assert values["rouge_l"]["low"] <= values["rouge_l"]["mean"] <= values["rouge_l"]["high"]
        assert values["perplexity"]["perplexity"] > 1
    assert "Quality on held-out data" in report
    assert "data:image/png;base64," in report and "http://" not in report.split("<h2>Configuration")[0]
    for log in ("prepare", "tokenize", "pack", "base_model"):
        assert (finished_run / "logs" / f"{log}.log").stat().st_size > 0


def planned_rules(workdir: Path, overrides: dict) -> set[str]:
    """Rules a dry run would execute after the finished run, with `overrides` merged into the config."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "dryrun.py"), str(workdir), json.dumps(overrides)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({}, set()),
        ({"generate": {"temperature": 0.3}}, {"generate", "report"}),
        ({"generate": {"num_titles": 3}}, {"generate", "report"}),
        ({"metrics": {"num_titles": 2}}, {"metrics", "report"}),
        ({"train": {"learning_rate": 1e-4}}, RULES_AFTER_TRAIN),
        ({"train": {"lora": {"r": 8}}}, RULES_AFTER_TRAIN),
        ({"tokenize": {"max_len": 96}}, {"tokenize", "pack"} | RULES_AFTER_TRAIN),
        ({"pack": {"mode": "reference"}}, {"pack"} | RULES_AFTER_TRAIN),
        ({"data": {"seed": 1}}, {"prepare", "tokenize", "pack"} | RULES_AFTER_TRAIN),
    ],
    ids=lambda value: json.dumps(value) if isinstance(value, dict) else None,
)
def test_a_change_reruns_exactly_what_depends_on_it(finished_run, overrides, expected):
    assert planned_rules(finished_run, overrides) == expected


def test_ask_prints_a_description_per_title(finished_run):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "ask.py"),
            "--config",
            str(finished_run / "config.yaml"),
            "--results",
            str(finished_run / "results"),
            "--greedy",
            "Girls Ballet Tutu Neon Pink",
            "Steel Mug",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "## Girls Ballet Tutu Neon Pink\n" in result.stdout and "## Steel Mug\n" in result.stdout


def test_export_merges_into_a_16_bit_base(finished_run):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    result = run_snakemake(finished_run, "--cores", "2", "results/runs/tiny/merged", timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    merged = AutoModelForCausalLM.from_pretrained(finished_run / "results" / "runs" / "tiny" / "merged")
    assert merged.dtype == torch.bfloat16 and not hasattr(merged, "peft_config")
    base = AutoModelForCausalLM.from_pretrained(finished_run / "results" / "base_model", dtype=torch.bfloat16)
    with_adapter = PeftModel.from_pretrained(base, str(finished_run / "results" / "runs" / "tiny" / "adapter"))
    ids = torch.randint(0, 1000, (2, 24))
    with torch.no_grad():
        expected = with_adapter(input_ids=ids).logits.float()
        actual = merged(input_ids=ids).logits.float()
    assert (actual - expected).norm() / expected.norm() < 2e-2  # bf16 rounding of the merged weights


@contextmanager
def changed_file(path: Path, append: bytes = b""):
    """Touch `path` (mtime: now), optionally appending bytes; restore content and times after."""
    content, stat = path.read_bytes(), path.stat()
    try:
        path.write_bytes(content + append)
        os.utime(path, (time.time(), time.time()))
        yield
    finally:
        path.write_bytes(content)
        os.utime(path, (stat.st_atime, stat.st_mtime))


def test_touching_the_raw_file_reruns_nothing(finished_run, tiny_catalog):
    with changed_file(tiny_catalog):
        assert planned_rules(finished_run, {}) == set()


def test_changing_the_raw_file_reruns_everything_after_it(finished_run, tiny_catalog):
    with changed_file(tiny_catalog, b'{"title": "New product", "content": "A new description."}\n'):
        assert planned_rules(finished_run, {}) == {"prepare", "tokenize", "pack"} | RULES_AFTER_TRAIN


def test_editing_a_stage_script_reruns_that_stage_and_after(finished_run):
    with changed_file(ROOT / "scripts" / "pack.py"):  # Snakemake tracks a rule's script by its mtime
        assert planned_rules(finished_run, {}) == {"pack"} | RULES_AFTER_TRAIN


def test_editing_the_shared_package_reruns_the_stages(finished_run):
    with changed_file(ROOT / "scripts" / "ftpipe" / "prompts.py", b"\n"):
        assert planned_rules(finished_run, {}) >= {"prepare", "tokenize", "pack", "train", "report"}


def test_metrics_are_deterministic(finished_run, tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    from metrics import build_parser, metrics

    config = yaml.safe_load((finished_run / "config.yaml").read_text())
    data, run = finished_run / "results" / "data" / "prepared", finished_run / "results" / "runs" / "tiny"
    for name in ("a", "b"):
        metrics(
            build_parser().parse_args(
                [
                    "--test",
                    str(data / "test.jsonl"),
                    "--validation",
                    str(data / "validation.jsonl"),
                    "--model-dir",
                    str(finished_run / "results" / "base_model"),
                    "--adapter",
                    str(run / "adapter"),
                    "--metrics",
                    str(tmp_path / f"{name}.json"),
                    "--num-titles",
                    "3",
                    "--perplexity-rows",
                    "4",
                    "--max-new-tokens",
                    "8",
                    "--instruction-template",
                    config["prompt"]["instruction"],
                    "--response-template",
                    config["prompt"]["response"],
                    "--base-prompt-template",
                    config["prompt"]["base_plain"],
                ]
            )
        )
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert (tmp_path / "a.json").read_bytes() == (run / "metrics.json").read_bytes()


def test_snakemake_report_archive(finished_run, tmp_path):
    import zipfile

    archive = tmp_path / "report.zip"
    result = run_snakemake(finished_run, "--report", str(archive), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    names = zipfile.ZipFile(archive).namelist()
    for marked in ("metrics.json", "train_curve.png", "token_lengths.png", "report.html"):
        assert any(name.endswith(marked) for name in names), names
