"""How much of the held-out descriptions the train split has seen, measured on prepare's written splits.

For each way of assigning rows to splits (the exact groups alone, and with near-duplicate descriptions
joined), the share of each held-out reference's word 8-grams that occur in a train description, averaged over
the references: ftpipe.heldout's measure (its NGRAM-word runs of normalized_text's words), which metrics
reports for the scored titles. The 8-grams are compared as 64-bit hashes (ftpipe.rawdata.near_duplicates'
shingle hashes), vectorized: heldout's tuple-by-tuple scan costs about 50 microseconds a train row, more than
the rest of prepare. At most REFERENCES held-out rows per split are measured, chosen by their description
digests (the same rows whatever the row order); every train row is read once, in blocks.
"""

from __future__ import annotations

import numpy as np
import orjson

from ftpipe.grouping import SPLITS, normalized_text
from ftpipe.heldout import NGRAM
from ftpipe.rawdata.near_duplicates import shingle_hashes

REFERENCES = 1000  # held-out descriptions measured per split: the mean's standard error is then about 1 point
BLOCK_ROWS = 4096
TRAIN = SPLITS.index("train")


def split_contamination(
    paths: dict[str, str], written: np.ndarray, assignments: dict[str, np.ndarray], priority: np.ndarray
) -> dict:
    """{assignment: {held-out split: {"references", "ngram_overlap_percent"}}} for `assignments` (name -> the
    split code of every row), the rows being in the files `paths` (split -> path) as `written` (the code of
    every row, in the order given) placed them. `priority` orders rows for the choice of references."""
    chosen = {
        (name, split): _references(codes, SPLITS.index(split), priority)
        for name, codes in assignments.items()
        for split in SPLITS
        if split != "train"
    }
    wanted = np.zeros(len(written), dtype=bool)
    for rows in chosen.values():
        wanted[rows] = True
    reference_rows, grams, owners = _reference_grams(paths, written, wanted)
    known = np.unique(grams)  # every wanted 8-gram, sorted
    found = {name: np.zeros(len(known), dtype=bool) for name in assignments}
    in_train = np.zeros(len(written), dtype=bool)
    for codes in assignments.values():
        in_train |= codes == TRAIN
    for rows, texts in _blocks(paths, written, in_train):
        hashes, counts = shingle_hashes(texts, NGRAM, short_texts=False)
        row_of_hash = np.repeat(rows, counts)
        position = np.minimum(np.searchsorted(known, hashes), max(len(known) - 1, 0))
        hit = known[position] == hashes if len(known) else np.zeros(len(hashes), dtype=bool)
        for name, codes in assignments.items():
            found[name][position[hit & (codes[row_of_hash] == TRAIN)]] = True
    gram_index = np.searchsorted(known, grams)
    total = np.bincount(owners, minlength=len(reference_rows))
    result = {}
    for (name, split), rows in chosen.items():
        seen = np.bincount(owners, weights=found[name][gram_index], minlength=len(reference_rows))
        which = np.searchsorted(reference_rows, rows)
        measured = which[total[which] > 0]  # a description of fewer than NGRAM words has no 8-gram
        shares = 100 * seen[measured] / total[measured]
        result.setdefault(name, {})[split] = {
            "references": len(measured),
            "ngram_overlap_percent": round(float(shares.mean()), 2) if len(measured) else None,
        }
    return {"ngram": NGRAM, "max_references": REFERENCES, **result}


def _references(codes: np.ndarray, code: int, priority: np.ndarray) -> np.ndarray:
    """The rows of split `code` with the REFERENCES smallest priorities."""
    rows = np.flatnonzero(codes == code)
    return rows[np.argsort(priority[rows], kind="stable")[:REFERENCES]]


def _reference_grams(paths: dict[str, str], written: np.ndarray, wanted: np.ndarray) -> tuple:
    """(rows, grams, owners): the wanted rows (sorted), the hashes of each one's distinct 8-grams, and the
    index in `rows` of the row each hash belongs to."""
    rows_seen, grams, owners = [], [], []
    for rows, texts in _blocks(paths, written, wanted):
        hashes, counts = shingle_hashes(texts, NGRAM, short_texts=False)
        rows_seen.append(rows)
        owner = np.repeat(rows, counts)
        distinct = np.unique(np.stack((owner.astype(np.uint64), hashes)), axis=1)  # a repeated 8-gram counts once
        grams.append(distinct[1])
        owners.append(distinct[0].astype(np.int64))
    if not rows_seen:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    rows = np.concatenate(rows_seen)
    order = np.argsort(rows)
    rows = rows[order]
    return rows, np.concatenate(grams), np.searchsorted(rows, np.concatenate(owners))


def _blocks(paths: dict[str, str], written: np.ndarray, wanted: np.ndarray):
    """Yield (rows, normalized descriptions) of the `wanted` rows, BLOCK_ROWS at a time, from the split files."""
    rows, texts = [], []
    for code, split in enumerate(SPLITS):
        file_rows = np.flatnonzero(written == code)
        take = wanted[file_rows]
        if not take.any():
            continue
        with open(paths[split], "rb") as handle:
            for row, line, wanted_row in zip(file_rows.tolist(), handle, take.tolist(), strict=True):
                if wanted_row:
                    rows.append(row)
                    texts.append(normalized_text(orjson.loads(line)["content"]))
                    if len(rows) == BLOCK_ROWS:
                        yield np.array(rows, dtype=np.int64), texts
                        rows, texts = [], []
    if rows:
        yield np.array(rows, dtype=np.int64), texts
