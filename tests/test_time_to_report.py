"""bench/time_to_report.py: the breakdown it reads from a finished work folder (the run itself is the benchmark's)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
from time_to_report import (  # noqa: E402
    archive_logs,
    breakdown,
    compile_bytecode,
    critical_path,
    installed_code_dirs,
    job_timeline,
    reuse_inputs,
    run,
    workflow_environment,
)


def write(path, record) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def test_the_breakdown_holds_each_evaluation_stage_timing(tmp_path):
    write(tmp_path / "results/base_eval/0123456789/base_eval.json", {"timing": {"load_model": 2.0, "total": 9.0}})
    write(tmp_path / "results/runs/demo/metrics.json", {"timing": {"merge_adapter": 1.0, "total": 5.0}})
    write(tmp_path / "results/runs/demo/samples.json", {"timing": {"base_samples_total": 2.5, "total": 3.0}})
    write(tmp_path / "results/base_samples/0123456789/base_samples.json", {"timing": {"total": 2.5}})
    write(tmp_path / "results/runs/demo/broken/metrics.json", {"timing": "not a record"})
    found = breakdown(tmp_path, {"base_eval": 10.5, "metrics": 6.0, "generate": 4.0, "base_samples": 3.5})
    assert found["base_eval"] == {
        "rule_seconds": 10.5,
        "results/base_eval/0123456789/base_eval.json": {"load_model": 2.0, "total": 9.0},
    }
    assert found["metrics"] == {
        "rule_seconds": 6.0,
        "results/runs/demo/metrics.json": {"merge_adapter": 1.0, "total": 5.0},
    }
    assert found["generate"]["results/runs/demo/samples.json"] == {"base_samples_total": 2.5, "total": 3.0}
    assert found["base_samples"] == {
        "rule_seconds": 3.5,
        "results/base_samples/0123456789/base_samples.json": {"total": 2.5},
    }


def test_the_logs_archive_holds_what_the_analysis_reads(tmp_path):
    import tarfile

    work = tmp_path / "work"
    write(work / "results/train/abc/timing.json", {"steps": 3})
    (work / "logs/train").mkdir(parents=True)
    (work / "logs/train/abc.log").write_text("INFO ftpipe.train: step 1\n")
    (work / "benchmarks/train").mkdir(parents=True)
    (work / "benchmarks/train/abc.tsv").write_text("s\n1.0\n")
    (work / "snakemake_run.log").write_text("Finished jobid: 0\n")
    (work / "results/train/abc/adapter.safetensors").write_bytes(b"weights")  # not a record: left out
    big = work / "results/runs/demo/metrics.json"
    big.parent.mkdir(parents=True)
    big.write_bytes(b"0" * (3 << 20))  # 3 MB: left out
    names = archive_logs(work, tmp_path / "out" / "run.logs.tgz")
    expected = ["snakemake_run.log", "logs/train/abc.log", "benchmarks/train/abc.tsv", "results/train/abc/timing.json"]
    assert names == expected
    with tarfile.open(tmp_path / "out" / "run.logs.tgz") as tar:
        assert tar.getnames() == expected
        assert tar.extractfile("logs/train/abc.log").read() == b"INFO ftpipe.train: step 1\n"


SNAKEMAKE_LOG = """Building DAG of jobs...
[Sat Dec  5 20:15:28 2026]
localrule prepare:
    input: trn.json, scripts/prepare.py
    output: prepared/train.jsonl, prepared/test.jsonl
    jobid: 2
    threads: 15
[Sat Dec  5 20:15:28 2026]
localrule base_model:
    output: base/model
    jobid: 4
[Sat Dec  5 20:15:42 2026]
Finished jobid: 4 (Rule: base_model)
[Sat Dec  5 20:15:42 2026]
localrule run_config:
    output: runs/demo/config.json
    jobid: 11
[Sat Dec  5 20:15:46 2026]
Finished jobid: 11 (Rule: run_config)
[Sat Dec  5 20:15:46 2026]
Finished jobid: 2 (Rule: prepare)
[Sat Dec  5 20:15:46 2026]
localrule base_eval:
    input: prepared/test.jsonl, base/model
    output: base_eval/b.json
    jobid: 9
[Sat Dec  5 20:15:46 2026]
localrule train:
    input: prepared/train.jsonl, base/model
    output: train/adapter
    jobid: 6
[Sat Dec  5 20:16:30 2026]
Finished jobid: 9 (Rule: base_eval)
[Sat Dec  5 20:18:44 2026]
Finished jobid: 6 (Rule: train)
[Sat Dec  5 20:18:44 2026]
localrule generate:
    input: prepared/test.jsonl, train/adapter
    output: runs/demo/samples.json
    jobid: 7
[Sat Dec  5 20:18:44 2026]
localrule metrics:
    input: base_eval/b.json, train/adapter
    output: runs/demo/metrics.json
    jobid: 8
[Sat Dec  5 20:19:19 2026]
Finished jobid: 8 (Rule: metrics)
[Sat Dec  5 20:19:20 2026]
Finished jobid: 7 (Rule: generate)
[Sat Dec  5 20:19:20 2026]
localrule report:
    input: runs/demo/samples.json, runs/demo/metrics.json, runs/demo/config.json
    output: report.html
    jobid: 0
