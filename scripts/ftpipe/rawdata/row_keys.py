"""What prepare keeps of an accepted row: the record as JSON, the digests that deduplication and grouping
compare, and its sample priority.

These are pure functions of the record (and the seed), so they are computed where the record is parsed: in
the parsing workers when prepare runs several processes (parse_with_facts is what the workers call), in the
main process otherwise; the main process only looks the digests up, in input order, and moves the JSON.
Once the sample is chosen, the sampled records' MinHash signatures (record_signatures) are computed by
workers the same way.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import numpy as np
import orjson

from ftpipe.grouping import key_digest, normalized_text
from ftpipe.rawdata.near_duplicates import signatures


class RowFacts(NamedTuple):
    record: bytes  # the cleaned record as JSON (orjson; the kept records hold no lone surrogates)
    row_digest: bytes  # 8 bytes of title key and content: exact duplicates
    title_digest: bytes  # 8 bytes of the title key: repeated titles
    uid_digest: bytes | None  # 8 bytes of the uid; None where the row has none
    priority: float  # the bottom-k sample's key
    group_digests: tuple[int, int]  # grouping's (title, description) key digests


def title_key(title: str) -> str:
    """The normalized title: case and punctuation do not make two products different."""
    key = normalized_text(title)
    # A title of emoji or punctuation only has no word at all: its own characters tell it apart.
    return key or " ".join(title.split())


def hash_unit(text: str, salt: str) -> float:
    """A deterministic pseudo-random number in [0, 1) for `text` (stable across runs and machines)."""
    digest = hashlib.blake2b(f"{salt}\x00{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def sample_priority(record: dict, seed: int) -> float:
    """The bottom-k key of a record: the sample keeps the `sample_size` records with the highest priority."""
    return -hash_unit(f"{record['title']}\x00{record['content']}", f"sample-{seed}")


def row_facts(record: dict, seed: int) -> RowFacts:
    """The facts of a parsed record (see RowFacts)."""
    key, content, uid = title_key(record["title"]), record["content"], record["uid"]
    title = _digest(key)
    return RowFacts(
        orjson.dumps(record),
        _digest(f"{key}\x00{content}"),
        title,
        _digest(uid) if uid else None,
        sample_priority(record, seed),
        # key_digest(key) is the title digest read as a number: one hash less
        (int.from_bytes(title, "big"), key_digest(normalized_text(content))),
    )


def parse_with_facts(parse, seed: int, raw: bytes) -> tuple:
    """`parse(raw)`'s (repairs, reason, detail), and the record's RowFacts (None if rejected) in place of the
    record: the main process has no use for its dict."""
    record, repairs, reason, detail = parse(raw)
    return repairs, reason, detail, None if reason is not None else row_facts(record, seed)


def split_line(number: int, record: bytes) -> bytes:
    """A split file's line: orjson.dumps({"line": number, **record}) of the record's JSON, without decoding it
    (a record has no "line" field, and at least one)."""
    return b'{"line":%d,%s\n' % (number, record[1:])


def record_signatures(records: list[bytes], shingle: int, num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    """The (signatures, has_words) of the normalized descriptions of records given as JSON (as a
    near_duplicates.SignatureStore gives them: a text's signature does not depend on its block)."""
    texts = [normalized_text(orjson.loads(record)["content"]) for record in records]
    return signatures(texts, shingle, num_perm), np.array([bool(text) for text in texts], dtype=bool)


def _digest(text: str, _blake2b=hashlib.blake2b) -> bytes:
    return _blake2b(text.encode(), digest_size=8).digest()
