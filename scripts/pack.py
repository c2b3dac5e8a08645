"""Stage 3, pack: tokenized examples -> fixed-length blocks of `max_len` tokens (Arrow DatasetDict).

Two modes:
- `seed`: the seed notebook's packing. Examples are joined into one stream and cut every
  `max_len` tokens; an example can straddle two blocks and attends to its neighbours.
- `boundary`: whole examples are placed into blocks (best fit, longest first) and position ids restart at
  every example. The training step passes those position ids without an attention mask, which makes
  the model attend only within each example; the first token of each example carries no label, so
  nothing is learned across a boundary. The rest of a block is padding with label -100.

Each block has `input_ids`, `labels` and `position_ids`, all of length `max_len`. Tokens are flat numpy
arrays, and blocks are built and written a chunk at a time: `seed` streams through a split;
`boundary` holds a split's token ids and labels (3 bytes a token for a vocabulary of up to 65,536 ids and
labels that are the ids or -100), since best fit needs every length first.
"""

import argparse
import itertools
import logging
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ftpipe import settings, stage  # noqa: E402
from ftpipe.io import read_json, save_dataset_tables, write_json  # noqa: E402

log = logging.getLogger("ftpipe.pack")

IGNORE = -100
MODES = ("boundary", "seed")
PACKED_SPLITS = ("train", "validation")
COLUMNS = ("input_ids", "labels", "position_ids")
CHUNK_BLOCKS = 8000  # boundary blocks built at a time


@dataclass
class Examples:
    """Examples one after another: example i is input_ids[offsets[i]:offsets[i + 1]], and so its labels.

    A split held whole (boundary mode) is kept compact when it can be: token ids as uint16 when they all
    fit, and labels as a flag per token (IGNORE, or else the token id) when that is what they are.
    """

    input_ids: np.ndarray  # int32, or uint16 when compact
    labels: np.ndarray | None  # int32, or None when `ignored` gives them
    offsets: np.ndarray  # int64, starts at 0, one more entry than examples
    ignored: np.ndarray | None = None  # bool per token: label IGNORE (else the label is the token id)

    def labels_at(self, index) -> np.ndarray:
        if self.labels is not None:
            return self.labels[index]
        return np.where(self.ignored[index], np.int32(IGNORE), self.input_ids[index].astype(np.int32))

    @classmethod
    def from_lists(cls, input_ids: list[list[int]], labels: list[list[int]]) -> "Examples":
        lengths = [len(ids) for ids in input_ids]
        if lengths != [len(example) for example in labels]:
            raise ValueError("input_ids and labels differ in length")
        offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
        flat = [
            np.fromiter(itertools.chain.from_iterable(column), dtype=np.int32, count=int(offsets[-1]))
            for column in (input_ids, labels)
        ]
        return cls(flat[0], flat[1], offsets)

    @classmethod
    def from_batch(cls, batch) -> "Examples":
        """The examples of an Arrow record batch (zero copy)."""
        ids, labels = batch.column("input_ids"), batch.column("labels")
        offsets = ids.offsets.to_numpy().astype(np.int64)
        if not np.array_equal(labels.offsets.to_numpy() - labels.offsets[0].as_py(), offsets - offsets[0]):
            raise ValueError("input_ids and labels differ in length")
        return cls(ids.flatten().to_numpy(), labels.flatten().to_numpy(), offsets - offsets[0])


def read_examples(files: list[str]) -> Iterator[Examples]:
    """The examples of a split's Arrow files, a record batch at a time; read, not memory-mapped, so that
    memory holds one batch."""
    import pyarrow as pa

    for file in files:
        with pa.OSFile(file) as source:
            for batch in pa.ipc.open_stream(source):
                yield Examples.from_batch(batch)


def load_examples(files: list[str], examples: int, tokens: int) -> Examples:
    """All examples of a split, compact where they can be (see `Examples`), read a record batch at a time."""
    return gather_examples(read_examples(files), examples, tokens)


