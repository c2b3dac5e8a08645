"""bench/time_to_report.py: the breakdown it reads from a finished work folder (the run itself is the benchmark's)."""

from __future__ import annotations

import json
import sys

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
from time_to_report import breakdown  # noqa: E402


def write(path, record) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def test_the_breakdown_holds_each_evaluation_stage_timing(tmp_path):
    write(tmp_path / "results/base_eval/0123456789/base_eval.json", {"timing": {"load_model": 2.0, "total": 9.0}})
    write(tmp_path / "results/runs/demo/metrics.json", {"timing": {"merge_adapter": 1.0, "total": 5.0}})
    write(tmp_path / "results/runs/demo/samples.json", {"timing": {"total": 3.0}})
    write(tmp_path / "results/runs/demo/broken/metrics.json", {"timing": "not a record"})
    found = breakdown(tmp_path, {"base_eval": 10.5, "metrics": 6.0, "generate": 4.0})
    assert found["base_eval"] == {
        "rule_seconds": 10.5,
        "results/base_eval/0123456789/base_eval.json": {"load_model": 2.0, "total": 9.0},
    }
    assert found["metrics"] == {
        "rule_seconds": 6.0,
        "results/runs/demo/metrics.json": {"merge_adapter": 1.0, "total": 5.0},
    }
    assert found["generate"]["results/runs/demo/samples.json"] == {"total": 3.0}
