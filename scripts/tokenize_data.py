"""Stage 2, tokenize: prepared splits -> an Arrow DatasetDict of input ids, labels and lengths.

Each row's title and description become one training text, prompt + response, by the prompt format
(ftpipe.prompts: the seed's plain-text tags, or the tokenizer's chat template), the same one that generation,
metrics and the ask command use. No padding: each example keeps its own length. Labels are -100 on the
prompt tokens when `completion_only` is on, so only the description is learned. Examples longer than
`max_len` follow the `overlong` policy, and how many were affected goes to the stats JSON.

A split is read, tokenized and written a chunk of rows at a time, as flat numpy arrays and Arrow list
arrays, so memory does not grow with the number of rows; with several threads given, that many forked
processes tokenize the chunks (in order: the output is the one-process output).
"""

import argparse
import bisect
import copy
import itertools
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ftpipe import settings, stage  # noqa: E402
from ftpipe.io import save_dataset_tables, write_json  # noqa: E402
from ftpipe.modeling import load_tokenizer  # noqa: E402
from ftpipe.processes import map_in_processes  # noqa: E402
from ftpipe.prompts import PromptFormat, PromptFormatError  # noqa: E402

log = logging.getLogger("ftpipe.tokenize")

IGNORE = -100
OVERLONG_POLICIES = ("truncate", "drop", "seed")
SPLITS = ("train", "validation", "test")
CHUNK_ROWS = 2048  # rows per call of the Rust tokenizer


def truncating_encoder(tokenizer, max_len: int):
    """The Rust tokenizer behind `tokenizer`, keeping the first max_len + 1 tokens of a text (truncation
    happens after encoding, so they are the whole text's first tokens): enough for every overlong policy
    to see that an example is too long. Used directly, since transformers' wrapper converts every field
    of every encoding to Python."""
    backend = copy.deepcopy(tokenizer.backend_tokenizer)  # the truncation setting stays on this copy
    backend.enable_truncation(max_len + 1)
    return backend


def prompt_tokens(encoding, prompt_chars: int) -> int:
    """How many of the encoding's tokens belong to the prompt (its first `prompt_chars` characters).

    A token belongs to the prompt when it starts before the prompt ends; special tokens the tokenizer
    adds (BOS) have the empty offset (0, 0) and so count as prompt as well. Starts only grow along the
    text, so the prompt is a prefix of the tokens: a bisection over token starts, reading a handful of
    offsets instead of converting all of them to Python.
    """
    lo, hi = 0, len(encoding)
    while lo < hi:  # bisect.bisect_left over the starts, probe for probe
        mid = (lo + hi) // 2
        chars = encoding.token_to_chars(mid)
        if chars is None:  # a token outside the text (added by the post-processor): read its offset
            return bisect.bisect_left([start for start, _ in encoding.offsets], prompt_chars)
        if chars[0] < prompt_chars:
            lo = mid + 1
        else:
            hi = mid
    return lo


def encode_chunk(encoder, eos: int, prompts: list[str], texts: list[str], completion_only: bool):
    """Encode texts: (all token ids one after another as int32, offsets of each text's ids (n + 1),
    prompt tokens of each text (0 without completion_only)). A text that ends with the EOS token already
    (a chat template's end of turn) loses it here: every example gets one EOS when it is fitted."""
    encodings = encoder.encode_batch(texts, add_special_tokens=True)
    ids = [encoding.ids[:-1] if encoding.ids[-1:] == [eos] else encoding.ids for encoding in encodings]
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, ids), dtype=np.int64, count=len(ids)), out=offsets[1:])
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=int(offsets[-1]))
    prompt = np.zeros(len(ids), dtype=np.int64)
    if completion_only:
        prompt[:] = [prompt_tokens(encoding, len(text)) for encoding, text in zip(encodings, prompts, strict=True)]
    return flat, offsets, prompt


