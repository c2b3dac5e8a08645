"""bench/time_to_report.py: the breakdown it reads from a finished work folder (the run itself is the benchmark's)."""

from __future__ import annotations

import json
import sys

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
from time_to_report import archive_logs, breakdown  # noqa: E402


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
