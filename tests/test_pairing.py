"""The comparison page pairs each run with a baseline that scored the same titles (scripts/compare.py)."""

from __future__ import annotations

import sys

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from compare import pairing  # noqa: E402


def scored(catalog: str) -> dict:
    return {"generations": [{"title": f"{catalog} {i}", "reference": f"about {catalog} {i}"} for i in range(3)]}


def test_each_run_pairs_with_the_baseline_recipe_on_its_own_data():
    """Two recipes (seed, project) on three catalogs; the baseline is the seed recipe on the shop catalog.
    On each other catalog the seed recipe is that data's baseline, and the project recipe pairs with it; a
    run on data no baseline-like run scored pairs with the closest run there (fewest non-data differences)."""
    runs = ["seed-shop", "project-shop", "project-books", "seed-books", "project-tools", "project-r8-tools"]
    metrics = {run: scored(run.split("-")[-1]) for run in runs}
    lineages = {
        "seed-shop": {},
        "project-shop": {"pack.mode": "boundary"},
        "project-books": {"data.raw": "books.jsonl", "pack.mode": "boundary"},
        "seed-books": {"data.raw": "books.jsonl"},
        "project-tools": {"data.raw": "tools.jsonl", "pack.mode": "boundary"},
        "project-r8-tools": {"data.raw": "tools.jsonl", "pack.mode": "boundary", "train.lora.r": 8},
    }
    lineages = {run: {"differs_from_baseline": differs} for run, differs in lineages.items()}
    partners = pairing(runs, "seed-shop", metrics, lineages)
    assert partners == {
        "seed-shop": "seed-shop",
        "project-shop": "seed-shop",
        "project-books": "seed-books",
        "seed-books": "seed-books",
        "project-tools": "project-tools",
        "project-r8-tools": "project-tools",
    }
