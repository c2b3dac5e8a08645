"""Stage 1, prepare: a raw catalog -> cleaned, deduplicated, sampled train/validation/test splits.

The catalog is CSV or TSV, JSON Lines, a JSON array or Parquet, possibly compressed (ftpipe.rawdata.raw_records
reads its records, ftpipe.rawdata.columns finds its title, description and id columns, ftpipe.rawdata.repairs
cleans each record).
Every input record ends in exactly one outcome: `kept`, `repaired` (kept after a repair) or `rejected`
(written to the rejects file with its record number, reason and raw text). Records are streamed, so memory
stays bounded whatever the file size; a JSON array file is read whole. The split is by group
(ftpipe.grouping: rows sharing a normalized title or description; ftpipe.rawdata.near_duplicates: near-duplicate
descriptions), so every sampled row is seen before the first is written: all rows without a sample size, and
a sample of more than IN_MEMORY_SAMPLE rows, are spilled to a temporary file next to the outputs (only
priorities, line numbers and key digests stay in memory) and written back in order; the MinHash signatures
are computed for the sampled rows only, once the sample is chosen.
What a row's outcome needs of it alone (its parse, its digests, sample priority and JSON:
ftpipe.rawdata.row_keys) is computed in worker processes with --processes 4 or more; the main process keeps
what depends on the rows before it (the deduplication lookups, in input order) and what follows the sample.
counts.json tells what the grouping did and how much of the held-out descriptions train has seen
(ftpipe.rawdata.split_leakage; docs/splits.md).
"""

import argparse
import functools
import hashlib
import heapq
import itertools
import json
import logging
import sys
import tempfile
from collections import Counter
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ftpipe import settings, stage  # noqa: E402
from ftpipe.grouping import SPLITS, key_digest, normalized_text, split_of_digest  # noqa: E402
from ftpipe.io import atomic_path, write_json  # noqa: E402
from ftpipe.processes import map_in_processes  # noqa: E402
from ftpipe.rawdata import repairs as record_repairs  # noqa: E402
from ftpipe.rawdata.near_duplicates import SignatureStore, grouped_splits  # noqa: E402
from ftpipe.rawdata.parse_workers import parse_in_processes  # noqa: E402
from ftpipe.rawdata.raw_input import InputError  # noqa: E402
from ftpipe.rawdata.raw_records import open_catalog  # noqa: E402
from ftpipe.rawdata.row_keys import RowFacts, parse_with_facts, record_signatures, split_line  # noqa: E402
from ftpipe.rawdata.row_keys import sample_priority as sample_priority  # noqa: E402 (prepare's names before)
from ftpipe.rawdata.row_keys import title_key as title_key  # noqa: E402 (tests import it from prepare)
from ftpipe.rawdata.split_leakage import split_contamination  # noqa: E402

log = logging.getLogger("ftpipe.prepare")

MAX_LINE_BYTES = 1 << 20  # a product record is a few KB; a megabyte line is a broken export
REJECT_RAW_CHARS = 4096
IN_MEMORY_SAMPLE = 10_000  # a larger sample is spilled to disk: a kept row costs about 2 KB in memory, and
# the heap of dicts is slower than the spill file (the garbage collector walks it)
SIGNATURE_BLOCK_ROWS = 1024  # sampled records per task of a signature worker (about 1 MB of JSON)
_encode = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps(x, ensure_ascii=False), one encoder


# ---------------------------------------------------------------- deduplication, sampling, splitting


def assign_split(key: str, validation_fraction: float, test_fraction: float, seed: int) -> str:
    """The split a normalized title gets alone (a group of rows goes where its representative title goes)."""
    return split_of_digest(key_digest(key), validation_fraction, test_fraction, seed)


def near_duplicate_settings(args) -> dict:
    """The near-duplicate grouping's settings, config.yaml's filled in (a command line may give the threshold only)."""
    return {**settings.default("data.near_duplicates"), **args.near_duplicates}


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

    def repeated_uid(self, facts: RowFacts) -> bool:
        """Counted, not rejected: a uid is not an identity here (rows are judged by title and content)."""
        digest = facts.uid_digest
        if digest is None:
            return False
        seen = digest in self.uids
        self.uids.add(digest)
        return seen

    def reason(self, facts: RowFacts) -> str | None:
        row = facts.row_digest
        if row in self.rows:
            return "duplicate"
        self.rows.add(row)
        title = facts.title_digest
        if title in self.titles and self.policy == "first":
            return "duplicate_title"
        self.titles.add(title)
        return None


