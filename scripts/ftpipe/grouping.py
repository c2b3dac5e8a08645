"""Leak-proof splitting: rows that share a normalized title or a normalized description form one group
(a connected component), and a whole group lands in one split.

Catalogs give one description to several products (size and colour variants, editions of one book); a split
by title alone puts the same description in train and in test. Only 8-byte digests of the keys are kept,
so memory grows by a few dozen bytes a row, never with the text.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

SPLITS = ("train", "validation", "test")
_NON_WORD = re.compile(r"[\W_]+")


# ASCII letters and digits lowered, every other ASCII byte a space: the regex's result on ASCII text, 3x faster.
_ASCII_WORDS = bytes(
    (ord(chr(byte).lower()) if chr(byte).isalnum() else 32) if byte < 128 else byte for byte in range(256)
)


def normalized_text(text: str) -> str:
    """Case and punctuation do not make two texts different (the normalization prepare uses for titles)."""
    if text.isascii():
        return " ".join(text.encode().translate(_ASCII_WORDS).decode().split())
    return _NON_WORD.sub(" ", text.casefold()).strip()


def key_digest(key: str) -> int:
    """An unsigned 64-bit digest of an already normalized key."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


def split_of_digest(digest: int, validation_fraction: float, test_fraction: float, seed: int) -> str:
    """The split of a title digest: a seeded hash of it, so the same title goes to the same split."""
    salted = hashlib.blake2b(f"split-{seed}\x00{digest:016x}".encode(), digest_size=8).digest()
    unit = int.from_bytes(salted, "big") / 2**64
    if unit < validation_fraction:
        return "validation"
    if unit < validation_fraction + test_fraction:
        return "test"
    return "train"


def connected_components(left: np.ndarray, right: np.ndarray, n_nodes: int) -> np.ndarray:
    """The component label (its smallest node id) of every node of the graph with edges left[i]-right[i].

    Min-label propagation with pointer jumping, vectorized: each round every edge pulls both ends to the
    smaller label, then labels follow their own labels to a fixed point; it stops when no edge joins two
    labels. A label is always a node of the same component, and only smaller, so it terminates."""
    label = np.arange(n_nodes, dtype=np.int64)
    while True:
        low = np.minimum(label[left], label[right])
        new = label.copy()
        np.minimum.at(new, left, low)
        np.minimum.at(new, right, low)
        while not np.array_equal(jumped := new[new], new):
            new = jumped
        if np.array_equal(new, label):
            return label
        label = new


def group_splits(
    title_digests: np.ndarray,
    description_digests: np.ndarray,
    validation_fraction: float,
    test_fraction: float,
    seed: int,
    description_pairs: tuple[np.ndarray, np.ndarray] | None = None,
    max_group: int | None = None,
) -> tuple[np.ndarray, dict]:
    """The split of every row (an index into SPLITS) and the grouping's counts.

    Rows sharing a title digest or a description digest are one group, also through chains (title A ~
    description X ~ title B ~ description Y ...); `description_pairs` (two arrays of description digests,
    ftpipe.rawdata.near_duplicates) joins the groups of near-duplicate descriptions too, unless the group they would
    make holds more than `max_group` rows: its pairs are dropped, so chains of near-duplicates never pull
    thousands of rows into one split (its rows keep their exact groups). A group goes where its smallest title
    digest would go alone (independent of the row order; a group of one title keeps its title's split).
    Counts: groups, the largest group's rows, rows moved (rows whose own title alone would have gone
    elsewhere), and with `max_group` the groups left apart and their rows."""
    if len(title_digests) == 0:
        return np.zeros(0, dtype=np.int8), {"groups": 0, "largest_group": 0, "rows_moved": 0}
    titles, title_ids = np.unique(title_digests, return_inverse=True)  # sorted: a smaller id, a smaller digest
    descriptions, description_ids = np.unique(description_digests, return_inverse=True)
    left, right = title_ids, description_ids + len(titles)
    if description_pairs is not None:
        near_left, near_right = (np.searchsorted(descriptions, digests) + len(titles) for digests in description_pairs)
        left, right = np.concatenate((left, near_left)), np.concatenate((right, near_right))
    labels = connected_components(left, right, len(titles) + len(descriptions))
    oversized = {}
    if description_pairs is not None and max_group is not None:
        labels, oversized = _without_oversized(labels, title_ids, left, right, len(description_ids), max_group)
    _, groups = np.unique(labels[title_ids], return_inverse=True)
    representative = np.full(int(groups.max()) + 1, len(titles), dtype=np.int64)
    np.minimum.at(representative, groups, title_ids)
    code = {name: index for index, name in enumerate(SPLITS)}
    title_split = np.fromiter(
        (code[split_of_digest(d, validation_fraction, test_fraction, seed)] for d in titles.tolist()),
        dtype=np.int8,
        count=len(titles),
    )
    splits = title_split[representative[groups]]
    stats = {
        "groups": len(representative),
        "largest_group": int(np.bincount(groups).max()),
        "rows_moved": int((splits != title_split[title_ids]).sum()),
        **oversized,
    }
    return splits, stats


def _without_oversized(labels, title_ids, left, right, rows: int, max_group: int) -> tuple[np.ndarray, dict]:
    """The component labels once the near-duplicate edges (those after the first `rows` edges) of every
    component of more than `max_group` rows are dropped, and how many components and rows that left apart."""
    components, row_component = np.unique(labels[title_ids], return_inverse=True)
    too_big = np.bincount(row_component) > max_group
    near_component = np.searchsorted(components, labels[left[rows:]])
    dropped = too_big[near_component]
    if not dropped.any():
        return labels, {"near_groups_left_apart": 0, "rows_left_apart": 0}
    keep = np.concatenate((np.ones(rows, dtype=bool), ~dropped))
    apart = np.unique(near_component[dropped])
    stats = {"near_groups_left_apart": len(apart), "rows_left_apart": int(np.isin(row_component, apart).sum())}
    return connected_components(left[keep], right[keep], len(labels)), stats
