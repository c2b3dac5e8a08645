"""bench/quality.py: the experiment it builds from presets/ablation.yaml and the table it writes from the runs'
metrics.json (the workflow itself runs in the benchmark, not here)."""

from __future__ import annotations

import argparse
import json
import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
from quality import MEASURES, experiment_config, markdown, run_name, summarize  # noqa: E402


def options(**values) -> argparse.Namespace:
    defaults = {"model_source": None, "steps": None, "titles": None, "extra_config": None}
    return argparse.Namespace(**{**defaults, **values})


def test_every_catalog_gets_both_recipes_for_every_seed(tmp_path):
    catalogs = {"shop": tmp_path / "shop.jsonl", "books": tmp_path / "books.csv"}
    config = experiment_config(catalogs, [1, 2], options(model_source="/models/smol", steps=7))
    runs = config["experiment"]["runs"]
    assert sorted(runs) == sorted(run_name(c, r, s) for c in catalogs for r in ("seed", "project") for s in (1, 2))
    assert config["experiment"]["baseline"] == "shop.seed.s1"
    seed_run = runs["books.seed.s2"]
    assert seed_run["pack"]["mode"] == "seed" and seed_run["tokenize"]["completion_only"] is False
    assert seed_run["data"]["raw"] == str(catalogs["books"]) and seed_run["train"]["seed"] == 2
    assert "pack" not in runs["shop.project.s1"] and runs["shop.project.s1"]["train"] == {"seed": 1}
    # The ablation's shared settings and the options reach every run.
    assert config["metrics"]["num_titles"] == 60 and config["data"]["test_fraction"] == 0.15
    assert config["model"]["source"] == "/models/smol" and config["train"]["max_steps"] == 7


def fake_metrics(rouge: list[float], hit_cap: int) -> dict:
    per_title = {measure: [value / 2 for value in rouge] for measure in MEASURES}
    per_title["rouge_l"] = rouge
    mean = {m: {"mean": sum(v) / len(v), "low": min(v), "high": max(v)} for m, v in per_title.items()}
    return {
        "sample": {"n": len(rouge), "titles_sha256": "same"},
        "settings": {"max_new_tokens": 90, "seed": 42},
        "variants": {"adapter": mean},
        "per_example": {"adapter": per_title},
        "endings": {"adapter": {"ended": len(rouge) - hit_cap, "hit_cap": hit_cap}},
        "contamination": {"ngram_overlap": {"mean": 12.5}},
    }


def test_the_table_pairs_recipes_per_seed_and_spreads_over_seeds(tmp_path):
    scores = {  # (catalog, recipe, seed) -> per-title ROUGE-L
        ("shop", "seed", 1): [10.0, 20.0, 30.0, 40.0],
        ("shop", "project", 1): [14.0, 22.0, 35.0, 41.0],  # +3.0
        ("shop", "seed", 2): [12.0, 20.0, 30.0, 40.0],
        ("shop", "project", 2): [12.0, 21.0, 30.0, 42.0],  # +0.75
    }
    for (catalog, recipe, seed), rouge in scores.items():
        folder = tmp_path / "results" / "runs" / run_name(catalog, recipe, seed)
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps(fake_metrics(rouge, hit_cap=3 if recipe == "seed" else 1)))
    table = summarize(tmp_path, ["shop"], [1, 2])
    first = table["shop"]["per_seed"][1]
    assert first["project_minus_seed"]["rouge_l"]["mean"] == pytest.approx(3.0)
    assert first["hit_cap"] == {"seed": 3, "project": 1} and first["max_new_tokens"] == 90
    over = table["shop"]["over_seeds"]
    assert over["project_minus_seed"]["rouge_l"] == {"mean": 1.875, "min": 0.75, "max": 3.0, "sd": 1.591}
    assert over["scores"]["seed"]["rouge_l"]["min"] == 25.0 and over["seeds"] == 2
    text = markdown(table)
    assert "| shop | 1 | 4 | 90 | 3 / 1 |" in text and "+1.9 (+0.8 to +3.0)" in text
    # A seed whose runs did not finish is listed as missing, not dropped.
    assert "missing" in summarize(tmp_path, ["shop"], [1, 2, 3])["shop"]["per_seed"][3]
