"""Stage 1, prepare: raw AmazonTitles JSON -> cleaned, deduplicated, sampled train/validation/test splits.

Every input line ends in exactly one outcome: `kept`, `repaired` (kept after a repair) or `rejected`
(written to the rejects file with its line number, reason and raw text). JSON Lines input is streamed,
so memory stays bounded whatever the file size; a JSON array file is read whole. The split is by group
(ftpipe.grouping: rows sharing a normalized title or description), so every sampled row is seen before the
first is written: all rows without a sample size, and a sample of more than IN_MEMORY_SAMPLE rows, are
spilled to a temporary file next to the outputs (only priorities, line numbers and key digests stay in
memory) and written back in order.
"""

import argparse
import codecs
import hashlib
import heapq
import html
import json
import logging
import math
import pickle
import sys
import tempfile
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ftpipe import settings, stage  # noqa: E402
from ftpipe.grouping import SPLITS, group_splits, key_digest, normalized_text, split_of_digest  # noqa: E402
from ftpipe.html_text import html_text  # noqa: E402
from ftpipe.io import atomic_path, write_json  # noqa: E402
from ftpipe.prompts import instruction_text, training_text  # noqa: E402
from ftpipe.raw_input import HEAD_BYTES, InputError, check_head, open_input, read_errors, split_array  # noqa: E402

log = logging.getLogger("ftpipe.prepare")

MAX_LINE_BYTES = 1 << 20  # a product record is a few KB; a megabyte line is a broken export
REJECT_RAW_CHARS = 4096
IN_MEMORY_SAMPLE = 10_000  # a larger sample is spilled to disk: a kept row costs about 2 KB in memory, and
# the heap of dicts is slower than the spill file (the garbage collector walks it)
READ_BYTES = 8 << 20
_BOM = b"\xef\xbb\xbf"
_encode = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps(x, ensure_ascii=False), one encoder
_CONTROL_CATEGORIES = {"Cc", "Cf", "Cs", "Co"}


@dataclass
class Outcome:
    """What happened to one input line."""

    record: dict | None = None
    repairs: list[str] = field(default_factory=list)
    reason: str | None = None  # set when rejected


# ---------------------------------------------------------------- reading lines


def iter_lines(path: Path, digest):
    """Yield (line_number, raw_bytes) for every line of a JSON Lines file, or every element of a JSON array,
    decompressed if the file is compressed; the file's own bytes also go into `digest` (a hashlib object),
    so the input is read once."""
    with open_input(path, digest) as (stream, kind):
        try:
            head = stream.read(HEAD_BYTES)
            check_head(path, head, kind)
            if head.removeprefix(_BOM).lstrip().startswith(b"["):
                yield from _iter_array(path, head + stream.read())
            else:
                # Lines ended by CR alone (old Mac files): the first block has several and no LF.
                newline = b"\r" if b"\n" not in head and head.count(b"\r") > 1 else b"\n"
                yield from _iter_jsonl(stream, head, newline)
        except read_errors() as err:
            what = f"the {kind} data" if kind else "the file"
            raise InputError(f"{path}: {what} cannot be read to the end: damaged or cut short ({err})") from None


def _iter_jsonl(stream, head: bytes, newline: bytes = b"\n"):
    """The lines of a JSON Lines stream whose first bytes (`head`) are already read, read on in blocks of
    READ_BYTES (what iterating the file would give); a CR before the LF is dropped."""
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
            lines[0] = lines[0].removeprefix(_BOM)
        for line in lines:
            number += 1
            yield number, line.rstrip(b"\r") if line.endswith(b"\r") else line
        block = stream.read(READ_BYTES)
    if pending:
        line = b"".join(pending)
        if number == 0:
            line = line.removeprefix(_BOM)
        yield number + 1, line.rstrip(b"\r\n")


def _iter_array(path: Path, data: bytes):
    text = data.decode("utf-8", errors=_LEGACY_BYTES).removeprefix("\ufeff")
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


# ---------------------------------------------------------------- parsing and repairing one line