[Sat Dec  5 20:19:21 2026]
Finished jobid: 0 (Rule: report)
"""


def test_the_critical_path_follows_the_inputs_each_job_waited_for():
    timeline = job_timeline(SNAKEMAKE_LOG)
    assert [(job["rule"], job["start"], job["end"], job["after"]) for job in timeline[:4]] == [
        ("prepare", 0, 18, []),
        ("base_model", 0, 14, []),
        ("run_config", 14, 18, []),
        ("base_eval", 18, 62, [0, 1]),
    ]
    path = critical_path(timeline)
    # train read prepare's output, not run_config's, which ended in the same second; generate ended after metrics
    assert [job["rule"] for job in path] == ["prepare", "train", "generate", "report"]
    assert [job["seconds"] for job in path] == [18, 178, 36, 1]


def test_a_job_that_waited_for_cores_follows_the_job_that_freed_them():
    """On a small machine jobs queue for cores: a job whose inputs were written long before it started waited
    for the job that ended just before it, even one of zero seconds (the path still ends)."""
    queued = SNAKEMAKE_LOG.replace(
        "[Sat Dec  5 20:15:46 2026]\nlocalrule train:", "[Sat Dec  5 20:16:30 2026]\nlocalrule train:"
    )
    queued += (
        "[Sat Dec  5 20:19:21 2026]\nlocalrule all:\n    jobid: 10\n[Sat Dec  5 20:19:21 2026]\nFinished jobid: 10\n"
    )
    assert [job["rule"] for job in critical_path(job_timeline(queued))] == [
        "prepare",
        "base_eval",
        "train",
        "generate",
        "report",
        "all",
    ]


def test_a_job_that_did_not_finish_has_no_end():
    unfinished = SNAKEMAKE_LOG.split("[Sat Dec  5 20:18:44 2026]\nFinished jobid: 6")[0]
    timeline = job_timeline(unfinished)
    assert {job["rule"]: job["end"] for job in timeline}["train"] is None
    assert [job["rule"] for job in critical_path(timeline)] == ["prepare", "base_eval"]  # up to the last job that ended


def test_the_bytecode_cache_reaches_the_workflow_and_clears_the_images_refusal(tmp_path):
    """With --bytecode-cache the workflow's processes write and read bytecode there, even where the image sets
    PYTHONDONTWRITEBYTECODE; without it the environment is passed on as it is."""
    image = {"PATH": "/usr/bin", "PYTHONDONTWRITEBYTECODE": "1"}
    assert workflow_environment(image, None) == image
    env = workflow_environment(image, str(tmp_path / "pyc"))
    assert env == {"PATH": "/usr/bin", "PYTHONPYCACHEPREFIX": str(tmp_path / "pyc")}
    assert image["PYTHONDONTWRITEBYTECODE"] == "1"  # the caller's environment is left alone


def test_the_installed_code_is_compiled_into_the_cache_and_the_repository_left_to_the_run(tmp_path, monkeypatch):
    """--compile-bytecode: the standard library and the site-packages holding the workflow's packages, each once
    (none inside another), never this repository; their sources compile to where Python looks with the cache."""
    import importlib.util
    import os

    import yaml

    dirs = installed_code_dirs()
    assert not any(path.is_relative_to(ROOT) for path in dirs)
    assert not any(a != b and a.is_relative_to(b) for a in dirs for b in dirs)
    for module in (os, yaml):  # the standard library, an installed package
        assert any(Path(module.__file__).resolve().is_relative_to(path) for path in dirs), module.__name__
    package = tmp_path / "site" / "pkg"
    package.mkdir(parents=True)
    (package / "mod.py").write_text("VALUE = 1\n")
    monkeypatch.setattr(sys, "pycache_prefix", str(tmp_path / "pyc"))
    record = compile_bytecode([tmp_path / "site"], workers=1)
    assert record["dirs"] == [str(tmp_path / "site")]
    compiled = Path(importlib.util.cache_from_source(str(package / "mod.py")))
    assert compiled.is_relative_to(tmp_path / "pyc") and compiled.exists()
    with pytest.raises(SystemExit, match="--compile-bytecode needs --bytecode-cache"):
        run(argparse.Namespace(compile_bytecode=True, bytecode_cache=None))  # refused before any work


def test_a_second_run_links_the_earlier_runs_inputs_and_names_what_is_missing(tmp_path):
    """--inputs-from: the raw file and the model folder of a kept work folder are linked, not made again, and
    their record (rows, model) is the earlier run's; a folder without one of them stops the run with its path."""
    earlier, work = tmp_path / "earlier", tmp_path / "work"
    write(earlier / "model" / "tinyllama-random" / "config.json", {"hidden_size": 8})
    write(earlier / "inputs.json", {"rows": 1, "model": {"parameters": 8}})
    (earlier / "trn.json").write_text('{"uid": "1"}\n')
    raw, model_dir = work / "trn.json", work / "model" / "tinyllama-random"
    assert reuse_inputs(earlier, raw, model_dir) == {"rows": 1, "model": {"parameters": 8}}
    assert raw.read_text() == '{"uid": "1"}\n'
    assert json.loads((model_dir / "config.json").read_text()) == {"hidden_size": 8}
    (earlier / "trn.json").unlink()
    again = tmp_path / "again"
    with pytest.raises(SystemExit, match=re.escape(str(earlier / "trn.json"))):
        reuse_inputs(earlier, again / "trn.json", again / "model" / "tinyllama-random")
    assert not again.exists()  # nothing linked when an input is missing
