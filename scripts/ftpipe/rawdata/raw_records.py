"""A catalog file as numbered raw records, whatever its format: JSON Lines, a JSON array, CSV or TSV (any
common delimiter), or Parquet, each possibly compressed (raw_input), recognized by its content, not its name.

`open_catalog` yields a Catalog: the records as (number, raw bytes) — a JSON line or array element, a CSV
record (which may span several lines), a Parquet row as JSON — and the `parse` that turns one raw record
into (record, repairs, reason, detail) (repairs.py), with the source's columns mapped (columns.py).
Records are read as they are consumed, so memory stays bounded; only a JSON array is read whole.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from itertools import chain, islice
from pathlib import Path

import orjson

from ftpipe.rawdata import repairs
from ftpipe.rawdata.columns import choose_columns
from ftpipe.rawdata.raw_input import BOM, HEAD_BYTES, InputError, check_head, open_input, read_errors, split_array

READ_BYTES = 8 << 20
PARQUET_MAGIC = b"PAR1"
PEEK_RECORDS = 100  # a JSON file's columns are the keys of its first objects
_encode = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps(x, ensure_ascii=False), one encoder


@dataclass
class Catalog:
    """An open catalog file: its records, how to parse one, and what was recognized."""

    format: str  # json_lines, json_array, csv, parquet
    items: Iterator[tuple[int, bytes]]
    parse: Callable[[bytes], tuple]
    columns: dict  # canonical name -> the source's column (uid: None when it has none)
    detected: list[str] = field(default_factory=list)  # the canonical names not set by data.columns
    delimiter: str | None = None
    first_lines: array | None = None  # CSV: the line each record starts on (record n at index n - 1)

    def where(self, number: int) -> dict:
        """What a reject row says besides the record number: a CSV record's first line."""
        return {} if self.first_lines is None else {"first_line": self.first_lines[number - 1]}

    def summary(self) -> dict:
        summary = {"format": self.format, "columns": self.columns, "columns_detected": self.detected}
        if self.delimiter is not None:
            summary["delimiter"] = self.delimiter
        return summary


@contextmanager
def open_catalog(path: Path, digest, columns: dict | None = None, delimiter: str | None = None):
    """Yield the Catalog of the file at `path`; the file's own bytes go into `digest` (a hashlib object) as
    it is read, so the input is read once. `columns` (data.columns) and `delimiter` (data.delimiter) are
    the configuration's; None: recognized. Stops with InputError for a file that cannot be used."""
    with open_input(path, digest) as (stream, kind), ExitStack() as stack:
        head = _read(path, kind, lambda: stream.read(HEAD_BYTES))
        if head.startswith(PARQUET_MAGIC):
            from ftpipe.rawdata.parquet_rows import parquet_catalog

            catalog = parquet_catalog(path, stream, head, kind, columns, stack)
        else:
            check_head(path, head, kind)
            if looks_like_json(head):
                catalog = json_catalog(path, stream, head, kind, columns)
            else:
                from ftpipe.rawdata.delimited import delimited_catalog

                catalog = delimited_catalog(path, _GuardedStream(path, kind, stream, head), columns, delimiter)
        yield catalog


def looks_like_json(head: bytes) -> bool:
    """JSON when the first line that is not blank opens an object or an array (or is a JSON line that went
    through a CSV round-trip: `"{""uid"": ...`), or holds `{"`; anything else is delimited text."""
    first = next((line.strip() for line in head.removeprefix(BOM).splitlines() if line.strip()), b"")
    return first.startswith((b"{", b"[", b'"{')) or b'{"' in first


def _read(path: Path, kind: str | None, read):
    try:
        return read()
    except read_errors() as err:
        what = f"the {kind} data" if kind else "the file"
        raise InputError(f"{path}: {what} cannot be read to the end: damaged or cut short ({err})") from None


