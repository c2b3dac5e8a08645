"""Near-duplicate descriptions: MinHash signatures over word shingles, banded LSH, verified pairs.

Product lines that differ by a model number share whole spec strings, so their descriptions are not equal
but nearly: the group split joins two descriptions whose estimated Jaccard similarity (of their sets of
`shingle`-word shingles, words as ftpipe.grouping.normalized_text gives them) reaches `threshold`.

Everything is vectorized over blocks of texts with numpy: word hashes are polynomial hashes of the UTF-8
bytes taken from prefix sums, shingle hashes combine `shingle` word hashes, and each of `num_perm` hash
functions is x -> a*x + b (mod 2^64). Only 16 bits of each minimum are kept (b-bit MinHash: two different
minima agree by chance once in 65,536, a negligible bias), so a row costs 2 * num_perm bytes and no text is
held. LSH: the signature is cut into bands of `rows` values; descriptions with an equal band are candidates,
and a candidate pair is joined when the share of equal signature values reaches the threshold.
"""

from __future__ import annotations

from array import array
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ftpipe.grouping import group_splits

BLOCK_CHARS = 1 << 18  # texts hashed together: transient memory is about 40 bytes a character of a block
NEIGHBOURS = 8  # in a band's bucket, each description is compared with the next NEIGHBOURS (sorted by digest)
MIN_RECALL = 0.9  # bands are chosen so that a pair exactly at the threshold is a candidate this often
VERIFY_PAIRS = 1 << 16  # candidate pairs compared at once

_U64 = np.uint64
_BYTE_BASE = 0x100000001B3  # odd, so it has an inverse modulo 2^64
_BYTE_BASE_INVERSE = pow(_BYTE_BASE, -1, 1 << 64)
_SPACE = ord(" ")


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: every output bit depends on every input bit (uint64, wraps modulo 2^64)."""
    values = values ^ (values >> _U64(30))
    values *= _U64(0xBF58476D1CE4E5B9)
    values ^= values >> _U64(27)
    values *= _U64(0x94D049BB133111EB)
    return values ^ (values >> _U64(31))


def _constants(count: int, salt: int) -> np.ndarray:
    """`count` odd pseudo-random uint64 constants, the same on every machine."""
    return _mix(np.arange(count, dtype=_U64) + _U64(salt * 0x9E3779B97F4A7C15 % (1 << 64))) | _U64(1)


def word_hashes(joined: str) -> np.ndarray:
    """A 64-bit hash of every word of `joined` (words separated by single spaces, as normalized_text leaves
    them): the polynomial hash of its UTF-8 bytes, from prefix sums, mixed."""
    data = np.frombuffer(joined.encode(), dtype=np.uint8)
    if len(data) == 0:
        return np.zeros(0, dtype=_U64)
    powers, inverse_powers = _powers(len(data))
    prefix = np.zeros(len(data) + 1, dtype=_U64)
    np.cumsum(data * powers, out=prefix[1:])
    spaces = np.flatnonzero(data == _SPACE)
    starts = np.concatenate(([0], spaces + 1))
    ends = np.concatenate((spaces, [len(data)]))
    return _mix((prefix[ends] - prefix[starts]) * inverse_powers[starts])


_POWERS: list[np.ndarray] = []


def _powers(length: int) -> tuple[np.ndarray, np.ndarray]:
    """The byte base's first `length` powers and inverse powers modulo 2^64, computed once for every block."""
    if not _POWERS or len(_POWERS[0]) < length:
        size = max(length, BLOCK_CHARS * 2)
        tables = []
        for base in (_BYTE_BASE, _BYTE_BASE_INVERSE):
            table = np.full(size, base, dtype=_U64)
            table[0] = 1
            tables.append(np.cumprod(table, out=table))  # wraps modulo 2^64, as the hash wants
        _POWERS[:] = tables
    return _POWERS[0][:length], _POWERS[1][:length]