def accepted_records(
    catalog,
    rejects,
    deduplicator: Deduplicator,
    counts: Counter,
    reasons: Counter,
    repairs: Counter,
    seed: int,
    processes: int = 1,
):
    """Yield (record number, RowFacts) for the catalog's accepted records; write every rejected one to
    `rejects`. With `processes` >= MIN_PARSE_PROCESSES, processes - 1 workers parse them and compute their
    facts (parse_in_processes); the main process keeps the lookups, which depend on the rows before."""
    kept = repaired = rejected = repeated_uids = 0
    lines, parse = catalog.items, functools.partial(parse_with_facts, catalog.parse, seed)
    if processes >= MIN_PARSE_PROCESSES:
        lines, parse = parse_in_processes(lines, processes - 1, parse, MAX_LINE_BYTES)
    try:
        for number, raw in lines:
            try:  # costs nothing unless a line raises
                if len(raw) > MAX_LINE_BYTES:
                    line_repairs, reason, detail, facts = [], "line_too_long", None, None
                else:
                    line_repairs, reason, detail, facts = parse(raw)
                if reason is None:
                    reason = deduplicator.reason(facts)
            except Exception as err:
                reason, detail = record_repairs.failure_reason(err), f"{type(err).__name__}: {err}"
            if reason is not None:
                rejected += 1
                reasons[reason] += 1
                write_reject(rejects, number, reason, raw, detail, catalog.where(number))
                continue
            if line_repairs:
                repaired += 1
                repairs.update(line_repairs)
            else:
                kept += 1
            if deduplicator.repeated_uid(facts):
                repeated_uids += 1
            yield number, facts
    finally:
        counts.update(kept=kept, repaired=repaired, rejected=rejected, repeated_uids=repeated_uids)


# Fewer processes parse in the main process: on a 2-core machine 2 processes (the main one and a worker) took
# 5.3 s for 200k generated rows against 4.3 s for one (moving the lines and results costs more than it saves).
MIN_PARSE_PROCESSES = 4


def write_reject(rejects, number: int, reason: str, raw: bytes, detail: str | None = None, where=None) -> None:
    """One rejects-file row; the raw text of a huge line is cut to its first REJECT_RAW_CHARS characters;
    `detail` is the parser's message or the error a line raised, where there is one; `where` adds where the
    record is in the file (a CSV record's first line)."""
    text = raw.decode("utf-8", errors="replace")
    row = {"line": number, **(where or {}), "reason": reason, "raw": text[:REJECT_RAW_CHARS]}
    if len(text) > REJECT_RAW_CHARS:
        row["raw_truncated_from_chars"] = len(text)
    if detail:
        row["detail"] = detail[:REJECT_RAW_CHARS]
    rejects.write(_encode(row) + "\n")


def bottom_k_sample(rows, sample_size: int | None) -> list:
    """A seeded sample of `sample_size` (number, facts) rows that does not depend on the input order,
    in input order; None keeps all. Holds the sample in memory: prepare spills a large one (SpilledSample)."""
    if sample_size is None:
        return list(rows)
    heap = highest_priorities(((facts.priority, number, facts) for number, facts in rows), sample_size)
    return sorted(((number, facts) for _, number, facts in heap), key=lambda row: row[0])


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
    """bottom_k_sample with the records' JSON in a temporary file: memory holds 36 bytes per record (its
    priority, line number, size and the two digests grouping needs, so the file is read once to write, and
    once more for the chosen records' MinHash signatures where near-duplicates are grouped)."""

    def __init__(self, folder: Path):
        from array import array

        self.priorities = array("d")
        self.numbers = array("q")
        self.sizes = array("I")  # a line is at most MAX_LINE_BYTES
        self.digests = array("Q")  # title and description digest of each record, in turn
        self.handle = tempfile.TemporaryFile(dir=folder, prefix=".prepare-sample-", buffering=1 << 20)

    def add(self, rows) -> None:
        priorities, numbers, sizes, digests, write = (
            self.priorities,
            self.numbers,
            self.sizes,
            self.digests,
            self.handle.write,
        )
        for number, facts in rows:
            priorities.append(facts.priority)
            numbers.append(number)
            digests.extend(facts.group_digests)
            sizes.append(write(facts.record))

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
        """Yield the chosen (number, record JSON) items in input order."""
        self.handle.seek(0)
        read, seek = self.handle.read, self.handle.seek
        for chosen, number, size in zip(self.mask.tolist(), self.numbers, self.sizes, strict=True):
            if chosen:
                yield number, read(size)
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
    with open_catalog(raw, source_digest, args.columns, args.delimiter) as catalog:
        log.info("%s: %s", raw, describe(catalog))
        with atomic_path(args.rejects) as rejects_tmp, open(rejects_tmp, "w", encoding="utf-8") as rejects:
            with SplitWriter(args) as writer:
                accepted = accepted_records(
                    catalog, rejects, deduplicator, counts, reasons, repairs, args.seed, args.processes
                )
                sampled = write_sample(accepted, args, writer)
    split_rows = writer.rows
    eligible = counts["kept"] + counts["repaired"]
    repeated_uids = counts.pop("repeated_uids")
    summary = {
        "source": str(raw),
        "source_sha256": source_digest.hexdigest(),
        "catalog": catalog.summary(),
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
        "contamination": writer.contamination(),
        "warnings": writer.warnings,
    }
    write_json(args.counts, summary)
    log.info("%s: %d records -> %s; splits %s", raw, summary["input_lines"], dict(counts), split_rows)
    if not sampled:
        raise InputError(f"{raw}: no usable rows (rejected: {dict(reasons)}); see {args.rejects}")
    if not split_rows["train"]:
        raise InputError(
            f"{raw}: the train split is empty ({split_rows}); with data.validation_fraction "
            f"{args.validation_fraction} and data.test_fraction {args.test_fraction} no row is left for training"
        )
    return summary


