"""Stage 1, prepare: raw AmazonTitles JSON -> cleaned, deduplicated, sampled train/validation/test splits.

Every input line ends in exactly one outcome: `kept`, `repaired` (kept after a repair) or `rejected`
(written to the rejects file with its line number, reason and raw text). JSON Lines input is streamed,
so memory stays bounded whatever the file size; a JSON array file is read whole.
"""

import argparse
import hashlib
import heapq
import html
import json
import logging
import math
import re
import sys
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ftpipe import stage  # noqa: E402
from ftpipe.io import atomic_path, write_json  # noqa: E402
from ftpipe.prompts import instruction_text, training_text  # noqa: E402

log = logging.getLogger("ftpipe.prepare")

SPLITS = ("train", "validation", "test")
MAX_LINE_BYTES = 1 << 20  # a product record is a few KB; a megabyte line is a broken export
REJECT_RAW_CHARS = 4096
_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_NON_WORD = re.compile(r"[\W_]+")
_CONTROL_CATEGORIES = {"Cc", "Cf", "Cs", "Co"}


class InputError(Exception):
    """A problem with the input as a whole (missing, empty, unreadable): stops the stage."""


@dataclass
class Outcome:
    """What happened to one input line."""

    record: dict | None = None
    repairs: list[str] = field(default_factory=list)
    reason: str | None = None  # set when rejected


# ---------------------------------------------------------------- reading lines


def iter_lines(path: Path, digest):
    """Yield (line_number, raw_bytes) for every line of a JSON Lines file, or every element of a JSON array;
    the file's bytes also go into `digest` (a hashlib object), so the input is read once."""
    if not path.exists():
        raise InputError(f"{path}: file not found")
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(f"{path}: line 1: the file is UTF-16; convert it to UTF-8")
    head = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if not head:
        raise InputError(f"{path}: the file is empty (expected JSON Lines or a JSON array of objects)")
    if head.startswith(b"["):
        yield from _iter_array(path, digest)
        return
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            digest.update(line)
            if number == 1:
                line = line.removeprefix(b"\xef\xbb\xbf")
            yield number, line.rstrip(b"\r\n")


