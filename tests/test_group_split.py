"""prepare's group split: rows sharing a normalized title or description never straddle two splits."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from prepare import assign_split, build_parser, prepare, title_key

from ftpipe.grouping import connected_components, group_splits, normalized_text
from ftpipe.stage import namespace

SPLITS = ("train", "validation", "test")


def variant_catalog(families: int = 300, seed: int = 0) -> list[dict]:
    """Products in size/colour variants: each family's titles share one description (in varied case and
    punctuation); every tenth family also gives its description to a title of the family before (a chain)."""
    rng = random.Random(seed)
    rows = []
    for family in range(families):
        description = f"Family {family} item, soft cotton, {rng.choice(['blue', 'red', 'green'])} trim."
        for variant in range(rng.randint(1, 4)):
            shown = description.upper() if variant == 1 else description
            rows.append({"uid": f"{family}-{variant}", "title": f"Shirt {family} size {variant}", "content": shown})
        if family % 10 == 9:
            rows.append({"uid": f"{family}-x", "title": f"Shirt {family - 1} size 0", "content": description})
    return rows


def write_catalog(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def run_prepare(raw: Path, out: Path, **overrides) -> dict:
    values = dict(
        raw=str(raw),
        **{name: str(out / f"{name}.jsonl") for name in (*SPLITS, "rejects")},
        counts=str(out / "counts.json"),
        duplicate_titles="keep_all",
        validation_fraction=0.1,
        test_fraction=0.1,
    )
    return prepare(namespace(build_parser(), **{**values, **overrides}))


def split_rows(out: Path) -> dict[str, list[dict]]:
    return {s: [json.loads(line) for line in (out / f"{s}.jsonl").read_text().splitlines()] for s in SPLITS}


def keys(rows: list[dict]) -> tuple[set, set]:
    return {title_key(r["title"]) for r in rows}, {normalized_text(r["content"]) for r in rows}


@pytest.mark.parametrize("duplicate_titles", ["first", "keep_all"])
def test_no_held_out_description_or_title_is_in_train(tmp_path, duplicate_titles):
    rows = variant_catalog()
    raw = write_catalog(tmp_path / "trn.json", rows)
    counts = run_prepare(raw, tmp_path, duplicate_titles=duplicate_titles)
    splits = split_rows(tmp_path)
    train_titles, train_descriptions = keys(splits["train"])
    for held_out in ("validation", "test"):
        titles, descriptions = keys(splits[held_out])
        assert titles and descriptions
        assert not titles & train_titles and not descriptions & train_descriptions
    # The same rows split by title alone leak: the test above would catch it.
    by_title = Counter((normalized_text(r["content"]), assign_split(title_key(r["title"]), 0.1, 0.1, 42)) for r in rows)
    assert len({description for description, _ in by_title}) < len(by_title)
    assert counts["grouping"]["rows_moved"] > 0


def test_group_counts(tmp_path):
    rows = variant_catalog()
    counts = run_prepare(write_catalog(tmp_path / "trn.json", rows), tmp_path)
    # Families 8 and 9 (18 and 19, ...) are chained by the reused title: 300 families, 30 chains.
    assert counts["grouping"]["groups"] == 300 - 30
    sizes = Counter(row["uid"].split("-")[0] for row in rows)
    chained = max(sizes[str(f - 1)] + sizes[str(f)] for f in range(9, 300, 10))
    assert counts["grouping"]["largest_group"] == max(chained, *sizes.values())


def test_sizes_stay_near_the_fractions(tmp_path):
    rows = variant_catalog(families=2000, seed=1)
    counts = run_prepare(write_catalog(tmp_path / "trn.json", rows), tmp_path)
    total = sum(counts["splits"].values())
    assert total == len(rows)
    for split in ("validation", "test"):
        assert abs(counts["splits"][split] / total - 0.1) < 0.025, counts["splits"]


def test_split_is_deterministic_and_independent_of_row_order(tmp_path):
    rows = variant_catalog()
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)
    run_prepare(write_catalog(tmp_path / "a.json", rows), tmp_path / "a")
    run_prepare(write_catalog(tmp_path / "b.json", rows), tmp_path / "b")
    run_prepare(write_catalog(tmp_path / "c.json", shuffled), tmp_path / "c")
    for split in SPLITS:
        assert (tmp_path / "a" / f"{split}.jsonl").read_bytes() == (tmp_path / "b" / f"{split}.jsonl").read_bytes()
    where = {s: {r["uid"] for r in rows_} for s, rows_ in split_rows(tmp_path / "a").items()}
    assert where == {s: {r["uid"] for r in rows_} for s, rows_ in split_rows(tmp_path / "c").items()}


def test_sampled_and_spilled_group_split_agree(tmp_path, monkeypatch):
    """Grouping among the sampled rows; a spilled sample gives the same bytes as one held in memory."""
    import prepare as stage

    raw = write_catalog(tmp_path / "trn.json", variant_catalog())
    outputs = {}
    for name, limit in (("memory", 10**9), ("spill", 0)):
        monkeypatch.setattr(stage, "IN_MEMORY_SAMPLE", limit)
        counts = run_prepare(raw, tmp_path / name, sample_size=400)
        outputs[name] = [(tmp_path / name / f"{s}.jsonl").read_bytes() for s in SPLITS]
    assert outputs["memory"] == outputs["spill"]
    assert counts["sampling"]["sampled"] == 400 and sum(counts["splits"].values()) == 400


def test_empty_split_is_a_warning(tmp_path):
    raw = write_catalog(tmp_path / "trn.json", variant_catalog(families=3))
    counts = run_prepare(raw, tmp_path, validation_fraction=0.0)
    assert any("validation split is empty" in warning for warning in counts["warnings"])


def test_connected_components_follow_chains():
    left, right = np.array([0, 2, 4, 1]), np.array([5, 5, 6, 3])
    assert connected_components(left, right, 8).tolist() == [0, 1, 0, 1, 4, 0, 4, 7]


def test_group_splits_of_no_rows():
    splits, stats = group_splits(np.zeros(0, np.uint64), np.zeros(0, np.uint64), 0.1, 0.1, 1)
    assert len(splits) == 0 and stats == {"groups": 0, "largest_group": 0, "rows_moved": 0}