def parse_line(raw: bytes) -> Outcome:
    """Decode, parse and clean one raw line into an Outcome (record with repairs, or a reject reason)."""
    try:
        record, repairs, reason = _parse(raw)
    except Exception as err:
        record, repairs, reason = None, [], failure_reason(err)
    return Outcome(record=record, repairs=repairs, reason=reason)


def failure_reason(err: Exception) -> str:
    """The reject reason of a line whose parsing or cleaning raised: one line never stops the stage."""
    return "nested_too_deeply" if isinstance(err, RecursionError) else "unreadable_line"


def _parse(raw: bytes) -> tuple[dict | None, list[str], str | None]:
    """parse_line's work as (record, repairs, reason), without building an Outcome for every line."""
    try:
        obj = orjson.loads(raw)  # fast path: valid UTF-8, strict JSON
    except orjson.JSONDecodeError:
        return _parse_slowly(raw)
    if obj.__class__ is not dict and not isinstance(obj, dict):
        return None, [], "not_an_object"
    return _clean(obj, [])


def _parse_slowly(raw: bytes) -> tuple[dict | None, list[str], str | None]:
    """Lines the strict parser refused: bytes that are not UTF-8, raw control characters, NaN, doubled
    quotes, lone surrogates, deep nesting, or really broken."""
    repairs: list[str] = []
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors=_LEGACY_BYTES)
        repairs.append("invalid_utf8")
    if not text.strip():
        return None, repairs, "blank_line"
    obj = _loads(text, repairs)
    if obj is _INVALID:
        return None, repairs, "invalid_json"
    if not isinstance(obj, dict):
        return None, repairs, "not_an_object"
    record, repairs, reason = _clean(obj, repairs)
    if reason is None and not _encodable(record):
        return None, repairs, "lone_surrogate"  # in a uid or a label: no faithful text to keep
    return record, repairs, reason


def _legacy_bytes(err: UnicodeDecodeError) -> tuple[str, int]:
    """Decode error handler: bytes that are not UTF-8 are read as Windows-1252, what such files usually are
    (as Latin-1 where Windows-1252 leaves a byte undefined), so "Caf\xe9" reads "Café"."""
    return err.object[err.start : err.end].decode("latin-1").translate(_CP1252), err.end


_LEGACY_BYTES = "ftpipe-cp1252"
codecs.register_error(_LEGACY_BYTES, _legacy_bytes)
_CP1252_UNDEFINED = (0x81, 0x8D, 0x8F, 0x90, 0x9D)
_CP1252 = {byte: bytes([byte]).decode("cp1252") for byte in range(0x80, 0xA0) if byte not in _CP1252_UNDEFINED}
_INVALID = object()  # what _loads returns for text that is not JSON (None is JSON's null)
_LENIENT = json.JSONDecoder(strict=False)  # accepts raw control characters inside strings


def _loads(text: str, repairs: list[str]):
    """The JSON value of a line, or _INVALID; a CSV round-trip's doubled quotes and raw control characters
    inside strings are repaired."""
    value = _loads_lenient(text, repairs)
    stripped = text.strip()
    # A CSV round-trip wraps the line in quotes and doubles every quote inside it.
    if value is _INVALID and stripped.startswith('"') and stripped.endswith('"') and '""' in stripped:
        value = _loads_lenient(stripped[1:-1].replace('""', '"'), repairs)
        _note(repairs, "doubled_quotes", value is not _INVALID)
    return value


def _loads_lenient(text: str, repairs: list[str]):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        value = _LENIENT.decode(text)
    except json.JSONDecodeError:
        return _INVALID
    _note(repairs, "control_characters", True)  # only raw control characters separate strict and lenient
    return value


def _encodable(record: dict) -> bool:
    try:
        _encode(record).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _field(obj: dict, name: str, repairs: list[str]):
    if name in obj:
        return obj[name]
    for key in obj:
        if isinstance(key, str) and key.strip().lower() == name:
            _note(repairs, "field_name_case", True)
            return obj[key]
    return None