def _iter_array(path: Path, digest):
    data = path.read_bytes()
    digest.update(data)
    try:
        items = json.loads(data.decode("utf-8-sig", errors="replace"))
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: line {err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(items, list):
        raise InputError(f"{path}: expected a JSON array of objects or JSON Lines")
    for number, item in enumerate(items, start=1):
        yield number, json.dumps(item, ensure_ascii=False).encode("utf-8")


# ---------------------------------------------------------------- parsing and repairing one line


def parse_line(raw: bytes) -> Outcome:
    """Decode, parse and clean one raw line into an Outcome (record with repairs, or a reject reason)."""
    try:
        obj = orjson.loads(raw)  # fast path: valid UTF-8, strict JSON
    except orjson.JSONDecodeError:
        return _parse_slowly(raw)
    if not isinstance(obj, dict):
        return Outcome(reason="not_an_object")
    return clean_record(obj, [])


def _parse_slowly(raw: bytes) -> Outcome:
    """Lines the strict parser refused: invalid UTF-8, NaN, doubled quotes, or really broken."""
    repairs: list[str] = []
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace").replace("\ufffd", "")
        repairs.append("invalid_utf8")
    if not text.strip():
        return Outcome(reason="blank_line")
    obj = _loads(text, repairs)
    if obj is None:
        return Outcome(reason="invalid_json")
    if not isinstance(obj, dict):
        return Outcome(reason="not_an_object")
    return clean_record(obj, repairs)


def _loads(text: str, repairs: list[str]):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    stripped = text.strip()
    # A CSV round-trip wraps the line in quotes and doubles every quote inside it.
    if stripped.startswith('"') and stripped.endswith('"') and '""' in stripped:
        try:
            obj = json.loads(stripped[1:-1].replace('""', '"'))
        except json.JSONDecodeError:
            return None
        repairs.append("doubled_quotes")
        return obj
    return None


def _field(obj: dict, name: str, repairs: list[str]):
    if name in obj:
        return obj[name]
    for key in obj:
        if isinstance(key, str) and key.strip().lower() == name:
            _note(repairs, "field_name_case", True)
            return obj[key]
    return None


def clean_text(value: str, repairs: list[str]) -> str:
    """Unescape HTML entities, drop tags and control characters, collapse whitespace; note each repair."""
    text = value
    for _ in range(3):  # entities are sometimes escaped twice (&amp;#8217;)
        unescaped = html.unescape(text)
        if unescaped == text:
            break
        text = unescaped
    _note(repairs, "html_entities", text != value)
    untagged = _TAG.sub(" ", text) if "<" in text else text
    _note(repairs, "html_tags", untagged != text)
    printable = untagged
    if not untagged.isprintable():
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
    fields = {}
    for name in ("title", "content"):
        value = _field(obj, name, repairs)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return Outcome(reason=f"missing_{name}" if name not in obj else f"null_{name}")
        if not isinstance(value, str):
            return Outcome(reason=f"{name}_not_text")
        fields[name] = clean_text(value, repairs)
        if not fields[name]:
            return Outcome(reason=f"empty_{name}")
    uid = obj.get("uid")
    record = {"uid": str(uid) if uid is not None else "", **fields}
    for name in ("target_ind", "target_rel"):
        if name in obj:
            record[name] = _as_list(obj[name], repairs)
    return Outcome(record=record, repairs=repairs)


# ---------------------------------------------------------------- deduplication, sampling, splitting


def title_key(title: str) -> str:
    """The normalized title: case and punctuation do not make two products different."""
    return _NON_WORD.sub(" ", title.casefold()).strip()


def hash_unit(text: str, salt: str) -> float:
    """A deterministic pseudo-random number in [0, 1) for `text` (stable across runs and machines)."""
    digest = hashlib.blake2b(f"{salt}\x00{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def assign_split(key: str, validation_fraction: float, test_fraction: float, seed: int) -> str:
    """Split by a hash of the normalized title, so one title never lands in two splits."""
    unit = hash_unit(key, f"split-{seed}")
    if unit < validation_fraction:
        return "validation"
    if unit < validation_fraction + test_fraction:
        return "test"
    return "train"


class Deduplicator:
    """Rejects exact duplicates, and repeated titles with other descriptions under the `first` policy."""

    def __init__(self, duplicate_titles: str):
        if duplicate_titles not in ("first", "keep_all"):
            raise ValueError(f"duplicate_titles must be 'first' or 'keep_all', not {duplicate_titles!r}")
        self.policy = duplicate_titles
        self.rows: set[int] = set()  # 8-byte hashes keep memory bounded on millions of rows
        self.titles: set[int] = set()
        self.uids: set[int] = set()

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
        title = _digest(key)
        if row in self.rows:
            return "duplicate"
        self.rows.add(row)
        if title in self.titles and self.policy == "first":
            return "duplicate_title"
        self.titles.add(title)
        return None


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def accepted_records(lines, rejects, deduplicator: Deduplicator, counts: Counter, reasons: Counter, repairs: Counter):
    """Yield (line_number, record) for accepted lines; write every rejected line to `rejects`."""
    for number, raw in lines:
        outcome = Outcome(reason="line_too_long") if len(raw) > MAX_LINE_BYTES else parse_line(raw)
        if outcome.reason is None:
            outcome.reason = deduplicator.reason(title_key(outcome.record["title"]), outcome.record["content"])
        if outcome.reason is not None:
            counts["rejected"] += 1
            reasons[outcome.reason] += 1
            write_reject(rejects, number, outcome.reason, raw)
            continue
        counts["repaired" if outcome.repairs else "kept"] += 1
        repairs.update(outcome.repairs)
        if deduplicator.repeated_uid(outcome.record["uid"]):
            counts["repeated_uids"] += 1
        yield number, outcome.record


def write_reject(rejects, number: int, reason: str, raw: bytes) -> None:
    """One rejects-file row; the raw text of a huge line is cut to its first REJECT_RAW_CHARS characters."""
    text = raw.decode("utf-8", errors="replace")
    row = {"line": number, "reason": reason, "raw": text[:REJECT_RAW_CHARS]}
    if len(text) > REJECT_RAW_CHARS:
        row["raw_truncated_from_chars"] = len(text)
    rejects.write(json.dumps(row, ensure_ascii=False) + "\n")


def bottom_k_sample(records, sample_size: int | None, seed: int):
    """A seeded sample of `sample_size` records that does not depend on the input order; None keeps all."""
    if sample_size is None:
        return list(records)
    heap: list[tuple[float, int, dict]] = []
    for number, record in records:
        priority = -hash_unit(f"{record['title']}\x00{record['content']}", f"sample-{seed}")
        item = (priority, number, record)
        if len(heap) < sample_size:
            heapq.heappush(heap, item)
        elif priority > heap[0][0]:
            heapq.heapreplace(heap, item)
    return sorted(((number, record) for _, number, record in heap), key=lambda pair: pair[0])


# ---------------------------------------------------------------- the stage


def prepare(args) -> dict:
    """Run the whole stage; returns the counts that are also written to `args.counts`."""
    raw = Path(args.raw)
    counts, reasons, repairs = Counter(kept=0, repaired=0, rejected=0, repeated_uids=0), Counter(), Counter()
    deduplicator = Deduplicator(args.duplicate_titles)
    source_digest = hashlib.sha256()
    with atomic_path(args.rejects) as rejects_tmp, open(rejects_tmp, "w", encoding="utf-8") as rejects:
        accepted = accepted_records(iter_lines(raw, source_digest), rejects, deduplicator, counts, reasons, repairs)
        sampled = bottom_k_sample(accepted, args.sample_size, args.seed)
    split_rows = write_splits(sampled, args)
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
            "sampled": len(sampled),
            "not_sampled": eligible - len(sampled),
            "sample_size": args.sample_size,
            "seed": args.seed,
        },
        "splits": split_rows,
    }
    write_json(args.counts, summary)
    log.info("%s: %d lines -> %s; splits %s", raw, summary["input_lines"], dict(counts), split_rows)
    if not sampled:
        raise InputError(f"{raw}: no usable rows (rejected: {dict(reasons)}); see {args.rejects}")
    return summary