def fit_examples(flat, offsets, prompt, max_len: int, policy: str, eos: int, completion_only: bool):
    """Each encoded text + EOS as one example fitted to `max_len` by the overlong policy, for all texts at
    once (the vectorized `apply_overlong`). Returns (input_ids, labels: kept examples one after another,
    lengths of the kept examples, what happened to each text: 0 fits, 1 truncated, 2 dropped)."""
    n = np.diff(offsets) + 1  # tokens with the EOS
    labels_ignored_at = max_len - 2 if max_len >= 2 else n + max_len - 2  # apply_overlong's labels[max_len - 2]
    fits = n <= max_len
    if policy == "drop":
        kept, keep = fits, n - 1
    elif policy == "seed":
        kept, keep = np.ones_like(fits), np.where(fits, n - 1, max_len)
    else:  # truncate; the prompt alone filling the block drops the example
        prompt_fills = completion_only & (labels_ignored_at < prompt)
        kept, keep = fits | ~prompt_fills, np.where(fits, n - 1, max_len - 1)
    what = np.where(fits, 0, np.where(kept, 1, 2)).astype(np.int8)
    starts, keep, prompt = offsets[:-1][kept], keep[kept], prompt[kept]
    lengths = keep + 1  # the kept tokens and an EOS (the text's own EOS when it fits)
    total = int(lengths.sum())
    row = np.repeat(np.arange(len(lengths)), lengths)
    position = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    is_eos = position == keep[row]
    source = np.where(is_eos, len(flat), starts[row] + position)  # index len(flat) is the EOS below
    input_ids = np.append(flat, np.int32(eos))[source]
    labels = input_ids.copy()
    if completion_only:
        labels[(position < prompt[row]) & ~is_eos] = IGNORE
    return input_ids, labels, lengths.astype(np.int32), what


def tokenize_examples(encoder, eos: int, prompts: list[str], texts: list[str], completion_only: bool):
    """Token ids (the text's own special tokens plus a final EOS) and labels for each example, as lists."""
    flat, offsets, prompt = encode_chunk(encoder, eos, prompts, texts, completion_only)
    # Without a length limit every example fits: the whole text plus EOS.
    input_ids, labels, lengths, _ = fit_examples(flat, offsets, prompt, 1 << 62, "drop", eos, completion_only)
    cuts = np.cumsum(lengths)[:-1]
    if not len(lengths):
        return [], []
    return [a.tolist() for a in np.split(input_ids, cuts)], [a.tolist() for a in np.split(labels, cuts)]


def apply_overlong(ids: list[int], labels: list[int], max_len: int, policy: str, eos: int):
    """Fit one example to `max_len`; returns (ids, labels, what happened) or None when dropped.
    The definition that `fit_examples` vectorizes (tests compare the two)."""
    if len(ids) <= max_len:
        return ids, labels, "fits"
    if policy == "drop":
        return None
    if policy == "seed":
        # The seed notebook truncates the text to max_len tokens and appends EOS after that.
        return [*ids[:max_len], eos], [*labels[:max_len], eos], "truncated"
    # truncate: cut the description, keep the EOS, never cut into the prompt.
    if labels[max_len - 2] == IGNORE:  # the prompt alone fills the block: no description would be left
        return None
    return [*ids[: max_len - 1], eos], [*labels[: max_len - 1], eos], "truncated"


def line_chunks(path, rows: int | None = None):
    """A prepared split's lines (bytes), `rows` (CHUNK_ROWS) at a time."""
    with open(path, "rb") as handle:
        while lines := list(itertools.islice(handle, rows or CHUNK_ROWS)):
            yield lines


def training_texts(lines: list[bytes], prompt_format: PromptFormat) -> tuple[list[str], list[str]]:
    """(prompts, training texts) of a chunk of prepared rows."""
    records = [_loads(line) for line in lines]
    # The chat template is rendered once, with stand-ins; one real rendering per chunk checks it.
    prompt_format.check(records[0]["title"], records[0]["content"])
    prompts = [prompt_format.prompt(r["title"]) for r in records]
    return prompts, [p + prompt_format.response(r["content"]) for p, r in zip(prompts, records, strict=True)]


def _loads(line: bytes) -> dict:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:  # what only the standard parser takes (a lone surrogate escape)
        return json.loads(line)


@dataclass
class ChunkTokenizer:
    """A chunk of prepared lines -> its fitted examples (fit_examples' input_ids, labels, lengths, what)."""

    encoder: object
    eos: int
    prompt_format: PromptFormat
    max_len: int
    completion_only: bool
    overlong: str

    def __call__(self, lines: list[bytes]):
        prompts, texts = training_texts(lines, self.prompt_format)
        flat, offsets, prompt = encode_chunk(self.encoder, self.eos, prompts, texts, self.completion_only)
        return fit_examples(flat, offsets, prompt, self.max_len, self.overlong, self.eos, self.completion_only)

    def in_worker(self, lines: list[bytes]):
        """In a worker process: one encoding thread (the processes are the parallelism)."""
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        return self(lines)