def gather_examples(parts: Iterable[Examples], examples: int, tokens: int) -> Examples:
    """`examples` examples of `tokens` tokens in all, given in parts, as one compact Examples: 3 bytes a
    token where ids fit 16 bits and labels are IGNORE or the token id, up to 8 otherwise."""
    input_ids, ignored, labels = np.empty(tokens, np.uint16), np.empty(tokens, np.bool_), None
    offsets = np.zeros(examples + 1, np.int64)
    done_examples = done_tokens = 0
    for part in parts:
        count, size = len(part.offsets) - 1, int(part.offsets[-1])
        if done_examples + count > examples or done_tokens + size > tokens:
            raise ValueError("the split holds more than its table says")
        span = slice(done_tokens, done_tokens + size)
        if input_ids.dtype == np.uint16 and size and not 0 <= part.input_ids.min() <= part.input_ids.max() <= 65535:
            input_ids = input_ids.astype(np.int32)  # ids over 16 bits: 4 bytes a token from here on
        input_ids[span] = part.input_ids
        part_ignored = part.labels == IGNORE
        if labels is None and not np.array_equal(part.labels[~part_ignored], part.input_ids[~part_ignored]):
            labels = np.empty(tokens, np.int32)  # labels that are not the ids: kept as they are from here on
            labels[:done_tokens] = np.where(ignored[:done_tokens], IGNORE, input_ids[:done_tokens].astype(np.int32))
            ignored = None
        if labels is None:
            ignored[span] = part_ignored
        else:
            labels[span] = part.labels
        offsets[done_examples + 1 : done_examples + count + 1] = part.offsets[1:] + done_tokens
        done_examples, done_tokens = done_examples + count, done_tokens + size
    if (done_examples, done_tokens) != (examples, tokens):
        raise ValueError("the split holds less than its table says")
    return Examples(input_ids, labels, offsets, ignored)


def seed_blocks(parts: Iterable[Examples], max_len: int) -> Iterator[dict]:
    """Join all examples and cut the stream into `max_len` blocks; the last partial block is dropped.
    Yields the blocks as 2-D arrays (a chunk of blocks per part)."""
    carry_ids = carry_labels = np.empty(0, np.int32)
    positions = np.arange(max_len, dtype=np.int32)
    for part in parts:
        stream_ids = np.concatenate([carry_ids, part.input_ids])
        stream_labels = np.concatenate([carry_labels, part.labels])
        usable = len(stream_ids) // max_len * max_len
        if usable:
            yield {
                "input_ids": stream_ids[:usable].reshape(-1, max_len),
                "labels": stream_labels[:usable].reshape(-1, max_len),
                "position_ids": np.broadcast_to(positions, (usable // max_len, max_len)),
            }
        carry_ids, carry_labels = stream_ids[usable:], stream_labels[usable:]


def best_fit(lengths, max_len: int) -> tuple[np.ndarray, list[int], int]:
    """Best-fit decreasing bin packing: (the order examples are placed in, the block of each example,
    the number of blocks); see `assign_blocks`.

    Capacities are small integers, so free blocks are bucketed by remaining room (a stack per room) and
    a bit mask marks the rooms that have a block: placing an example takes the lowest marked room that
    is at least its length. Ties go to the block pushed last, which keeps the result deterministic.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")  # longest first, then by index
    length_of = lengths.tolist()
    block_of = [0] * len(length_of)
    by_room: list[list[int]] = [[] for _ in range(max_len + 1)]  # room -> block indices (stack)
    rooms = 0  # bit r set: by_room[r] is not empty
    blocks = 0
    for index in order.tolist():
        length = length_of[index]
        if length > max_len:
            raise ValueError(f"example {index} has {length} tokens, more than max_len={max_len}")
        fitting = rooms >> length
        if fitting:
            room = length + (fitting & -fitting).bit_length() - 1
            stack = by_room[room]
            block = stack.pop()
            if not stack:
                rooms ^= 1 << room
        else:
            block, room = blocks, max_len
            blocks += 1
        block_of[index] = block
        room -= length
        by_room[room].append(block)
        rooms |= 1 << room
    return order, block_of, blocks


def assign_blocks(lengths: list[int], max_len: int) -> list[list[int]]:
    """Best-fit decreasing bin packing: lists of example indices whose lengths sum to at most `max_len`,
    each list in the order its examples were placed."""
    order, block_of, count = best_fit(lengths, max_len)
    blocks: list[list[int]] = [[] for _ in range(count)]
    for index in order.tolist():
        blocks[block_of[index]].append(index)
    return blocks


def boundary_blocks(examples: Examples, max_len: int, pad_id: int, chunk: int = CHUNK_BLOCKS) -> Iterator[dict]:
    """Whole examples per block (in index order inside a block), position ids restarting per example,
    padding at the end of a block. Yields the blocks as 2-D arrays, `chunk` blocks at a time."""
    lengths = np.diff(examples.offsets)
    _, block_list, count = best_fit(lengths, max_len)
    block_of = np.array(block_list, dtype=np.int64)
    members = np.argsort(block_of, kind="stable")  # examples block by block, by index inside a block
    member_block, member_length = block_of[members], lengths[members]
    member_start = np.concatenate([[0], np.cumsum(member_length)])  # of each member in the members' stream
    first_member = np.searchsorted(member_block, np.arange(count + 1))  # of each block; then the end
    block_start = member_start[first_member]
    block_used = np.diff(block_start)
    within = member_start[:-1] - block_start[member_block]  # where each member starts inside its block
    columns = np.arange(max_len)
    for b0 in range(0, count, chunk):
        b1 = min(b0 + chunk, count)
        m0, m1 = first_member[b0], first_member[b1]
        size = member_length[m0:m1]
        target = (member_block[m0:m1] - b0) * max_len + within[m0:m1]
        source = examples.offsets[members[m0:m1]]
        member = np.repeat(np.arange(m1 - m0), size)
        position = np.arange(block_start[b1] - block_start[b0]) - (member_start[m0:m1] - member_start[m0])[member]
        token_target, token_source = target[member] + position, source[member] + position
        input_ids = np.full((b1 - b0) * max_len, pad_id, dtype=np.int32)
        input_ids[token_target] = examples.input_ids[token_source]
        labels = np.full((b1 - b0) * max_len, IGNORE, dtype=np.int32)
        labels[token_target] = examples.labels_at(token_source)
        labels[target[size > 0]] = IGNORE  # no label across the boundary
        used = block_used[b0:b1, None]
        # Padding is a segment of its own, so nothing attends to it: its positions restart at 0 too.
        position_ids = np.where(columns >= used, columns - used, 0).astype(np.int32).reshape(-1)
        position_ids[token_target] = position
        yield {
            name: array.reshape(-1, max_len)
            for name, array in zip(COLUMNS, (input_ids, labels, position_ids), strict=True)
        }


def as_block_dicts(chunks: Iterable[dict]) -> list[dict]:
    """Blocks as a list of {column: list of ints} (for tests and small uses)."""
    return [
        {name: chunk[name][row].tolist() for name in COLUMNS}
        for chunk in chunks
        for row in range(len(chunk["input_ids"]))
    ]


def pack_seed(input_ids: list[list[int]], labels: list[list[int]], max_len: int) -> list[dict]:
    return as_block_dicts(seed_blocks([Examples.from_lists(input_ids, labels)], max_len))


def pack_boundary(input_ids: list[list[int]], labels: list[list[int]], max_len: int, pad_id: int) -> list[dict]:
    return as_block_dicts(boundary_blocks(Examples.from_lists(input_ids, labels), max_len, pad_id))


def pack_split(split, mode: str, max_len: int, pad_id: int, stats: dict) -> Iterator:
    """Arrow tables of blocks for one tokenized split (a `datasets.Dataset`, read from its Arrow files);
    `stats` gets the split's block stats once the tables are consumed."""
    import pyarrow as pa

    files = [entry["filename"] for entry in split.cache_files]
    if mode == "seed":
        chunks = seed_blocks(read_examples(files), max_len)
    else:
        tokens = sum(
            chunk.offsets[-1].as_py() - chunk.offsets[0].as_py() for chunk in split.data.column("input_ids").chunks
        )
        chunks = boundary_blocks(load_examples(files, len(split), tokens), max_len, pad_id)
    blocks = label_tokens = 0
    for chunk in chunks:
        rows = len(chunk["input_ids"])
        blocks += rows
        label_tokens += int(np.count_nonzero(chunk["labels"] != IGNORE))
        offsets = pa.array(np.arange(0, rows * max_len + 1, max_len, dtype=np.int32))
        yield pa.table(
            {
                name: pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(chunk[name]).reshape(-1)))
                for name in COLUMNS
            }
        )
    stats.update(block_stats(blocks, label_tokens, len(split), max_len))