def write_splits(sampled, args) -> dict[str, int]:
    paths = {"train": args.train, "validation": args.validation, "test": args.test}
    rows = dict.fromkeys(SPLITS, 0)
    with (
        atomic_path(paths["train"]) as train_tmp,
        atomic_path(paths["validation"]) as val_tmp,
        atomic_path(paths["test"]) as test_tmp,
    ):
        handles = {
            name: open(tmp, "w", encoding="utf-8")
            for name, tmp in (("train", train_tmp), ("validation", val_tmp), ("test", test_tmp))
        }
        try:
            for number, record in sampled:
                split = assign_split(
                    title_key(record["title"]), args.validation_fraction, args.test_fraction, args.seed
                )
                row = {
                    "line": number,
                    **record,
                    "prompt": instruction_text(args.instruction_template, record["title"]),
                    "text": training_text(
                        args.instruction_template, args.response_template, record["title"], record["content"]
                    ),
                }
                handles[split].write(json.dumps(row, ensure_ascii=False) + "\n")
                rows[split] += 1
        finally:
            for handle in handles.values():
                handle.close()
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prepare.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--raw", required=True, help="AmazonTitles trn.json (JSON Lines or a JSON array)")
    for name in (*SPLITS, "counts", "rejects"):
        parser.add_argument(f"--{name}", required=True, help=f"output: {name} file")
    parser.add_argument(
        "--duplicate-titles",
        default="first",
        choices=["first", "keep_all"],
        help="same title, other description: keep the first, or keep all",
    )
    parser.add_argument("--sample-size", type=int, default=None, help="rows to sample (default: all)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--validation-fraction", type=float, default=0.05)
    parser.add_argument("--test-fraction", type=float, default=0.05)
    parser.add_argument("--instruction-template", required=True, help="prompt text with {title}")
    parser.add_argument("--response-template", required=True, help="response text with {content}")
    return parser


def main(args) -> None:
    try:
        prepare(args)
    except InputError as err:
        log.error("%s", err)
        raise SystemExit(f"prepare: {err}") from None


if __name__ == "__main__":
    stage.run(main, build_parser(), globals())
