"""prepare's group split: rows sharing a normalized title or description never straddle two splits, nor do
near-duplicate descriptions (a product family whose descriptions differ by model numbers)."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from prepare import assign_split, build_parser, prepare, title_key

from ftpipe.grouping import connected_components, group_splits, key_digest, normalized_text
from ftpipe.heldout import contamination
from ftpipe.rawdata.near_duplicates import near_duplicate_pairs, signatures
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


def family_catalog(families: int = 60, members: int = 5, seed: int = 0) -> list[dict]:
    """Product lines: the members of a family share a 40-word spec string and differ by their model number
    (named twice); families share no words but "model", "fits", "the", "dock". Jaccard of the 5-word
    shingles within a family is about 0.7, across families 0."""
    rng = random.Random(seed)
    vocabulary = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=7)) for _ in range(5000)]
    rows = []
    for family in range(families):
        spec = " ".join(rng.choices(vocabulary, k=40))
        for member in range(members):
            model = f"QX{family}{member}{rng.randint(100, 999)}"
            content = f"Model {model}: {spec}. Fits the {model} dock."
            rows.append({"uid": f"{family}-{member}", "title": f"Acme {model} charger", "content": content})
    return rows


def family_splits(out: Path) -> dict[str, set[str]]:
    """family -> the splits its rows went to."""
    where: dict[str, set[str]] = {}
    for split, rows in split_rows(out).items():
        for row in rows:
            where.setdefault(row["uid"].split("-")[0], set()).add(split)
    return where


def shingles(text: str, size: int = 5) -> set:
    words = normalized_text(text).split()
    return {tuple(words[i : i + size]) for i in range(max(len(words) - size + 1, 1))}


def jaccard(a: str, b: str) -> float:
    left, right = shingles(a), shingles(b)
    return len(left & right) / len(left | right)


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


@pytest.mark.parametrize("catalog", [variant_catalog, family_catalog])
def test_sampled_and_spilled_group_split_agree(tmp_path, monkeypatch, catalog):
    """Grouping among the sampled rows; a spilled sample gives the same bytes as one held in memory (the
    near-duplicate grouping's signatures too)."""
    import prepare as stage

    raw = write_catalog(tmp_path / "trn.json", catalog())
    outputs = {}
    for name, limit in (("memory", 10**9), ("spill", 0)):
        monkeypatch.setattr(stage, "IN_MEMORY_SAMPLE", limit)
        counts = run_prepare(raw, tmp_path / name, sample_size=400)
        outputs[name] = [(tmp_path / name / f"{s}.jsonl").read_bytes() for s in SPLITS]
    assert outputs["memory"] == outputs["spill"]
    sampled = min(400, len(catalog()))
    assert counts["sampling"]["sampled"] == sampled and sum(counts["splits"].values()) == sampled


@pytest.mark.parametrize("in_memory", [10**9, 0])
def test_sampled_near_duplicates_in_worker_processes(tmp_path, monkeypatch, in_memory):
    """--processes 4 (the rows' facts computed in parsing workers, the sampled rows' signatures in signature
    workers) writes the one-process bytes, with a sample held in memory or spilled, near-duplicates joined."""
    import prepare as stage

    from ftpipe.rawdata import parse_workers

    monkeypatch.setattr(parse_workers, "PARSE_BLOCK_LINES", 16)
    monkeypatch.setattr(stage, "SIGNATURE_BLOCK_ROWS", 7)  # the signature workers' blocks, the last one short
    monkeypatch.setattr(stage, "IN_MEMORY_SAMPLE", in_memory)
    raw = write_catalog(tmp_path / "trn.json", family_catalog())
    outputs = {}
    for processes in (1, 4):
        out = tmp_path / f"p{processes}"
        counts = run_prepare(raw, out, sample_size=200, processes=processes, near_duplicates={"threshold": 0.5})
        outputs[processes] = [(out / name).read_bytes() for name in ("train.jsonl", "validation.jsonl", "test.jsonl")]
        outputs[processes].append((out / "counts.json").read_bytes())
    assert outputs[1] == outputs[4]
    assert counts["sampling"]["not_sampled"] == 100 and counts["grouping"]["near_duplicates"]["groups_joined"] > 0


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


# ---------------------------------------------------------------- near-duplicate descriptions


def test_a_product_family_lands_on_one_side(tmp_path):
    rows = family_catalog()
    raw = write_catalog(tmp_path / "trn.json", rows)
    assert min(jaccard(rows[0]["content"], row["content"]) for row in rows[1:5]) > 0.6
    counts = run_prepare(raw, tmp_path / "near", near_duplicates={"threshold": 0.5})
    assert all(len(splits) == 1 for splits in family_splits(tmp_path / "near").values())
    assert counts["grouping"]["groups"] == 60
    assert counts["grouping"]["near_duplicates"]["groups_joined"] == 300 - 60
    # Without it every row is its own group: families straddle, and the measure shows train has seen the test.
    plain = run_prepare(raw, tmp_path / "exact", near_duplicates={"threshold": None})
    assert sum(len(splits) > 1 for splits in family_splits(tmp_path / "exact").values()) > 20
    assert "near_duplicates" not in plain["grouping"]
    assert list(plain["contamination"]) == ["ngram", "max_references", "exact_groups"]
    leak = counts["contamination"]
    assert leak["exact_groups"] == plain["contamination"]["exact_groups"]  # the "before" of the same run
    assert leak["exact_groups"]["test"]["ngram_overlap_percent"] > 50
    assert leak["near_duplicate_groups"]["test"]["ngram_overlap_percent"] == 0


def test_near_duplicate_groups_above_max_group_are_left_apart(tmp_path):
    raw = write_catalog(tmp_path / "trn.json", family_catalog())  # families of 5 rows
    joined = run_prepare(raw, tmp_path / "five", near_duplicates={"threshold": 0.5, "max_group": 5})
    assert all(len(splits) == 1 for splits in family_splits(tmp_path / "five").values())
    assert joined["grouping"]["near_duplicates"]["rows_left_apart"] == 0
    apart = run_prepare(raw, tmp_path / "four", near_duplicates={"threshold": 0.5, "max_group": 4})
    assert apart["grouping"]["near_duplicates"]["near_groups_left_apart"] == 60
    assert apart["grouping"]["near_duplicates"]["rows_left_apart"] == 300
    assert apart["grouping"]["groups"] == 300 and apart["grouping"]["largest_group"] == 1
    assert sum(len(splits) > 1 for splits in family_splits(tmp_path / "four").values()) > 20


def test_contamination_is_heldouts_measure_on_the_written_splits(tmp_path):
    rows = family_catalog(families=40, seed=2)
    counts = run_prepare(write_catalog(tmp_path / "trn.json", rows), tmp_path, near_duplicates={"threshold": None})
    for split in ("validation", "test"):
        references = [row["content"] for row in split_rows(tmp_path)[split]]
        expected = contamination(references, str(tmp_path / "train.jsonl"), seed=0)["ngram_overlap"]["mean"]
        measured = counts["contamination"]["exact_groups"][split]
        assert measured["references"] == len(references)
        assert measured["ngram_overlap_percent"] == pytest.approx(expected, abs=0.01)


def test_threshold_is_respected():
    """Pairs of known Jaccard similarity: joined at a threshold well below it, not at one well above it."""
    rng = random.Random(5)
    words = ["".join(rng.choices("abcdefghij", k=6)) for _ in range(400)]
    base = rng.sample(words, 60)
    near = base[:]  # every twelfth word replaced: Jaccard about 0.5
    for i in range(12, 60, 12):
        near[i] = f"changed{i}"
    close = base[:]
    close[30] = "changed"  # one word: Jaccard about 0.85
    texts = [" ".join(t) for t in (base, near, close, rng.sample(words, 60))]
    similarity = {(i, j): jaccard(texts[i], texts[j]) for i in range(4) for j in range(i + 1, 4)}
    assert 0.4 < similarity[0, 1] < 0.6 and similarity[0, 2] > 0.8 and similarity[0, 3] < 0.05
    digests = np.array([key_digest(text) for text in texts], dtype=np.uint64)
    table = signatures(texts, 5, 128)

    def joined(threshold):
        left, right, _ = near_duplicate_pairs(digests, table, np.ones(4, bool), threshold)
        index = {int(d): i for i, d in enumerate(digests)}
        return {tuple(sorted((index[int(a)], index[int(b)]))) for a, b in zip(left, right, strict=True)}

    assert joined(0.3) >= {(0, 1), (0, 2), (1, 2)} and (0, 3) not in joined(0.3)
    assert joined(0.7) == {(0, 2)}
    assert joined(0.95) == set()


def test_signatures_estimate_jaccard():
    rng = random.Random(7)
    words = ["".join(rng.choices("abcdefghij", k=5)) for _ in range(300)]
    texts = [" ".join(rng.sample(words[:80], 50)) for _ in range(40)]
    table = signatures(texts, 5, 64)
    errors = [
        (table[i] == table[j]).mean() - jaccard(texts[i], texts[j]) for i in range(0, 40, 2) for j in range(1, 40, 2)
    ]
    assert abs(np.mean(errors)) < 0.02 and np.sqrt(np.mean(np.square(errors))) < 0.08


def test_signatures_do_not_depend_on_the_block():
    texts = [normalized_text(row["content"]) for row in family_catalog(families=5)] + ["", "two words"]
    alone = np.array([signatures([text], 5, 64)[0] for text in texts])
    assert (signatures(texts, 5, 64) == alone).all()
    assert (alone[-2] == 0xFFFF).all() and not (alone[-1] == 0xFFFF).all()


def test_near_duplicate_split_is_deterministic_and_independent_of_row_order(tmp_path):
    rows = family_catalog(families=40) + variant_catalog(families=100)
    shuffled = rows[:]
    random.Random(4).shuffle(shuffled)
    first = run_prepare(write_catalog(tmp_path / "a.json", rows), tmp_path / "a", near_duplicates={"threshold": 0.5})
    again = run_prepare(write_catalog(tmp_path / "b.json", rows), tmp_path / "b", near_duplicates={"threshold": 0.5})
    moved = run_prepare(
        write_catalog(tmp_path / "c.json", shuffled), tmp_path / "c", near_duplicates={"threshold": 0.5}
    )
    for split in SPLITS:
        assert (tmp_path / "a" / f"{split}.jsonl").read_bytes() == (tmp_path / "b" / f"{split}.jsonl").read_bytes()
    where = {s: {r["uid"] for r in rows_} for s, rows_ in split_rows(tmp_path / "a").items()}
    assert where == {s: {r["uid"] for r in rows_} for s, rows_ in split_rows(tmp_path / "c").items()}
    assert first["grouping"] == again["grouping"] == moved["grouping"]
    assert first["contamination"] == moved["contamination"]


def test_ascii_normalization_is_the_regexs():
    from ftpipe.grouping import _NON_WORD

    rng = random.Random(0)
    alphabet = "aZq_9 \t\n-.,;:'\"!?()[]{}<>/\\|@#$%^&*+=~`\x00\x1f\x7f"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(20000)]
    texts += [row["content"] for row in variant_catalog(families=50)]
    for text in texts:
        assert normalized_text(text) == _NON_WORD.sub(" ", text.casefold()).strip(), repr(text)
    assert normalized_text("Café  au-LAIT_x") == "café au lait x"  # not ASCII: the regex itself


def test_the_signature_store_keeps_the_order_of_its_blocks(monkeypatch):
    """Blocks hashed in the background thread, several in flight, come back in the order the texts came."""
    import ftpipe.rawdata.near_duplicates as near

    monkeypatch.setattr(near, "BLOCK_CHARS", 300)
    texts = [normalized_text(row["content"]) for row in family_catalog(families=20)] + [""]
    store = near.SignatureStore(5, 32)
    for text in texts:
        store.add(text)
    values, has_words = store.result()
    assert (values == signatures(texts, 5, 32)).all()
    assert has_words.tolist() == [bool(text) for text in texts]