def block_stats(blocks: int, label_tokens: int, examples: int, max_len: int) -> dict:
    tokens = blocks * max_len
    return {
        "examples": examples,
        "blocks": blocks,
        "tokens": tokens,
        "label_tokens": label_tokens,
        "label_fraction": round(label_tokens / tokens, 4) if tokens else 0.0,
    }


def pack(args) -> dict:
    import datasets

    if args.mode not in MODES:
        raise SystemExit(f"pack: mode must be one of {MODES}, not {args.mode!r}")
    tokenized = datasets.load_from_disk(args.tokenized)
    pad_id = read_json(args.tokenize_stats)["settings"]["pad_token_id"]
    features = datasets.Features({name: datasets.Sequence(datasets.Value("int32")) for name in COLUMNS})
    stats = {"mode": args.mode, "max_len": args.max_len, **{name: {} for name in PACKED_SPLITS}}
    tables = {name: pack_split(tokenized[name], args.mode, args.max_len, pad_id, stats[name]) for name in PACKED_SPLITS}
    save_dataset_tables(tables, features, args.dataset)  # consumes the tables: packs as it writes
    for name in PACKED_SPLITS:
        log.info("%s: %s", name, stats[name])
    write_json(args.stats, stats)
    return stats


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pack.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokenized", required=True, help="tokenized DatasetDict folder")
    parser.add_argument("--dataset", required=True, help="output: packed DatasetDict folder")
    parser.add_argument("--stats", required=True, help="output: packing stats JSON")
    settings.add_options(parser, "pack")
    parser.add_argument("--tokenize-stats", required=True, help="tokenization stats JSON (gives the pad token id)")
    return parser


if __name__ == "__main__":
    stage.run(pack, build_parser(), globals())