def clean_text(value: str, repairs: list[str]) -> str:
    """Unescape HTML entities, drop markup and control characters, collapse whitespace; note each repair.

    Each step is skipped where it cannot change the text (no `&`, no `<`, all printable and no doubled,
    leading or trailing space), which is most lines."""
    text = value
    if "&" in text:
        for _ in range(3):  # entities are sometimes escaped twice (&amp;#8217;)
            unescaped = html.unescape(text)
            if unescaped == text:
                break
            text = unescaped
        _note(repairs, "html_entities", text != value)
    untagged = text
    if "<" in text:
        untagged = html_text(text)
        _note(repairs, "html_tags", untagged != text)
    printable = untagged
    if untagged.isprintable():
        # A printable text holds no whitespace but " " (str.isprintable excludes every other space character),
        # so str.split() would change it only at a doubled, leading or trailing space.
        if "  " not in untagged and not untagged.startswith(" ") and not untagged.endswith(" "):
            return untagged
    else:
        printable = "".join(
            " " if not ch.isspace() and unicodedata.category(ch) in _CONTROL_CATEGORIES else ch for ch in untagged
        )
        _note(repairs, "control_characters", printable != untagged)
    collapsed = " ".join(printable.split())
    _note(repairs, "whitespace", collapsed != printable)
    return collapsed


def _note(repairs: list[str], reason: str, happened: bool) -> None:
    if happened and reason not in repairs:
        repairs.append(reason)


def _as_list(value, repairs: list[str]):
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return None
        if isinstance(parsed, list):
            _note(repairs, "list_as_string", True)
            return parsed
        return None
    return value if isinstance(value, list) or value is None else None


def clean_record(obj: dict, repairs: list[str]) -> Outcome:
    record, repairs, reason = _clean(obj, repairs)
    return Outcome(record=record, repairs=repairs, reason=reason)


def _clean(obj: dict, repairs: list[str]) -> tuple[dict | None, list[str], str | None]:
    title, reason = _cleaned_field(obj, "title", repairs)
    if reason is not None:
        return None, repairs, reason
    content, reason = _cleaned_field(obj, "content", repairs)
    if reason is not None:
        return None, repairs, reason
    uid = obj.get("uid")
    record = {"uid": str(uid) if uid is not None else "", "title": title, "content": content}
    if "target_ind" in obj:
        record["target_ind"] = _as_list(obj["target_ind"], repairs)
    if "target_rel" in obj:
        record["target_rel"] = _as_list(obj["target_rel"], repairs)
    return record, repairs, None


def _cleaned_field(obj: dict, name: str, repairs: list[str]) -> tuple[str | None, str | None]:
    """(the cleaned text of field `name`, None), or (None, why the record is rejected)."""
    value = _field(obj, name, repairs)
    reason = _text_problem(name, value, obj)
    if reason is not None:
        return None, reason
    text = clean_text(value, repairs)
    return (text, None) if text else (None, f"empty_{name}")


def _text_problem(name: str, value, obj: dict) -> str | None:
    if value.__class__ is str:
        return None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"missing_{name}" if name not in obj else f"null_{name}"
    if not isinstance(value, str):
        return f"{name}_not_text"
    return None


# ---------------------------------------------------------------- deduplication, sampling, splitting


def title_key(title: str) -> str:
    """The normalized title: case and punctuation do not make two products different."""
    key = normalized_text(title)
    # A title of emoji or punctuation only has no word at all: its own characters tell it apart.
    return key or " ".join(title.split())