def tokenize_split(tokenize_chunk: ChunkTokenizer, chunks, stats: dict, processes: int = 1):
    """Arrow tables (input_ids, labels, length), one per chunk of lines, in order; with `processes` > 1 the
    chunks are read, encoded and fitted in that many forked processes (the encoder's threads alone left
    the rest of each chunk's work in one process). `stats` is filled in as the chunks go
    by (complete once the tables are consumed)."""
    import pyarrow as pa

    chunks = iter(chunks)
    head = list(itertools.islice(chunks, 2))
    chunks = itertools.chain(head, chunks)
    if processes > 1 and len(head) > 1:  # one chunk: no processes to start
        fitted = map_in_processes(tokenize_chunk.in_worker, chunks, processes)
    else:
        fitted = map(tokenize_chunk, chunks)
    counts = np.zeros(3, dtype=np.int64)  # fits, truncated, dropped
    stats.update(examples_in=0, examples_out=0, tokens=0, label_tokens=0, max_length=0)
    for input_ids, labels, lengths, what in fitted:
        counts += np.bincount(what, minlength=3)
        stats["examples_in"] += len(what)
        stats["examples_out"] += len(lengths)
        stats["tokens"] += int(lengths.sum())
        stats["label_tokens"] += int(np.count_nonzero(labels != IGNORE))
        stats["max_length"] = max(stats["max_length"], int(lengths.max(initial=0)))
        list_offsets = pa.array(np.concatenate([[0], np.cumsum(lengths, dtype=np.int32)]), pa.int32())
        yield pa.table(
            {
                "input_ids": pa.ListArray.from_arrays(list_offsets, pa.array(input_ids)),
                "labels": pa.ListArray.from_arrays(list_offsets, pa.array(labels)),
                "length": pa.array(lengths),
            }
        )
    stats.update(fits=int(counts[0]), truncated=int(counts[1]), dropped=int(counts[2]))


def tokenize(args) -> dict:
    processes = stage.use_threads(args.threads)  # at most the machine's cores
    import datasets

    tokenizer = load_tokenizer(args.model_dir)
    if args.overlong not in OVERLONG_POLICIES:
        raise SystemExit(f"tokenize: overlong must be one of {OVERLONG_POLICIES}, not {args.overlong!r}")
    try:
        prompt_format = PromptFormat(
            args.instruction_template, args.response_template, args.prompt_format, None, tokenizer
        )
    except PromptFormatError as err:
        raise SystemExit(f"tokenize: {err} (tokenizer of {args.model_dir})") from None
    split_paths = {"train": args.train, "validation": args.validation, "test": args.test}
    features = datasets.Features(
        {
            "input_ids": datasets.Sequence(datasets.Value("int32")),
            "labels": datasets.Sequence(datasets.Value("int32")),
            "length": datasets.Value("int32"),
        }
    )
    tokenize_chunk = ChunkTokenizer(
        truncating_encoder(tokenizer, args.max_len),
        tokenizer.eos_token_id,
        prompt_format,
        args.max_len,
        args.completion_only,
        args.overlong,
    )
    stats = {name: {} for name in split_paths}
    tables = {
        name: tokenize_split(tokenize_chunk, line_chunks(path), stats[name], processes)
        for name, path in split_paths.items()
    }
    try:
        save_dataset_tables(tables, features, args.dataset)  # consumes the tables: tokenizes as it writes
    except PromptFormatError as err:
        raise SystemExit(f"tokenize: {err}") from None
    for name in split_paths:
        log.info("%s: %s", name, stats[name])
    stats["settings"] = {
        "max_len": args.max_len,
        "completion_only": args.completion_only,
        "overlong": args.overlong,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    write_json(args.stats, stats)
    return stats


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tokenize_data.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for name in SPLITS:
        parser.add_argument(f"--{name}", required=True, help=f"prepared {name} split (JSON Lines)")
    parser.add_argument("--model-dir", required=True, help="base model folder (its tokenizer is used)")
    parser.add_argument("--dataset", required=True, help="output: Arrow DatasetDict folder")
    parser.add_argument("--stats", required=True, help="output: tokenization stats JSON")
    parser.add_argument(
        "--threads",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="processes that tokenize, each encoding on one thread (default: the usable CPUs)",
    )
    settings.add_options(parser, "tokenize")
    return parser


if __name__ == "__main__":
    stage.run(tokenize, build_parser(), globals())