def shingle_hashes(texts: list[str], shingle: int, short_texts: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(hashes, counts): the hashes of every text's word shingles (runs of `shingle` words; a text of fewer
    words is one shingle of all of them if `short_texts`, else none; an empty text none), concatenated, and
    how many each text has."""
    words_per_text = np.array([text.count(" ") + 1 if text else 0 for text in texts], dtype=np.int64)
    words = word_hashes(" ".join(text for text in texts if text))
    text_end = np.repeat(np.cumsum(words_per_text), words_per_text)  # the end of each word's text
    position = np.arange(len(words))
    combined = np.zeros(len(words), dtype=_U64)
    for offset, constant in enumerate(_constants(shingle, salt=1)):
        inside = position + offset < text_end  # a shingle never runs into the next text
        combined[inside] += words[position[inside] + offset] * constant
    text_start = text_end - np.repeat(words_per_text, words_per_text)
    length = np.repeat(words_per_text, words_per_text)
    starts_shingle = position + shingle <= text_end
    counts = np.maximum(words_per_text - shingle + 1, 0)
    if short_texts:
        starts_shingle |= (length < shingle) & (position == text_start)
        counts = np.minimum(np.maximum(counts, 1), words_per_text)
    return _mix(combined[starts_shingle]), counts


def signatures(texts: list[str], shingle: int, num_perm: int) -> np.ndarray:
    """The (len(texts), num_perm) uint16 MinHash signatures of normalized texts; an empty text gets all
    0xFFFF (`has_words` tells those apart)."""
    hashes, counts = shingle_hashes(texts, shingle)
    out = np.full((len(texts), num_perm), 0xFFFF, dtype=np.uint16)
    present = counts > 0
    if not present.any():
        return out
    offsets = np.concatenate(([0], np.cumsum(counts[present])[:-1]))
    multipliers, addends = _constants(num_perm, salt=2), _constants(num_perm, salt=3)
    for first in range(0, num_perm, 8):  # 8 hash functions at a time bound the transient memory
        part = slice(first, first + 8)
        values = hashes[None, :] * multipliers[part, None] + addends[part, None]
        minima = np.minimum.reduceat(values, offsets, axis=1)
        out[present, part] = (_mix(minima) >> _U64(48)).T.astype(np.uint16)
    return out


class SignatureStore:
    """MinHash signatures of texts added one by one: holds 2 * num_perm bytes a text, and blocks of at most
    BLOCK_CHARS characters waiting to be hashed. A block is hashed by one background thread (numpy releases
    the interpreter meanwhile, so reading goes on beside it); the thread starts with the first full block, so
    a process pool forked before that (prepare's parsing workers) never forks a running thread."""

    def __init__(self, shingle: int, num_perm: int):
        self.shingle, self.num_perm = shingle, num_perm
        self.values = array("H")
        self.words = array("b")  # 1 where the text has a word
        self.pending: list[str] = []
        self.pending_chars = 0
        self.in_flight: deque = deque()
        self.executor = None

    def add(self, normalized: str) -> None:
        self.pending.append(normalized)
        self.words.append(1 if normalized else 0)
        self.pending_chars += len(normalized) + 1
        if self.pending_chars >= BLOCK_CHARS:
            self._submit()

    def _submit(self) -> None:
        if self.executor is None:
            self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="minhash")
        self.in_flight.append(self.executor.submit(signatures, self.pending, self.shingle, self.num_perm))
        self.pending, self.pending_chars = [], 0
        while len(self.in_flight) > 2:  # bounds the texts held
            self.values.frombytes(self.in_flight.popleft().result().tobytes())

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(signatures, has_words) of every text added, in order (views of the store, not copies)."""
        if self.pending:  # in the thread if it runs: one thread at a time hashes (it grows a shared table)
            if self.executor is None:
                self.in_flight.append(_Done(signatures(self.pending, self.shingle, self.num_perm)))
            else:
                self.in_flight.append(self.executor.submit(signatures, self.pending, self.shingle, self.num_perm))
            self.pending, self.pending_chars = [], 0
        while self.in_flight:
            self.values.frombytes(self.in_flight.popleft().result().tobytes())
        if self.executor is not None:
            self.executor.shutdown()
            self.executor = None
        table = np.frombuffer(self.values, dtype=np.uint16).reshape(-1, self.num_perm)
        return table, np.frombuffer(self.words, dtype=np.int8).astype(bool)


class _Done:
    """A result computed in this thread, queued behind the background thread's."""

    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