def hash_unit(text: str, salt: str) -> float:
    """A deterministic pseudo-random number in [0, 1) for `text` (stable across runs and machines)."""
    digest = hashlib.blake2b(f"{salt}\x00{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def assign_split(key: str, validation_fraction: float, test_fraction: float, seed: int) -> str:
    """The split a normalized title gets alone (a group of rows goes where its representative title goes)."""
    return split_of_digest(key_digest(key), validation_fraction, test_fraction, seed)


def row_digests(key: str, record: dict) -> tuple[int, int]:
    """The (title, description) digests of a row: all that grouping needs of it."""
    return key_digest(key), key_digest(normalized_text(record["content"]))


def digest_arrays(pairs) -> tuple:
    """Two uint64 arrays (titles, descriptions) from (title digest, description digest) pairs."""
    import numpy as np

    table = np.array(list(pairs), dtype=np.uint64).reshape(-1, 2)
    return table[:, 0], table[:, 1]


class Deduplicator:
    """Rejects exact duplicates, and repeated titles with other descriptions under the `first` policy."""

    def __init__(self, duplicate_titles: str):
        if duplicate_titles not in ("first", "keep_all"):
            raise ValueError(f"duplicate_titles must be 'first' or 'keep_all', not {duplicate_titles!r}")
        self.policy = duplicate_titles
        self.rows: set[bytes] = set()  # 8-byte hashes keep memory bounded on millions of rows
        self.titles: set[bytes] = set()
        self.uids: set[bytes] = set()

    def repeated_uid(self, uid: str) -> bool:
        """Counted, not rejected: a uid is not an identity here (rows are judged by title and content)."""
        if not uid:
            return False
        digest = _digest(uid)
        seen = digest in self.uids
        self.uids.add(digest)
        return seen

    def reason(self, key: str, content: str) -> str | None:
        row = _digest(f"{key}\x00{content}")
        if row in self.rows:
            return "duplicate"
        self.rows.add(row)
        title = _digest(key)
        if title in self.titles and self.policy == "first":
            return "duplicate_title"
        self.titles.add(title)
        return None


def _digest(text: str, _blake2b=hashlib.blake2b) -> bytes:
    return _blake2b(text.encode(), digest_size=8).digest()


def accepted_records(
    lines, rejects, deduplicator: Deduplicator, counts: Counter, reasons: Counter, repairs: Counter, processes: int = 1
):
    """Yield (line_number, normalized title, record) for accepted lines; write every rejected line to `rejects`.
    With `processes` >= MIN_PARSE_PROCESSES, processes - 1 workers parse the lines (parse_in_processes)."""
    kept = repaired = rejected = repeated_uids = 0
    parse = _parse
    if processes >= MIN_PARSE_PROCESSES:
        lines, parse = parse_in_processes(lines, processes - 1)  # the main process has the rest of the work
    try:
        for number, raw in lines:
            detail = None
            try:  # costs nothing unless a line raises
                if len(raw) > MAX_LINE_BYTES:
                    record, line_repairs, reason = None, [], "line_too_long"
                else:
                    record, line_repairs, reason = parse(raw)
                if reason is None:
                    key = title_key(record["title"])
                    reason = deduplicator.reason(key, record["content"])
            except Exception as err:
                reason, detail = failure_reason(err), f"{type(err).__name__}: {err}"
            if reason is not None:
                rejected += 1
                reasons[reason] += 1
                write_reject(rejects, number, reason, raw, detail)
                continue
            if line_repairs:
                repaired += 1
                repairs.update(line_repairs)
            else:
                kept += 1
            if deduplicator.repeated_uid(record["uid"]):
                repeated_uids += 1
            yield number, key, record
    finally:
        counts.update(kept=kept, repaired=repaired, rejected=rejected, repeated_uids=repeated_uids)


PARSE_BLOCK_LINES = 4096  # lines per task of a parsing worker
# Fewer processes parse in the main process: on a 2-core machine 2 processes (the main one and a worker) took
# 5.3 s for 200k generated rows against 4.3 s for one (moving the lines and results costs more than it saves).
MIN_PARSE_PROCESSES = 4


def parse_in_processes(lines, processes: int, block_lines: int | None = None):
    """_parse in `processes` worker processes, for accepted_records: returns (the same (number, raw) lines,
    a `parse(raw)` that gives each line's _parse result). Blocks of lines go to a pool of forked workers, at
    most 2 x `processes` blocks ahead of the consumer (memory stays bounded); a block's lines are yielded
    once its results are back, and `parse` hands those out in order, one per line of at most MAX_LINE_BYTES
    (the lines accepted_records parses), so the outcome of every line is the one-process outcome.
    Deduplication, sampling and writing stay with the caller, in input order."""
    import multiprocessing
    from collections import deque

    results = deque()
    block_lines = block_lines or PARSE_BLOCK_LINES

    def numbered_lines():
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            in_flight = deque()
            block = []
            for item in lines:
                block.append(item)
                if len(block) == block_lines:
                    in_flight.append((block, pool.apply_async(_parse_block, ([raw for _, raw in block],))))
                    block = []
                    if len(in_flight) > 2 * processes:
                        yield from _finished(in_flight.popleft(), results)
            if block:
                in_flight.append((block, pool.apply_async(_parse_block, ([raw for _, raw in block],))))
            while in_flight:
                yield from _finished(in_flight.popleft(), results)

    def parse(raw):
        result = results.popleft()
        if isinstance(result, Exception):  # what _parse raised for this line, raised here as in one process
            raise result
        return result

    return numbered_lines(), parse


def _finished(block_and_result, results):
    block, result = block_and_result
    results.extend(result.get())
    return block


def _parse_block(raws: list[bytes]) -> list:
    """A worker's task: _parse of each line that accepted_records parses (at most MAX_LINE_BYTES), or the
    exception it raised (one that does not survive pickling becomes a RuntimeError with its text)."""
    results = []
    for raw in raws:
        if len(raw) > MAX_LINE_BYTES:
            continue
        try:
            results.append(_parse(raw))
        except Exception as err:
            try:
                pickle.loads(pickle.dumps(err))
            except Exception:
                err = RuntimeError(f"{type(err).__name__}: {err}")
            results.append(err)
    return results


def write_reject(rejects, number: int, reason: str, raw: bytes, detail: str | None = None) -> None:
    """One rejects-file row; the raw text of a huge line is cut to its first REJECT_RAW_CHARS characters;
    `detail` is the error a line raised, where it raised one."""
    text = raw.decode("utf-8", errors="replace")
    row = {"line": number, "reason": reason, "raw": text[:REJECT_RAW_CHARS]}
    if len(text) > REJECT_RAW_CHARS:
        row["raw_truncated_from_chars"] = len(text)
    if detail:
        row["detail"] = detail[:REJECT_RAW_CHARS]
    rejects.write(_encode(row) + "\n")


def sample_priority(record: dict, seed: int) -> float:
    """The bottom-k key of a record: the sample keeps the `sample_size` records with the highest priority."""
    return -hash_unit(f"{record['title']}\x00{record['content']}", f"sample-{seed}")


def bottom_k_sample(records, sample_size: int | None, seed: int):
    """A seeded sample of `sample_size` (number, key, record) items that does not depend on the input order,
    in input order; None keeps all. Holds the sample in memory: prepare spills a large one (SpilledSample)."""
    if sample_size is None:
        return list(records)
    items = ((sample_priority(record, seed), number, (key, record)) for number, key, record in records)
    heap = highest_priorities(items, sample_size)
    return sorted(((number, key, record) for _, number, (key, record) in heap), key=lambda item: item[0])


def highest_priorities(items, sample_size: int) -> list[tuple]:
    """The `sample_size` (priority, number, ...) items of highest priority (a min-heap of them); equal
    priorities are settled by the heap's order, which both samplers share."""
    heap: list[tuple] = []
    for item in items:
        if len(heap) < sample_size:
            heapq.heappush(heap, item)
        elif item[0] > heap[0][0]:
            heapq.heapreplace(heap, item)
    return heap


def bottom_k_mask(priorities, sample_size: int):
    """Which items (in input order, `priorities` an array of doubles) bottom_k_sample's heap would keep: the
    `sample_size` highest priorities; a tie across the cut is settled by replaying the heap."""
    import numpy as np

    priority = np.frombuffer(priorities, dtype=np.float64)
    if sample_size >= len(priority):
        return np.ones(len(priority), dtype=bool)
    if sample_size <= 0:
        return np.zeros(len(priority), dtype=bool)
    cut = np.partition(priority, len(priority) - sample_size)[len(priority) - sample_size]
    above = priority > cut
    at_cut = priority == cut
    if int(above.sum()) + int(at_cut.sum()) == sample_size:
        return above | at_cut
    # Equal priorities at the cut: the heap's own order decides.
    heap = highest_priorities(((value, index) for index, value in enumerate(priority.tolist())), sample_size)
    mask = np.zeros(len(priority), dtype=bool)
    mask[[index for _, index in heap]] = True
    return mask


class SpilledSample:
    """bottom_k_sample with the records pickled to a temporary file: memory holds 36 bytes per record (its
    priority, line number, size and the two digests grouping needs, so the file is read once, to write)."""

    def __init__(self, folder: Path, seed: int):
        from array import array

        self.seed = seed
        self.priorities = array("d")
        self.numbers = array("q")
        self.sizes = array("I")  # a line is at most MAX_LINE_BYTES
        self.digests = array("Q")  # title and description digest of each record, in turn
        self.handle = tempfile.TemporaryFile(dir=folder, prefix=".prepare-sample-", buffering=1 << 20)

    def add(self, records) -> None:
        priorities, numbers, sizes, digests, write, dumps = (
            self.priorities,
            self.numbers,
            self.sizes,
            self.digests,
            self.handle.write,
            pickle.dumps,
        )
        for number, key, record in records:
            priorities.append(sample_priority(record, self.seed))
            numbers.append(number)
            digests.extend(row_digests(key, record))
            sizes.append(write(dumps((key, record), pickle.HIGHEST_PROTOCOL)))

    def choose(self, sample_size: int) -> int:
        """Pick the sample: the `sample_size` records of highest priority; returns how many."""
        self.mask = bottom_k_mask(self.priorities, sample_size)
        return int(self.mask.sum())

    def chosen_digests(self) -> tuple:
        """The (titles, descriptions) digest arrays of the chosen records, in input order."""
        import numpy as np

        table = np.frombuffer(self.digests, dtype=np.uint64).reshape(-1, 2)[self.mask]
        return table[:, 0], table[:, 1]

    def chosen(self):
        """Yield the chosen (number, key, record) items in input order."""
        self.handle.seek(0)
        loads, read, seek = pickle.loads, self.handle.read, self.handle.seek
        for chosen, number, size in zip(self.mask.tolist(), self.numbers, self.sizes, strict=True):
            if chosen:
                yield number, *loads(read(size))
            else:
                seek(size, 1)

    def close(self) -> None:
        self.handle.close()


# ---------------------------------------------------------------- the stage


def prepare(args) -> dict:
    """Run the whole stage; returns the counts that are also written to `args.counts`."""
    raw = Path(args.raw)
    counts, reasons, repairs = Counter(kept=0, repaired=0, rejected=0, repeated_uids=0), Counter(), Counter()
    deduplicator = Deduplicator(args.duplicate_titles)
    source_digest = hashlib.sha256()
    with atomic_path(args.rejects) as rejects_tmp, open(rejects_tmp, "w", encoding="utf-8") as rejects:
        with SplitWriter(args) as writer:
            lines = iter_lines(raw, source_digest)
            accepted = accepted_records(lines, rejects, deduplicator, counts, reasons, repairs, args.processes)
            sampled = write_sample(accepted, args, writer)
    split_rows = writer.rows
    eligible = counts["kept"] + counts["repaired"]
    repeated_uids = counts.pop("repeated_uids")
    summary = {
        "source": str(raw),
        "source_sha256": source_digest.hexdigest(),
        "input_lines": sum(counts.values()),
        "outcomes": dict(counts),
        "repeated_uids": repeated_uids,
        "rejected_reasons": dict(sorted(reasons.items())),
        "repairs": dict(sorted(repairs.items())),
        "sampling": {
            "eligible": eligible,
            "sampled": sampled,
            "not_sampled": eligible - sampled,
            "sample_size": args.sample_size,
            "seed": args.seed,
        },
        "splits": split_rows,
        "grouping": writer.grouping,
        "warnings": writer.warnings,
    }
    write_json(args.counts, summary)
    log.info("%s: %d lines -> %s; splits %s", raw, summary["input_lines"], dict(counts), split_rows)
    if not sampled:
        raise InputError(f"{raw}: no usable rows (rejected: {dict(reasons)}); see {args.rejects}")
    if not split_rows["train"]:
        raise InputError(
            f"{raw}: the train split is empty ({split_rows}); with data.validation_fraction "
            f"{args.validation_fraction} and data.test_fraction {args.test_fraction} no row is left for training"
        )
    return summary


def write_sample(accepted, args, writer: "SplitWriter") -> int:
    """Sample the accepted rows (all of them without a sample size) and write them, grouped, into their
    splits; returns the rows sampled. Grouping needs every sampled row before the first is written: up to
    IN_MEMORY_SAMPLE rows wait in memory, more in a spill file next to the outputs."""
    sample_size = args.sample_size
    if sample_size is not None and sample_size <= IN_MEMORY_SAMPLE:
        rows = bottom_k_sample(accepted, sample_size, args.seed)
        writer.write(rows, digest_arrays(row_digests(key, record) for _, key, record in rows))
        return len(rows)
    spill = SpilledSample(Path(args.train).parent, args.seed)
    try:
        spill.add(accepted)
        sampled = spill.choose(len(spill.numbers) if sample_size is None else sample_size)
        writer.write(spill.chosen(), spill.chosen_digests())
        return sampled
    finally:
        spill.close()


class SplitWriter:
    """The three split files, written atomically: one row per (number, key, record), in the order given."""

    def __init__(self, args):
        self.args = args
        self.rows = dict.fromkeys(SPLITS, 0)
        self.total = 0
        self.grouping = {"groups": 0, "largest_group": 0, "rows_moved": 0}
        self.warnings: list[str] = []

    def __enter__(self):
        from contextlib import ExitStack

        self.stack = ExitStack()
        self.stack.__enter__()
        paths = {"train": self.args.train, "validation": self.args.validation, "test": self.args.test}
        try:
            tmps = {name: self.stack.enter_context(atomic_path(paths[name])) for name in SPLITS}
            self.handles = {name: self.stack.enter_context(open(tmps[name], "w", encoding="utf-8")) for name in SPLITS}
        except BaseException:
            self.stack.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, *exc):
        return self.stack.__exit__(*exc)

    def write(self, items, digests: tuple) -> None:
        """Write the (number, key, record) items, each to its group's split; `digests` holds the items'
        (titles, descriptions) digest arrays, in the same order, for the grouping."""
        args, rows = self.args, self.rows
        titles, descriptions = digests
        codes, self.grouping = group_splits(
            titles, descriptions, args.validation_fraction, args.test_fraction, args.seed
        )
        writes = [self.handles[name].write for name in SPLITS]
        instruction, response = args.instruction_template, args.response_template
        for (number, _, record), code in zip(items, codes.tolist(), strict=True):
            title = record["title"]
            row = {
                "line": number,
                **record,
                "prompt": instruction_text(instruction, title),
                "text": training_text(instruction, response, title, record["content"]),
            }
            writes[code](_encode(row) + "\n")
            rows[SPLITS[code]] += 1
        self.total = sum(rows.values())
        empty = [split for split in SPLITS if rows[split] == 0 and self.total]
        self.warnings = [f"the {split} split is empty: too few rows or groups for its fraction" for split in empty]
        for warning in self.warnings:
            log.warning("%s (%d rows in all)", warning, self.total)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prepare.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--raw", required=True, help="AmazonTitles trn.json (JSON Lines or a JSON array)")
    for name in (*SPLITS, "counts", "rejects"):
        parser.add_argument(f"--{name}", required=True, help=f"output: {name} file")
    settings.add_options(parser, "prepare")
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="processes that parse lines (outputs identical to one process; the rule passes its threads)",
    )
    return parser


def main(args) -> None:
    try:
        prepare(args)
    except InputError as err:
        log.error("%s", err)
        raise SystemExit(f"prepare: {err}") from None


if __name__ == "__main__":
    stage.run(main, build_parser(), globals())