def describe(catalog) -> str:
    """The log line that says how the catalog was read."""
    columns = ", ".join(f"{name} <- {source!r}" for name, source in catalog.columns.items())
    detected = f" (recognized: {', '.join(catalog.detected)})" if catalog.detected else ""
    delimiter = f", delimiter {catalog.delimiter!r}" if catalog.delimiter else ""
    return f"{catalog.format}{delimiter}; columns {columns}{detected}"


def write_sample(accepted, args, writer: "SplitWriter") -> int:
    """Sample the accepted rows (all of them without a sample size) and write them, grouped, into their
    splits; returns the rows sampled. Grouping needs every sampled row before the first is written: up to
    IN_MEMORY_SAMPLE rows wait in memory, more in a spill file next to the outputs."""
    sample_size = args.sample_size
    if sample_size is not None and sample_size <= IN_MEMORY_SAMPLE:
        rows = bottom_k_sample(accepted, sample_size)
        digests = digest_arrays(facts.group_digests for _, facts in rows)
        signatures = description_signatures((facts.record for _, facts in rows), args)
        writer.write(((number, facts.record) for number, facts in rows), digests, signatures)
        return len(rows)
    spill = SpilledSample(Path(args.train).parent)
    try:
        spill.add(accepted)
        sampled = spill.choose(len(spill.numbers) if sample_size is None else sample_size)
        signatures = description_signatures((record for _, record in spill.chosen()), args)
        writer.write(spill.chosen(), spill.chosen_digests(), signatures)
        return sampled
    finally:
        spill.close()


def description_signatures(records, args) -> tuple | None:
    """The (signatures, has_words) of the descriptions of the records (their JSON), in their order; None when
    near-duplicates are not grouped. Only the sampled records get one (it costs more than the rest of a row);
    with several processes, worker processes compute them a block at a time."""
    grouping = near_duplicate_settings(args)
    if grouping["threshold"] is None:
        return None
    shingle, num_perm = grouping["shingle"], grouping["num_perm"]
    if args.processes < MIN_PARSE_PROCESSES:
        store, loads = SignatureStore(shingle, num_perm), orjson.loads
        for record in records:
            store.add(normalized_text(loads(record)["content"]))
        return store.result()
    import numpy as np

    sign = functools.partial(record_signatures, shingle=shingle, num_perm=num_perm)
    rows = iter(records)
    blocks = iter(lambda: list(itertools.islice(rows, SIGNATURE_BLOCK_ROWS)), [])
    parts = list(map_in_processes(sign, blocks, args.processes - 1))
    if not parts:
        return np.zeros((0, num_perm), dtype=np.uint16), np.zeros(0, dtype=bool)
    return np.concatenate([values for values, _ in parts]), np.concatenate([words for _, words in parts])


class SplitWriter:
    """The three split files, written atomically: one row per (number, record JSON), in the order given."""

    def __init__(self, args):
        self.args = args
        self.rows = dict.fromkeys(SPLITS, 0)
        self.total = 0
        self.grouping = {"groups": 0, "largest_group": 0, "rows_moved": 0}
        self.warnings: list[str] = []
        self.codes = self.descriptions = None
        self.assignments: dict = {}

    def contamination(self) -> dict:
        """What train has seen of the held-out descriptions, in the written files (ftpipe.rawdata.split_leakage)."""
        paths = {"train": self.args.train, "validation": self.args.validation, "test": self.args.test}
        return split_contamination(paths, self.codes, self.assignments, self.descriptions)

    def __enter__(self):
        from contextlib import ExitStack

        self.stack = ExitStack()
        self.stack.__enter__()
        paths = {"train": self.args.train, "validation": self.args.validation, "test": self.args.test}
        try:
            tmps = {name: self.stack.enter_context(atomic_path(paths[name])) for name in SPLITS}
            self.handles = {name: self.stack.enter_context(open(tmps[name], "wb")) for name in SPLITS}
        except BaseException:
            self.stack.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, *exc):
        return self.stack.__exit__(*exc)

    def write(self, items, digests: tuple, signatures: tuple | None = None) -> None:
        """Write the (number, record JSON) items, each to its group's split; `digests` holds the items'
        (titles, descriptions) digest arrays, in the same order, for the grouping, and `signatures` their
        descriptions' MinHash signatures where near-duplicates are grouped."""
        args, rows = self.args, self.rows
        codes, self.assignments, self.grouping = grouped_splits(
            digests,
            signatures,
            near_duplicate_settings(args),
            args.validation_fraction,
            args.test_fraction,
            args.seed,
        )
        self.codes, self.descriptions = codes, digests[1]
        writes = [self.handles[name].write for name in SPLITS]
        for (number, record), code in zip(items, codes.tolist(), strict=True):
            writes[code](split_line(number, record))
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
    parser.add_argument(
        "--raw", required=True, help="the catalog: CSV/TSV, JSON Lines, a JSON array or Parquet, maybe compressed"
    )
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