class _GuardedStream:
    """A stream's blocks, `head` (bytes read already) first, with read errors turned into one InputError."""

    def __init__(self, path: Path, kind: str | None, stream, head: bytes = b""):
        self.path, self.kind, self.stream, self.head = path, kind, stream, head

    def read(self, size: int = -1) -> bytes:
        if self.head:
            block, self.head = self.head, b""
            return block
        return _read(self.path, self.kind, lambda: self.stream.read(size))


# ---------------------------------------------------------------- JSON Lines and JSON arrays


def json_catalog(path: Path, stream, head: bytes, kind: str | None, columns: dict | None) -> Catalog:
    if head.removeprefix(BOM).lstrip().startswith(b"["):
        format_name, items = "json_array", _iter_array(path, head + _read(path, kind, stream.read))
    else:
        # Lines ended by CR alone (old Mac files): the first block has several and no LF.
        newline = b"\r" if b"\n" not in head and head.count(b"\r") > 1 else b"\n"
        format_name, items = "json_lines", iter_jsonl(_GuardedStream(path, kind, stream), head, newline)
    first = list(islice(items, PEEK_RECORDS))
    keys = _keys_of(raw for _, raw in first)
    if keys:
        chosen, detected = choose_columns(path, keys, columns, "JSON keys")
    else:  # not one object among the first records: every line is rejected with its own reason
        configured = {name: value for name, value in (columns or {}).items() if value is not None}
        chosen = {**repairs.STANDARD_COLUMNS, **configured}
        detected = [name for name in repairs.STANDARD_COLUMNS if name not in configured]
    if chosen["uid"] is None:
        chosen["uid"] = "uid"  # a JSON object may still carry one
    parse = repairs.parse_json_record
    if chosen != repairs.STANDARD_COLUMNS:
        parse = partial(repairs.parse_json_record, columns=chosen)
    return Catalog(format_name, chain(first, items), parse, chosen, detected)


def _keys_of(raws) -> list[str]:
    """The keys of the JSON objects among `raws` (a line cut from an array may end in a comma), in the order
    they first appear."""
    keys: dict[str, None] = {}
    for raw in raws:
        try:
            obj = orjson.loads(raw.rstrip().removesuffix(b","))
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            keys.update(dict.fromkeys(obj))
    return list(keys)


def iter_jsonl(stream, head: bytes, newline: bytes = b"\n"):
    """The numbered lines of a JSON Lines stream whose first bytes (`head`) are already read, read on in
    blocks of READ_BYTES (what iterating the file would give); a CR before the LF is dropped."""
    number = 0
    pending: list[bytes] = []  # the start of a line that runs past the block read so far
    block = head
    while block:
        if newline not in block:
            pending.append(block)
            block = stream.read(READ_BYTES)
            continue
        if pending:
            pending.append(block)
            block = b"".join(pending)
            pending = []
        lines = block.split(newline)
        last = lines.pop()
        if last:
            pending.append(last)
        if number == 0:
            lines[0] = lines[0].removeprefix(BOM)
        for line in lines:
            number += 1
            yield number, line.rstrip(b"\r") if line.endswith(b"\r") else line
        block = stream.read(READ_BYTES)
    if pending:
        line = b"".join(pending)
        if number == 0:
            line = line.removeprefix(BOM)
        yield number + 1, line.rstrip(b"\r\n")


def _iter_array(path: Path, data: bytes):
    text = data.decode("utf-8", errors=repairs.LEGACY_BYTES).removeprefix("\ufeff")
    try:
        items = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: line {err.lineno}: not valid JSON ({err.msg})") from None
    except (RecursionError, ValueError):  # one element too deep or too large a number: read the others
        yield from enumerate((element.encode("utf-8") for element in split_array(text)), start=1)
        return
    if not isinstance(items, list):
        raise InputError(f"{path}: expected a JSON array of objects or JSON Lines")
    for number, item in enumerate(items, start=1):
        yield number, _element_bytes(item)


def _element_bytes(item) -> bytes:
    text = _encode(item)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (\ud800): kept as its escape, so the line parser sees it
        return json.dumps(item).encode("ascii")
