"""bench/quality.py: the experiment it builds from presets/ablation.yaml and the table it writes from the runs'
metrics.json (the workflow itself runs in the benchmark, not here)."""

from __future__ import annotations

import argparse
import json
import sys

import pytest
import yaml

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
from quality import (  # noqa: E402
    DEFAULT_RECIPES,
    MEASURES,
    earlier_run,
    experiment_config,
    load_recipes,
    markdown,
    metrics_targets,
    run_name,
    summarize,
    verdicts,
)

from ftpipe.settings import shipped_config  # noqa: E402
from ftpipe.workflow.experiments import deep_merge, run_configs, stage_params  # noqa: E402

RECIPE_NAMES = list(load_recipes(DEFAULT_RECIPES))


def options(**values) -> argparse.Namespace:
    defaults = {"model_source": None, "steps": None, "titles": None, "extra_config": None}
    defaults |= {"recipes": DEFAULT_RECIPES, "only_recipes": None}
    return argparse.Namespace(**{**defaults, **values})


def test_every_catalog_gets_every_recipe_for_every_seed(tmp_path):
    catalogs = {"shop": tmp_path / "shop.jsonl", "books": tmp_path / "books.csv"}
    config = experiment_config(catalogs, [1, 2], options(model_source="/models/smol", steps=7))
    runs = config["experiment"]["runs"]
    assert sorted(runs) == sorted(run_name(c, r, s) for c in catalogs for r in RECIPE_NAMES for s in (1, 2))
    assert sorted(metrics_targets(config)) == sorted(f"results/runs/{run}/metrics.json" for run in runs)
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


def test_the_recipes_file_holds_the_ablations_pair_and_one_change_candidates():
    ablation = yaml.safe_load((ROOT / "presets" / "ablation.yaml").read_text(encoding="utf-8"))["experiment"]["runs"]
    recipes = load_recipes(DEFAULT_RECIPES)
    assert recipes["seed"] == ablation["seed"] and recipes["project"] == (ablation["project"] or {})
    assert RECIPE_NAMES[:2] == ["seed", "project"]
    measured = {"no-dropout", "r32", "lr-2e-4", "load-best", "rp-1.0", "no-repeat-3", "beam-4"}
    assert set(RECIPE_NAMES[2:]) == measured | {"lr-1e-3", "steps-200", "attention-only"}
    # --only-recipes: those candidates, seed and project always; an unknown name is refused.
    assert list(load_recipes(DEFAULT_RECIPES, ["beam-4", "r32"])) == ["seed", "project", "r32", "beam-4"]
    with pytest.raises(SystemExit, match="no recipes named"):
        load_recipes(DEFAULT_RECIPES, ["r64"])


def test_candidates_share_the_project_runs_stages_up_to_what_they_change(tmp_path):
    """Each candidate's whole run configuration differs from project's (same catalog and seed) in one setting,
    and a metrics-only candidate has project's stage params everywhere: the workflow reuses its adapter."""
    catalogs = {"shop": tmp_path / "shop.jsonl"}
    config = experiment_config(catalogs, [3], options())
    configs = run_configs(deep_merge(shipped_config(), config))
    project = configs["shop.project.s3"]
    assert project["train"]["seed"] == 3 and project["data"]["raw"] == str(catalogs["shop"])
    changes = {
        "no-dropout": {"train.lora.dropout": 0.0},
        "r32": {"train.lora.r": 32, "train.lora.alpha": 32},
        "lr-2e-4": {"train.learning_rate": 2.0e-4},
        "load-best": {"train.early_stopping_patience": 3, "train.load_best": True},
        "rp-1.0": {"metrics.repetition_penalty": 1.0},
        "no-repeat-3": {"metrics.no_repeat_ngram_size": 3},
        "beam-4": {"metrics.num_beams": 4},
    }
    for candidate, changed in changes.items():
        run = configs[run_name("shop", candidate, 3)]
        assert flat_differences(project, run) == changed, candidate
        metrics_only = all(path.startswith("metrics.") for path in changed)
        for stage in ("prepare", "base_model", "tokenize", "pack", "train"):
            same = stage_params(stage, run) == stage_params(stage, project)
            assert same == (metrics_only or stage != "train"), (candidate, stage)


