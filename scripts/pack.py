"""Stage 3, pack: tokenized examples -> fixed-length blocks of `max_len` tokens (Arrow DatasetDict).

Two modes:
- `reference`: the reference notebook's packing. Examples are joined into one stream and cut every
  `max_len` tokens; an example can straddle two blocks and attends to its neighbours.
- `boundary`: whole examples are placed into blocks (best fit, longest first) and position ids restart at
  every example. The training step passes those position ids without an attention mask, which makes
  the model attend only within each example; the first token of each example carries no label, so
  nothing is learned across a boundary. The rest of a block is padding with label -100.

Each block has `input_ids`, `labels` and `position_ids`, all of length `max_len`.
"""

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ftpipe import stage  # noqa: E402
from ftpipe.io import read_json, save_datasets, write_json  # noqa: E402

log = logging.getLogger("ftpipe.pack")

IGNORE = -100
MODES = ("boundary", "reference")
PACKED_SPLITS = ("train", "validation")


def pack_reference(input_ids: list[list[int]], labels: list[list[int]], max_len: int):
    """Join all examples and cut the stream into `max_len` blocks; the last partial block is dropped."""
    stream_ids = [token for ids in input_ids for token in ids]
    stream_labels = [token for example in labels for token in example]
    usable = len(stream_ids) // max_len * max_len
    positions = list(range(max_len))
    return [
        {"input_ids": stream_ids[i : i + max_len], "labels": stream_labels[i : i + max_len], "position_ids": positions}
        for i in range(0, usable, max_len)
    ]


def assign_blocks(lengths: list[int], max_len: int) -> list[list[int]]:
    """Best-fit decreasing bin packing: lists of example indices whose lengths sum to at most `max_len`.

    Capacities are small integers, so free blocks are bucketed by remaining room: placing an example
    scans at most `max_len` buckets. Ties go to the oldest block, which keeps the result deterministic.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    blocks: list[list[int]] = []
    by_room: list[list[int]] = [[] for _ in range(max_len + 1)]  # room -> block indices (stack)
    for index in order:
        length = lengths[index]
        if length > max_len:
            raise ValueError(f"example {index} has {length} tokens, more than max_len={max_len}")
        room = next((r for r in range(length, max_len + 1) if by_room[r]), None)
        if room is None:
            blocks.append([])
            block, room = len(blocks) - 1, max_len
        else:
            block = by_room[room].pop()
        blocks[block].append(index)
        by_room[room - length].append(block)
    return blocks


def pack_boundary(input_ids: list[list[int]], labels: list[list[int]], max_len: int, pad_id: int):
    """Whole examples per block, position ids restarting per example, padding at the end of a block."""
    packed = []
    for members in assign_blocks([len(ids) for ids in input_ids], max_len):
        block_ids, block_labels, positions = [], [], []
        for index in sorted(members):
            ids = input_ids[index]
            block_ids.extend(ids)
            block_labels.extend([IGNORE, *labels[index][1:]])  # no label across the boundary
            positions.extend(range(len(ids)))
        padding = max_len - len(block_ids)
        block_ids.extend([pad_id] * padding)
        block_labels.extend([IGNORE] * padding)
        positions.extend(range(padding))  # padding is a segment of its own: nothing attends to it
        packed.append({"input_ids": block_ids, "labels": block_labels, "position_ids": positions})
    return packed


def pack_split(split, mode: str, max_len: int, pad_id: int):
    # Whole columns as Python lists at once: indexing a dataset column row by row reads Arrow per row.
    columns = split.select_columns(["input_ids", "labels"]).to_dict()
    if mode == "reference":
        return pack_reference(columns["input_ids"], columns["labels"], max_len)
    return pack_boundary(columns["input_ids"], columns["labels"], max_len, pad_id)


def block_stats(blocks: list[dict], examples: int, max_len: int) -> dict:
    tokens = len(blocks) * max_len
    labelled = sum(sum(1 for t in block["labels"] if t != IGNORE) for block in blocks)
    return {
        "examples": examples,
        "blocks": len(blocks),
        "tokens": tokens,
        "label_tokens": labelled,
        "label_fraction": round(labelled / tokens, 4) if tokens else 0.0,
    }


def pack(args) -> dict:
    import datasets

    if args.mode not in MODES:
        raise SystemExit(f"pack: mode must be one of {MODES}, not {args.mode!r}")
    tokenized = datasets.load_from_disk(args.tokenized)
    pad_id = read_json(args.tokenize_stats)["settings"]["pad_token_id"]
    features = datasets.Features(
        {name: datasets.Sequence(datasets.Value("int32")) for name in ("input_ids", "labels", "position_ids")}
    )
    packed, stats = {}, {"mode": args.mode, "max_len": args.max_len}
    for name in PACKED_SPLITS:
        split = tokenized[name]
        blocks = pack_split(split, args.mode, args.max_len, pad_id)
        columns = {key: [block[key] for block in blocks] for key in features}
        packed[name] = datasets.Dataset.from_dict(columns, features=features)
        stats[name] = block_stats(blocks, len(split), args.max_len)
        log.info("%s: %s", name, stats[name])
    save_datasets(packed, args.dataset)
    write_json(args.stats, stats)
    return stats


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pack.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokenized", required=True, help="tokenized DatasetDict folder")
    parser.add_argument("--dataset", required=True, help="output: packed DatasetDict folder")
    parser.add_argument("--stats", required=True, help="output: packing stats JSON")
    parser.add_argument("--mode", choices=MODES, default="boundary")
    parser.add_argument("--max-len", type=int, default=128)
    parser.add_argument("--tokenize-stats", required=True, help="tokenization stats JSON (gives the pad token id)")
    return parser


if __name__ == "__main__":
    stage.run(pack, build_parser(), globals())