def band_rows(threshold: float, num_perm: int) -> int:
    """Signature values per band: the most (fewer candidates to compare) with which a pair exactly at the
    threshold still shares a band with probability MIN_RECALL (1 - (1 - t^r)^b, b = num_perm // r)."""
    best = 1
    for rows in range(1, num_perm + 1):
        if 1 - (1 - threshold**rows) ** (num_perm // rows) >= MIN_RECALL:
            best = rows
    return best


def near_duplicate_pairs(
    description_digests: np.ndarray, row_signatures: np.ndarray, has_words: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, dict]:
    """(left, right, stats): the pairs of description digests whose descriptions are near-duplicates.

    Works on distinct descriptions (rows with the same digest are one), in digest order, so the pairs do not
    depend on the row order. Descriptions sharing a band are compared with their next NEIGHBOURS in the
    band's bucket (all pairs in a bucket of up to NEIGHBOURS + 1); a pair whose signatures agree in at least
    `threshold` of their values is kept."""
    digests, first = np.unique(description_digests, return_index=True)
    keep = has_words[first]
    digests, row_of = digests[keep], first[keep]  # a description's row: the signatures are not copied
    num_perm = row_signatures.shape[1]
    rows = band_rows(threshold, num_perm)
    bands = num_perm // rows
    need = int(np.ceil(threshold * num_perm - 1e-9))  # equal values a kept pair has
    found, compared = [], 0
    for band in range(bands):
        keys = _band_keys(row_signatures[row_of, band * rows : (band + 1) * rows])
        order = np.argsort(keys, kind="stable")
        ordered = keys[order]
        for distance in range(1, min(NEIGHBOURS, len(order) - 1) + 1):
            same = np.flatnonzero(ordered[distance:] == ordered[:-distance])
            if len(same) == 0:
                break  # no bucket holds distance + 1 descriptions
            left, right = order[same], order[same + distance]
            compared += len(same)
            found.append(_verified(row_signatures, row_of, np.minimum(left, right), np.maximum(left, right), need))
    codes = np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)
    left, right = codes // max(len(digests), 1), codes % max(len(digests), 1)
    stats = {"bands": bands, "band_rows": rows, "compared": compared, "pairs": len(codes)}
    return digests[left], digests[right], stats


def _band_keys(values: np.ndarray) -> np.ndarray:
    combined = np.zeros(len(values), dtype=_U64)
    for column, constant in zip(values.T, _constants(values.shape[1], salt=4), strict=True):
        combined += column.astype(_U64) * constant
    return _mix(combined)


def _verified(table: np.ndarray, row_of: np.ndarray, left: np.ndarray, right: np.ndarray, need: int) -> np.ndarray:
    """left * n + right for the pairs of descriptions whose signatures (`table[row_of[d]]`) agree in at least
    `need` values."""
    kept = []
    for start in range(0, len(left), VERIFY_PAIRS):
        part_left, part_right = left[start : start + VERIFY_PAIRS], right[start : start + VERIFY_PAIRS]
        agree = (table[row_of[part_left]] == table[row_of[part_right]]).sum(axis=1)
        chosen = agree >= need
        kept.append(part_left[chosen].astype(np.int64) * len(row_of) + part_right[chosen])
    return np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)


def grouped_splits(
    digests: tuple[np.ndarray, np.ndarray],
    signatures: tuple[np.ndarray, np.ndarray] | None,
    settings: dict,
    validation_fraction: float,
    test_fraction: float,
    seed: int,
) -> tuple[np.ndarray, dict, dict]:
    """(split codes, assignments, grouping counts): the group split of rows with (title, description)
    `digests`, near-duplicate descriptions joined when `settings` (data.near_duplicates's keys) has a threshold
    (`signatures`: (values, has_words)). `assignments` names each split assignment computed: the exact groups
    alone, and with near-duplicates."""
    exact, grouping = group_splits(*digests, validation_fraction, test_fraction, seed)
    if settings["threshold"] is None:
        return exact, {"exact_groups": exact}, grouping
    left, right, pairs = near_duplicate_pairs(digests[1], *signatures, settings["threshold"])
    joined, grouping_joined = group_splits(
        *digests, validation_fraction, test_fraction, seed, (left, right), settings["max_group"]
    )
    left_apart = {key: grouping_joined.pop(key, 0) for key in ("near_groups_left_apart", "rows_left_apart")}
    grouping_joined["near_duplicates"] = {
        "threshold": settings["threshold"],
        "max_group": settings["max_group"],
        **pairs,
        "groups_joined": grouping["groups"] - grouping_joined["groups"],
        "rows_moved": int((joined != exact).sum()),  # rows in another split than the exact groups give
        **left_apart,
    }
    return joined, {"exact_groups": exact, "near_duplicate_groups": joined}, grouping_joined