def flat_differences(base: dict, other: dict, prefix: str = "") -> dict:
    """Dotted path -> other's value where it differs from base's."""
    out = {}
    for key in sorted(set(base) | set(other)):
        a, b = base.get(key), other.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out |= flat_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out[f"{prefix}{key}"] = b
    return out


PROJECT_ROUGE = [10.0, 20.0, 30.0, 40.0]
CANDIDATE_SHIFT = {  # candidate -> catalog -> per-title change of ROUGE-L against project
    "better": {"shop": [5.0, 5.0, 5.0, 5.0], "books": [2.0, 2.0, 2.0, 2.0]},
    "mixed": {"shop": [3.0, 3.0, 3.0, 3.0], "books": [-4.0, -4.0, -4.0, -4.0]},
    "noisy": {"shop": [6.0, -6.0, 2.0, -2.0], "books": [6.0, -6.0, 2.0, -2.0]},
}


def write_run(work, catalog: str, recipe: str, seed: int, rouge: list[float], titles: str = "same") -> None:
    folder = work / "results" / "runs" / run_name(catalog, recipe, seed)
    folder.mkdir(parents=True)
    metrics = fake_metrics(rouge, hit_cap=1)
    metrics["sample"]["titles_sha256"] = titles
    (folder / "metrics.json").write_text(json.dumps(metrics))


def candidate_work(tmp_path):
    """Two catalogs, two seeds: the seed recipe 8 points under project (so pairing a candidate with the seed
    recipe instead of project shows), three candidates as CANDIDATE_SHIFT says."""
    for catalog in ("shop", "books"):
        for seed in (1, 2):
            write_run(tmp_path, catalog, "seed", seed, [value - 8 for value in PROJECT_ROUGE])
            write_run(tmp_path, catalog, "project", seed, PROJECT_ROUGE)
            for candidate, shifts in CANDIDATE_SHIFT.items():
                rouge = [a + b for a, b in zip(PROJECT_ROUGE, shifts[catalog], strict=True)]
                write_run(tmp_path, catalog, candidate, seed, rouge)
    return summarize(tmp_path, ["shop", "books"], [1, 2], ["seed", "project", *CANDIDATE_SHIFT])


def test_candidates_are_paired_with_project_and_judged_over_catalogs_and_seeds(tmp_path):
    table = candidate_work(tmp_path)
    first = table["shop"]["per_seed"][1]
    assert first["project_minus_seed"]["rouge_l"]["mean"] == pytest.approx(8.0)
    better = first["candidate_minus_project"]["better"]
    assert better["rouge_l"] == {**better["rouge_l"], "mean": pytest.approx(5.0), "low": pytest.approx(5.0)}
    assert better["chrf_beta1"]["mean"] == pytest.approx(2.5)  # fake_metrics' other measures are half ROUGE-L
    assert first["candidate_minus_project"]["mixed"]["rouge_l"]["mean"] == pytest.approx(3.0)
    books = table["books"]["over_seeds"]["candidate_minus_project"]
    assert books["mixed"]["minus"]["rouge_l"] == {"mean": -4.0, "min": -4.0, "max": -4.0, "sd": 0.0}
    assert (
        books["mixed"]["intervals_below_zero"]["rouge_l"] == 2
        and books["mixed"]["intervals_above_zero"]["rouge_l"] == 0
    )
    assert (
        books["noisy"]["intervals_above_zero"]["rouge_l"] == 0
        and books["noisy"]["intervals_below_zero"]["rouge_l"] == 0
    )

    judged = verdicts(table)
    assert judged["better"]["measures"]["rouge_l"] == {"above": 4, "below": 0, "pairs": 4}
    assert judged["better"]["measures"]["chrf_beta1"] == {"above": 4, "below": 0, "pairs": 4}
    assert judged["better"]["verdict"] == "change" and judged["better"]["catalogs_above_zero"] == ["books", "shop"]
    assert judged["mixed"]["measures"]["rouge_l"] == {"above": 2, "below": 2, "pairs": 4}
    assert judged["mixed"]["verdict"] == "keep" and judged["noisy"]["verdict"] == "keep"
    assert judged["noisy"]["measures"]["rouge_l"] == {"above": 0, "below": 0, "pairs": 4}

    text = markdown(table)
    assert "## Candidate defaults: candidate minus project" in text
    assert (
        "| better | shop | 2 | +5.0 (+5.0 to +5.0) | +2.5 (+2.5 to +2.5) | +2.50 (+2.50 to +2.50) | 2 / 0 | 2 / 0 |"
        in text
    )
    assert "| mixed | books | 2 | -4.0 (-4.0 to -4.0) |" in text
    assert (
        "- **better** (4 catalog × seed pairs): rouge_l above 0 in 4, below 0 in 0; chrf_beta1 above 0 in 4" in text
        and "change the default" in text
    )
    assert "- **mixed** (4 catalog × seed pairs): rouge_l above 0 in 2, below 0 in 2" in text


