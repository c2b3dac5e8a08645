"""Stage 2, tokenize: prepared splits -> an Arrow DatasetDict of input ids, labels and lengths.

No padding: each example keeps its own length. Labels are -100 on the prompt tokens when
`completion_only` is on, so only the description is learned. Examples longer than `max_len` follow the
`overlong` policy, and how many were affected goes to the stats JSON.
"""

import argparse
import bisect
import copy
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ftpipe import stage  # noqa: E402
from ftpipe.io import read_jsonl, save_datasets, write_json  # noqa: E402
from ftpipe.modeling import load_tokenizer  # noqa: E402

log = logging.getLogger("ftpipe.tokenize")

IGNORE = -100
OVERLONG_POLICIES = ("truncate", "drop", "reference")
SPLITS = ("train", "validation", "test")


def truncating_encoder(tokenizer, max_len: int):
    """The Rust tokenizer behind `tokenizer`, keeping the first max_len + 1 tokens of a text (truncation
    happens after encoding, so they are the whole text's first tokens): enough for every overlong policy
    to see that an example is too long. Used directly, since transformers' wrapper converts every field
    of every encoding to Python."""
    backend = copy.deepcopy(tokenizer.backend_tokenizer)  # the truncation setting stays on this copy
    backend.enable_truncation(max_len + 1)
    return backend


def tokenize_examples(encoder, eos: int, prompts: list[str], texts: list[str], completion_only: bool):
    """Token ids (the text's own special tokens plus a final EOS) and labels for each example."""
    encodings = encoder.encode_batch(texts, add_special_tokens=True)
    all_ids, all_labels = [], []
    for prompt, encoding in zip(prompts, encodings, strict=True):
        ids, offsets = encoding.ids, encoding.offsets
        if completion_only:
            # A token belongs to the prompt when it starts before the prompt ends; special tokens the
            # tokenizer adds (BOS) have the empty offset (0, 0) and so count as prompt as well. Starts only
            # grow along the text, so the prompt is a prefix of the tokens.
            prompt_tokens = bisect.bisect_left([start for start, _ in offsets], len(prompt))
            labels = [IGNORE] * prompt_tokens + ids[prompt_tokens:]
        else:
            labels = list(ids)
        all_ids.append([*ids, eos])
        all_labels.append([*labels, eos])
    return all_ids, all_labels


def apply_overlong(ids: list[int], labels: list[int], max_len: int, policy: str, eos: int):
    """Fit one example to `max_len`; returns (ids, labels, what happened) or None when dropped."""
    if len(ids) <= max_len:
        return ids, labels, "fits"
    if policy == "drop":
        return None
    if policy == "reference":
        # The reference truncates the text to max_len tokens and appends EOS after that.
        return [*ids[:max_len], eos], [*labels[:max_len], eos], "truncated"
    # truncate: cut the description, keep the EOS, never cut into the prompt.
    if labels[max_len - 2] == IGNORE:  # the prompt alone fills the block: no description would be left
        return None
    return [*ids[: max_len - 1], eos], [*labels[: max_len - 1], eos], "truncated"


def tokenize_split(
    tokenizer, rows: list[dict], max_len: int, completion_only: bool, overlong: str, batch_size: int = 2048
):
    columns = {"input_ids": [], "labels": [], "length": []}
    stats = {"examples_in": len(rows), "fits": 0, "truncated": 0, "dropped": 0}
    eos = tokenizer.eos_token_id
    encoder = truncating_encoder(tokenizer, max_len)
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        prompts, texts = [row["prompt"] for row in batch], [row["text"] for row in batch]
        ids_list, labels_list = tokenize_examples(encoder, eos, prompts, texts, completion_only)
        for ids, labels in zip(ids_list, labels_list, strict=True):
            fitted = apply_overlong(ids, labels, max_len, overlong, eos)
            if fitted is None:
                stats["dropped"] += 1
                continue
            ids, labels, what = fitted
            stats[what] += 1
            columns["input_ids"].append(ids)
            columns["labels"].append(labels)
            columns["length"].append(len(ids))
    lengths = columns["length"]
    stats.update(
        examples_out=len(lengths),
        tokens=sum(lengths),
        label_tokens=sum(sum(1 for t in labels if t != IGNORE) for labels in columns["labels"]),
        max_length=max(lengths, default=0),
    )
    return columns, stats


def tokenize(args) -> dict:
    os.environ["RAYON_RS_NUM_CPUS"] = str(args.threads)  # the Rust tokenizer's thread pool: the rule's threads
    import datasets

    tokenizer = load_tokenizer(args.model_dir)
    if args.overlong not in OVERLONG_POLICIES:
        raise SystemExit(f"tokenize: overlong must be one of {OVERLONG_POLICIES}, not {args.overlong!r}")
    split_paths = {"train": args.train, "validation": args.validation, "test": args.test}
    features = datasets.Features(
        {
            "input_ids": datasets.Sequence(datasets.Value("int32")),
            "labels": datasets.Sequence(datasets.Value("int32")),
            "length": datasets.Value("int32"),
        }
    )
    splits, stats = {}, {}
    for name, path in split_paths.items():
        columns, stats[name] = tokenize_split(
            tokenizer, read_jsonl(path), args.max_len, args.completion_only, args.overlong
        )
        splits[name] = datasets.Dataset.from_dict(columns, features=features)
        log.info("%s: %s", name, stats[name])
    stats["settings"] = {
        "max_len": args.max_len,
        "completion_only": args.completion_only,
        "overlong": args.overlong,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    save_datasets(splits, args.dataset)
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
    parser.add_argument("--max-len", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2, help="tokenizer threads")
    parser.add_argument("--completion-only", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--overlong",
        choices=OVERLONG_POLICIES,
        default="truncate",
        help="examples over max_len: cut the description (keeping EOS), drop, or the reference's cut",
    )
    return parser


if __name__ == "__main__":
    stage.run(tokenize, build_parser(), globals())
