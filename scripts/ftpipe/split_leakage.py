"""How much of the held-out descriptions the train split has seen, measured on prepare's written splits.

For each way of assigning rows to splits (the exact groups alone, and with near-duplicate descriptions
joined), the share of each held-out reference's word 8-grams that occur in a train description, averaged over
the references (ftpipe.heldout's 8-grams, the measure metrics reports for the scored titles). At most
REFERENCES held-out rows per split are measured, chosen by their digests (the same rows whatever the row order),
so memory holds their 8-grams only; every train row is read once, line by line.
"""

from __future__ import annotations

import numpy as np
import orjson

from .grouping import SPLITS, normalized_text
from .heldout import NGRAM, ngrams_in, word_ngrams

REFERENCES = 1000  # held-out descriptions measured per split: the mean's standard error is then about 1 point
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
    grams = {row: word_ngrams(text) for row, text in _descriptions(paths, written, wanted)}
    every_gram = set().union(*grams.values())
    starts = {gram[0] for gram in every_gram}
    found = {name: set() for name in assignments}
    in_train = np.zeros(len(written), dtype=bool)
    for codes in assignments.values():
        in_train |= codes == TRAIN
    for row, text in _descriptions(paths, written, in_train):
        seen = ngrams_in(normalized_text(text).split(), starts, every_gram)
        if seen:
            for name, codes in assignments.items():
                if codes[row] == TRAIN:
                    found[name] |= seen
    result = {}
    for (name, split), rows in chosen.items():
        shares = [100 * len(grams[row] & found[name]) / len(grams[row]) for row in rows.tolist() if grams[row]]
        result.setdefault(name, {})[split] = {
            "references": len(shares),
            "ngram_overlap_percent": round(float(np.mean(shares)), 2) if shares else None,
        }
    return {"ngram": NGRAM, "max_references": REFERENCES, **result}


def _references(codes: np.ndarray, code: int, priority: np.ndarray) -> np.ndarray:
    """The rows of split `code` with the REFERENCES smallest priorities."""
    rows = np.flatnonzero(codes == code)
    return rows[np.argsort(priority[rows], kind="stable")[:REFERENCES]]


def _descriptions(paths: dict[str, str], written: np.ndarray, wanted: np.ndarray):
    """Yield (row, description) for the `wanted` rows, read from the split files."""
    for code, split in enumerate(SPLITS):
        rows = np.flatnonzero(written == code)
        take = wanted[rows]
        if not take.any():
            continue
        with open(paths[split], "rb") as handle:
            for row, line, wanted_row in zip(rows.tolist(), handle, take.tolist(), strict=True):
                if wanted_row:
                    yield row, orjson.loads(line)["content"]