def test_a_candidate_on_other_titles_is_refused_and_a_missing_one_is_listed(tmp_path):
    write_run(tmp_path, "shop", "seed", 1, PROJECT_ROUGE)
    write_run(tmp_path, "shop", "project", 1, PROJECT_ROUGE)
    table = summarize(tmp_path, ["shop"], [1], ["seed", "project", "r32"])
    assert table["shop"]["per_seed"][1]["candidate_minus_project"] == {}
    assert table["shop"]["per_seed"][1]["missing"] == [
        str(tmp_path / "results" / "runs" / "shop.r32.s1" / "metrics.json")
    ]
    assert verdicts(table) == {} and "Candidate defaults" not in markdown(table)
    write_run(tmp_path, "shop", "r32", 1, PROJECT_ROUGE, titles="other")
    with pytest.raises(SystemExit, match="r32 and project scored different titles"):
        summarize(tmp_path, ["shop"], [1], ["seed", "project", "r32"])


def test_an_unjudged_catalog_is_shown_but_decides_no_verdict(tmp_path):
    """`mixed` wins on shop and loses on books: judged on shop alone it would change the default."""
    table = candidate_work(tmp_path)
    assert verdicts(table)["mixed"]["verdict"] == "keep"
    on_shop = verdicts(table, unjudged=("books",))
    assert on_shop["mixed"]["measures"]["rouge_l"] == {"above": 2, "below": 0, "pairs": 2}
    assert on_shop["mixed"]["verdict"] == "change" and on_shop["mixed"]["catalogs_above_zero"] == ["shop"]
    text = markdown(table, unjudged=("books",))
    assert "| mixed | books (not judged) | 2 | -4.0 (-4.0 to -4.0) |" in text
    assert "- **mixed** (2 catalog × seed pairs): rouge_l above 0 in 2, below 0 in 0" in text


def test_table_keeps_what_run_recorded_for_the_same_catalogs(tmp_path):
    earlier = {"catalogs": {"shop": "/data/shop.csv"}, "workflow": {"seconds": 231.6}, "device": "H100"}
    (tmp_path / "quality.json").write_text(json.dumps({**earlier, "settings": {"train": {"max_steps": 100}}}))
    kept = earlier_run(tmp_path / "quality.json", {"shop": "/data/shop.csv"})
    assert kept == {"workflow": {"seconds": 231.6}, "device": "H100", "settings": {"train": {"max_steps": 100}}}
    assert earlier_run(tmp_path / "quality.json", {"books": "/data/books.csv"}) == {}
    assert earlier_run(tmp_path / "missing.json", {"shop": "/data/shop.csv"}) == {}
