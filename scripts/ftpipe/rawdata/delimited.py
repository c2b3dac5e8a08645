"""CSV and TSV catalogs (RFC 4180: fields in double quotes may hold the delimiter, doubled quotes and line
breaks; a byte order mark is dropped): a header, then one record per product, a record counted once however
many lines its quoted fields span.

The main process only finds where each record ends (Python's csv reader over the lines, keeping the lines
it took); `DelimitedRecordParser` reads the record's fields again from those bytes, where the other records
are parsed (in worker processes too), so a record travels as bytes like a JSON line. A record the csv
reader refuses (a quote that is never closed, text after a closing quote) or that has another number of
fields than the header is rejected with the reader's message, not a crash.
"""

from __future__ import annotations

import csv
import io
import re
from array import array
from pathlib import Path

from ftpipe.rawdata import repairs
from ftpipe.rawdata.columns import choose_columns
from ftpipe.rawdata.raw_input import BOM, InputError

DELIMITERS = (",", "\t", ";", "|")  # the ones recognized, in order of preference when counts tie
TAB_NAMES = {"\\t": "\t", "tab": "\t", "TAB": "\t"}  # how a tab is written on a command line
READ_BYTES = 8 << 20
MAX_FIELD_CHARS = 1 << 20  # as prepare's MAX_LINE_BYTES: a quote that never closes stops swallowing lines here
csv.field_size_limit(MAX_FIELD_CHARS)


def delimited_catalog(path: Path, stream, columns: dict | None, delimiter: str | None):
    from ftpipe.rawdata.raw_records import Catalog

    lines = raw_lines(stream)
    first_line, skipped = next(lines, b""), 0
    excel = re.fullmatch(rb"sep=(.)\r?\n?", first_line)
    if excel:  # Excel's "sep=;" line names the delimiter; the header follows it
        delimiter = delimiter or excel.group(1).decode("latin-1")
        first_line, skipped = next(lines, b""), 1
    delimiter = TAB_NAMES.get(delimiter, delimiter) or sniff_delimiter(
        first_line.decode("utf-8", errors=repairs.LEGACY_BYTES)
    )
    if len(delimiter) != 1:
        raise InputError(f"{path}: data.delimiter must be one character (or \\t, tab), not {delimiter!r}")
    dialect = {"delimiter": delimiter, "quotechar": '"', "doublequote": True, "strict": True}
    records = split_records(_prepend(first_line, lines), dialect, skipped)
    header = _header(path, records)
    chosen, detected = choose_columns(path, header, columns, "CSV header")
    indexes = {canonical: header.index(name) for canonical, name in chosen.items() if name is not None}
    parse = DelimitedRecordParser(dialect, len(header), indexes)
    first_lines = array("q")

    def items():
        for number, (line, raw, _) in enumerate(records, start=1):
            first_lines.append(line)
            yield number, raw

    format_name = "tsv" if delimiter == "\t" else "csv"
    return Catalog(format_name, items(), parse, chosen, detected, delimiter, first_lines)


def _prepend(first: bytes, lines):
    if first:
        yield first
    yield from lines


def _header(path: Path, records) -> list[str]:
    for line, _, fields in records:
        if isinstance(fields, csv.Error):
            raise InputError(f"{path}: line {line}: the header cannot be read as CSV ({fields})")
        if fields:  # blank lines before the header hold nothing
            return [name.strip() for name in fields]
    raise InputError(f"{path}: no header line (expected a CSV or TSV file with one)")


def sniff_delimiter(header: str) -> str:
    """The delimiter that occurs most often outside quotes in the header line (a comma when none does)."""
    outside, quoted = [], False
    for char in header:
        if char == '"':
            quoted = not quoted
        elif not quoted:
            outside.append(char)
    counts = {delimiter: outside.count(delimiter) for delimiter in DELIMITERS}
    best = max(DELIMITERS, key=lambda delimiter: counts[delimiter])  # max keeps the first of equal counts
    return best if counts[best] else ","


def raw_lines(stream):
    """The lines of a byte stream with their line ends (LF, CRLF or CR alone), read in blocks of READ_BYTES;
    a byte order mark at the start is dropped."""
    pending = b""
    first = True
    while block := stream.read(READ_BYTES):
        if first:
            block, first = block.removeprefix(BOM), False
        lines = (pending + block).splitlines(keepends=True)
        pending = lines.pop() if lines else b""  # may be cut short, or a CR whose LF comes next
        yield from lines
    if pending:
        yield from pending.splitlines(keepends=True)


class _TakenLines:
    """The lines handed to the csv reader (decoded), kept as bytes until its record is complete."""

    def __init__(self, lines):
        self.lines = iter(lines)
        self.taken: list[bytes] = []
        self.count = 0

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = next(self.lines)
        self.taken.append(line)
        self.count += 1
        return line.decode("utf-8", errors=repairs.LEGACY_BYTES)  # only where the record ends matters here

    def record(self) -> bytes:
        raw = b"".join(self.taken)
        self.taken.clear()
        return raw


def split_records(lines, dialect: dict, skipped: int = 0):
    """Yield (the line the record starts on, its raw bytes, its fields or the csv.Error it raised); `skipped`
    lines were read before `lines`."""
    taken = _TakenLines(lines)
    taken.count = skipped
    reader = csv.reader(taken, **dialect)
    while True:
        start = taken.count + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as err:  # the reader starts afresh on the next line
            fields = err
        yield start, taken.record(), fields


class DelimitedRecordParser:
    """One raw CSV record -> (record, repairs, reason, detail), with the header's `width` and the columns'
    `indexes` (canonical name -> field index); picklable, for the parsing workers."""

    def __init__(self, dialect: dict, width: int, indexes: dict):
        self.dialect, self.width, self.indexes = dialect, width, indexes

    def __call__(self, raw: bytes) -> tuple:
        found: list[str] = []
        text = repairs.decode_text(raw, found)
        if not text.strip():
            return None, found, "blank_line", None
        try:
            rows = list(csv.reader(io.StringIO(text, newline=""), **self.dialect))
        except csv.Error as err:
            return None, found, *_csv_problem(err)
        if len(rows) != 1:  # not produced by split_records; a record is one row
            return None, found, "malformed_csv", f"{len(rows)} rows in one record"
        [fields] = rows
        if len(fields) != self.width:
            return (
                None,
                found,
                "wrong_field_count",
                f"{len(fields)} fields (delimiter {self.dialect['delimiter']!r}) where the header has {self.width}",
            )
        obj = {canonical: _unescaped(fields[index], found) for canonical, index in self.indexes.items()}
        return (*repairs.clean_record(obj, found), None)


def _unescaped(value: str, found: list[str]) -> str:
    """Line breaks written as the two characters \\n (WooCommerce's exporter does) read as line breaks."""
    if "\\n" not in value:
        return value
    if "escaped_newlines" not in found:
        found.append("escaped_newlines")
    return value.replace("\\r\\n", "\n").replace("\\n", "\n")


def _csv_problem(err: csv.Error) -> tuple[str, str]:
    message = str(err)
    if message == "unexpected end of data":
        return "unclosed_quote", "a quoted field is never closed before the end of the file (unexpected end of data)"
    if message.startswith("field larger than field limit"):
        return (
            "unclosed_quote",
            f"a quoted field runs past {MAX_FIELD_CHARS} characters: its quote is never closed ({message})",
        )
    return "malformed_csv", message
