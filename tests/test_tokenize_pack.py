"""tokenize and pack: completion-only masking, overlong policies, block shapes, boundary-aware attention."""

from __future__ import annotations

import bisect
import copy
import itertools
import os
import random

import numpy as np
import pytest
import torch
from pack import IGNORE, assign_blocks, pack_boundary, pack_seed
from tokenize_data import apply_overlong, fit_examples, prompt_tokens, tokenize_examples, truncating_encoder

from ftpipe.modeling import load_tokenizer
from tests.conftest import PROMPT


def test_completion_only_masks_exactly_the_prompt(tokenizer_dir):
    tokenizer = load_tokenizer(str(tokenizer_dir))
    prompt = PROMPT.format(title="Girls Ballet Tutu Neon Pink")
    text = prompt + "A bright pink tutu for dance class.<eos>"
    (ids,), (labels,) = tokenize_examples(
        truncating_encoder(tokenizer, 128), tokenizer.eos_token_id, [prompt], [text], completion_only=True
    )
    n_prompt = sum(1 for label in labels if label == IGNORE)
    # The masked tokens decode to the prompt, the rest to the description plus the final EOS.
    assert tokenizer.decode(ids[:n_prompt]) == prompt
    assert tokenizer.decode(ids[n_prompt:-1]) == "A bright pink tutu for dance class.<eos>"
    assert labels[n_prompt:] == ids[n_prompt:] and ids[-1] == tokenizer.eos_token_id
    assert all(label == IGNORE for label in labels[:n_prompt])


def test_seed_recipe_labels_everything(tokenizer_dir):
    tokenizer = load_tokenizer(str(tokenizer_dir))
    (ids,), (labels,) = tokenize_examples(
        truncating_encoder(tokenizer, 128),
        tokenizer.eos_token_id,
        ["T: x\n"],
        ["T: x\nDesc<eos>"],
        completion_only=False,
    )
    assert labels == ids


@pytest.mark.parametrize(
    "policy, expected",
    [
        ("truncate", ([1, 2, 3, 9], [-100, -100, 3, 9], "truncated")),
        ("seed", ([1, 2, 3, 4, 9], [-100, -100, 3, 4, 9], "truncated")),
        ("drop", None),
    ],
)
def test_overlong_policies(policy, expected):
    ids, labels = [1, 2, 3, 4, 5, 6, 9], [-100, -100, 3, 4, 5, 6, 9]
    assert apply_overlong(ids, labels, 4, policy, eos=9) == expected


def test_truncate_drops_when_the_prompt_fills_the_block():
    assert apply_overlong([1, 2, 3, 4, 5, 9], [-100, -100, -100, -100, 5, 9], 4, "truncate", eos=9) is None


@pytest.mark.parametrize("completion_only", [True, False])
@pytest.mark.parametrize("policy", ["truncate", "drop", "seed"])
def test_vectorized_overlong_equals_apply_overlong(policy, completion_only):
    """fit_examples (all examples at once, on flat arrays) gives what apply_overlong gives one by one."""
    rng, eos, max_len = random.Random(3), 9, 8
    encoded = [[rng.randrange(10, 99) for _ in range(rng.randrange(0, max_len + 2))] for _ in range(400)]
    prompts = [rng.randrange(0, len(ids) + 1) for ids in encoded]  # includes prompts that fill the block
    offsets = np.concatenate([[0], np.cumsum([len(ids) for ids in encoded])])
    flat = np.array([t for ids in encoded for t in ids], dtype=np.int32)
    got_ids, got_labels, got_lengths, what = fit_examples(
        flat,
        offsets,
        np.array(prompts if completion_only else [0] * len(prompts)),
        max_len,
        policy,
        eos,
        completion_only,
    )
    expected_ids, expected_labels, expected_what = [], [], []
    for ids, prompt in zip(encoded, prompts, strict=True):
        labels = [IGNORE] * prompt + ids[prompt:] if completion_only else list(ids)
        fitted = apply_overlong([*ids, eos], [*labels, eos], max_len, policy, eos)
        expected_what.append("dropped" if fitted is None else fitted[2])
        if fitted is not None:
            expected_ids.append(fitted[0])
            expected_labels.append(fitted[1])
    assert got_lengths.tolist() == [len(ids) for ids in expected_ids]
    assert got_ids.tolist() == [t for ids in expected_ids for t in ids]
    assert got_labels.tolist() == [t for labels in expected_labels for t in labels]
    assert [("fits", "truncated", "dropped")[w] for w in what] == expected_what
    assert "fits" in expected_what and set(expected_what) - {"fits"}  # both kinds of example were there
    if policy == "truncate" and completion_only:
        assert {"truncated", "dropped"} <= set(expected_what)


def _offsets_rule(encoding, prompt_chars: int) -> int:
    return bisect.bisect_left([start for start, _ in encoding.offsets], prompt_chars)


@pytest.mark.parametrize("add_bos", [False, True])
def test_prompt_tokens_by_bisection_equals_the_offsets_rule(tokenizer_dir, tiny_catalog, add_bos):
    """prompt_tokens reads a few offsets; the count is the one of all offsets, also with a tokenizer that
    adds a special token (whose offset (0, 0) is outside the text)."""
    from make_catalog import generate_records
    from tokenizers.processors import TemplateProcessing

    tokenizer = load_tokenizer(str(tokenizer_dir))
    encoder = truncating_encoder(tokenizer, 128)
    if add_bos:
        encoder = copy.deepcopy(encoder)
        bos = (tokenizer.eos_token, tokenizer.eos_token_id)
        encoder.post_processor = TemplateProcessing(single=f"{bos[0]} $A", special_tokens=[bos])
    records = list(generate_records(300, seed=5))
    prompts = [PROMPT.format(title=r["title"]) for r in records]
    texts = [p + r["content"] + "<eos>" for p, r in zip(prompts, records, strict=True)]
    texts += [p[:cut] for p in prompts[:20] for cut in (0, 1, len(p) // 2)]  # texts shorter than the prompt
    prompts += [p for p in prompts[:20] for _ in range(3)]
    for prompt, encoding in zip(prompts, encoder.encode_batch(texts, add_special_tokens=True), strict=True):
        assert prompt_tokens(encoding, len(prompt)) == _offsets_rule(encoding, len(prompt))


def test_seed_packing_cuts_a_stream():
    blocks = pack_seed([[1, 2, 3], [4, 5, 6, 7], [8, 9]], [[1, 2, 3], [4, 5, 6, 7], [8, 9]], 4)
    assert [b["input_ids"] for b in blocks] == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert all(b["position_ids"] == [0, 1, 2, 3] for b in blocks)


def old_assign_blocks(lengths: list[int], max_len: int) -> list[list[int]]:
    """The first best-fit decreasing implementation (a scan over rooms), kept as the definition."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    blocks: list[list[int]] = []
    by_room: list[list[int]] = [[] for _ in range(max_len + 1)]
    for index in order:
        length = lengths[index]
        room = next((r for r in range(length, max_len + 1) if by_room[r]), None)
        if room is None:
            blocks.append([])
            block, room = len(blocks) - 1, max_len
        else:
            block = by_room[room].pop()
        blocks[block].append(index)
        by_room[room - length].append(block)
    return blocks


def old_pack_boundary(input_ids, labels, max_len: int, pad_id: int) -> list[dict]:
    """The first list-of-lists implementation of boundary packing, kept as the definition."""
    packed = []
    for members in old_assign_blocks([len(ids) for ids in input_ids], max_len):
        block_ids, block_labels, positions = [], [], []
        for index in sorted(members):
            block_ids.extend(input_ids[index])
            block_labels.extend([IGNORE, *labels[index][1:]])
            positions.extend(range(len(input_ids[index])))
        padding = max_len - len(block_ids)
        block_ids.extend([pad_id] * padding)
        block_labels.extend([IGNORE] * padding)
        positions.extend(range(padding))
        packed.append({"input_ids": block_ids, "labels": block_labels, "position_ids": positions})
    return packed


def old_pack_seed(input_ids, labels, max_len: int) -> list[dict]:
    stream_ids = [t for ids in input_ids for t in ids]
    stream_labels = [t for example in labels for t in example]
    usable = len(stream_ids) // max_len * max_len
    return [
        {
            "input_ids": stream_ids[i : i + max_len],
            "labels": stream_labels[i : i + max_len],
            "position_ids": list(range(max_len)),
        }
        for i in range(0, usable, max_len)
    ]


def random_examples(seed: int, count: int, max_len: int, labels_are_ids: bool = True, id_range: int = 999):
    rng = random.Random(seed)
    sizes = [rng.choice([1, 2, max_len, max_len - 1, rng.randrange(1, max_len + 1)]) for _ in range(count)]
    # ids up to id_range in the second half only: a compact split switches to full width half-way
    ids = [
        [rng.randrange(3, id_range if i >= count // 2 else min(id_range, 999)) for _ in range(size)]
        for i, size in enumerate(sizes)
    ]
    labels = [[IGNORE if rng.random() < 0.3 else t for t in example] for example in ids]
    if not labels_are_ids:  # one example's labels are not its ids: the whole split keeps full labels
        labels[count // 2] = [t + 1 for t in ids[count // 2]]
    return ids, labels


@pytest.mark.parametrize(
    "seed, count, max_len, labels_are_ids, id_range",
    [
        (1, 3000, 16, True, 999),
        (2, 500, 128, True, 70_000),
        (5, 900, 16, False, 999),
        (3, 0, 8, True, 9),
        (4, 1, 8, True, 9),
    ],
)
def test_packing_equals_the_list_implementation(seed, count, max_len, labels_are_ids, id_range):
    """Best fit places examples as the room scan did, and the vectorized blocks equal the list-built ones
    (several chunks of blocks, every room size), also from a split held compact (16-bit ids and label
    flags where they fit, and the switch to full width half-way)."""
    import pack

    ids, labels = random_examples(seed, count, max_len, labels_are_ids, id_range)
    lengths = [len(example) for example in ids]
    assert assign_blocks(lengths, max_len) == old_assign_blocks(lengths, max_len)
    expected = old_pack_boundary(ids, labels, max_len, pad_id=2)
    chunks = pack.boundary_blocks(pack.Examples.from_lists(ids, labels), max_len, 2, chunk=7)
    assert pack.as_block_dicts(chunks) == expected
    assert pack_boundary(ids, labels, max_len, pad_id=2) == expected
    parts = [pack.Examples.from_lists(ids[i : i + 37], labels[i : i + 37]) for i in range(0, count, 37)]
    held = pack.gather_examples(parts, count, sum(lengths))
    assert (held.input_ids.dtype == np.uint16) == (id_range <= 65_536)
    assert (held.labels is None) == labels_are_ids
    assert pack.as_block_dicts(pack.boundary_blocks(held, max_len, 2, chunk=7)) == expected
    assert pack.as_block_dicts(pack.seed_blocks(parts, max_len)) == old_pack_seed(ids, labels, max_len)


def test_best_fit_places_every_example_once():
    lengths = [5, 3, 8, 2, 6, 1, 4, 7, 8, 3]
    blocks = assign_blocks(lengths, 8)
    assert sorted(i for block in blocks for i in block) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in block) <= 8 for block in blocks)
    assert len(blocks) == 6  # total 47 tokens: 6 blocks of 8 is the minimum


def test_boundary_blocks():
    ids = [[1, 2, 3], [4, 5], [6, 7, 8, 9]]
    blocks = pack_boundary(ids, ids, 6, pad_id=0)
    assert all(len(block[key]) == 6 for block in blocks for key in block)
    segments = []
    for block in blocks:  # position ids restart at every example; padding is a segment of its own
        starts = [i for i, p in enumerate(block["position_ids"]) if p == 0] + [6]
        for start, end in itertools.pairwise(starts):
            segments.append(block["input_ids"][start:end])
            assert block["labels"][start] == IGNORE  # no label across a boundary
    assert sorted(s for s in segments if s[0] != 0) == sorted(ids)


def _logits(model, ids, positions):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), position_ids=torch.tensor([positions]), use_cache=False).logits[0]


def test_boundary_example_does_not_see_its_neighbour(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    example, neighbour, other = [5, 6, 7, 8, 9], [11, 12, 13], [21, 22, 23]
    positions = [0, 1, 2, 0, 1, 2, 3, 4]
    with_neighbour = _logits(model, neighbour + example, positions)
    with_other = _logits(model, other + example, positions)
    torch.testing.assert_close(with_neighbour[3:], with_other[3:], rtol=0, atol=1e-5)
    # The seed packing (one running sequence) does let the neighbour change the example's logits.
    running = list(range(8))
    assert not torch.allclose(
        _logits(model, neighbour + example, running)[3:], _logits(model, other + example, running)[3:], atol=1e-3
    )


def test_tokenize_and_pack_stages(tmp_path, tokenizer_dir, tiny_catalog, monkeypatch):
    import datasets
    import tokenize_data
    from pack import build_parser as pack_parser
    from pack import pack
    from prepare import prepare
    from tokenize_data import build_parser as tokenize_parser
    from tokenize_data import tokenize

    from ftpipe.stage import namespace
    from tests.test_prepare import args_for

    prepare(args_for(tiny_catalog, tmp_path))
    splits = {s: str(tmp_path / f"{s}.jsonl") for s in ("train", "validation", "test")}

    def tokenize_into(name: str, threads: int = 1) -> dict:
        return tokenize(
            namespace(
                tokenize_parser(),
                **splits,
                model_dir=str(tokenizer_dir),
                dataset=str(tmp_path / name),
                stats=str(tmp_path / f"{name}.json"),
                instruction_template=PROMPT,
                response_template="{content}<eos>",
                threads=threads,
            )
        )

    def pack_into(name: str, mode: str) -> None:
        pack(
            namespace(
                pack_parser(),
                tokenized=str(tmp_path / "tok"),
                tokenize_stats=str(tmp_path / "tok.json"),
                mode=mode,
                dataset=str(tmp_path / name),
                stats=str(tmp_path / f"{name}.json"),
            )
        )

    stats = tokenize_into("tok")  # max_len 128, completion-only, truncate: the parser's defaults
    assert stats["train"]["truncated"] > 0
    assert stats["train"]["examples_out"] + stats["train"]["dropped"] == stats["train"]["examples_in"]
    tokenize_into("tok2")
    assert folder_bytes(tmp_path / "tok2") == folder_bytes(tmp_path / "tok")  # byte-identical on rerun
    monkeypatch.setattr(tokenize_data, "CHUNK_ROWS", 7)  # many chunks, the last ones short
    pools, in_processes = [], tokenize_data.map_in_processes
    monkeypatch.setattr(tokenize_data, "map_in_processes", lambda *a: pools.append(a[2]) or in_processes(*a))
    assert tokenize_into("tok3", threads=3) == stats  # several processes: the same examples, in order
    assert folder_bytes(tmp_path / "tok3") == folder_bytes(tmp_path / "tok")
    if (os.cpu_count() or 1) > 1:  # threads are capped at the cores: one core tokenizes in-process
        assert pools and min(pools) > 1, "the chunks did not go to worker processes"
    for mode in ("boundary", "seed"):
        pack_into(mode, mode)
        packed = datasets.load_from_disk(str(tmp_path / mode))
        assert set(packed) == {"train", "validation"}
        assert all(len(row) == 128 for row in packed["train"]["input_ids"])
    pack_into("again", "boundary")
    assert folder_bytes(tmp_path / "again") == folder_bytes(tmp_path / "boundary")  # byte-identical on rerun


def folder_bytes(folder) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("row_group_size", [None, "20KB"])
def test_streamed_save_equals_save_datasets(tmp_path, monkeypatch, row_group_size):
    """save_dataset_tables (tables written as they come) gives the folder save_datasets gives for the whole
    data, byte for byte: uneven tables, odd lengths, empty lists at batch edges and at the end, an empty
    split, and (with a small row-group size) the smaller record batches save_to_disk then uses."""
    import datasets
    import pyarrow as pa

    from ftpipe.io import save_dataset_tables, save_datasets

    if row_group_size:
        monkeypatch.setattr(datasets.config, "MAX_ROW_GROUP_SIZE", row_group_size)
    features = datasets.Features(
        {"input_ids": datasets.Sequence(datasets.Value("int32")), "length": datasets.Value("int32")}
    )
    rng = random.Random(0)
    rows = [[rng.randrange(50_000) for _ in range(rng.randrange(1, 40))] for _ in range(2600)]
    for index in [*range(995, 1010), *range(2590, 2600)]:
        rows[index] = []
    splits = {"train": rows, "validation": [], "test": rows[:5]}

    def columns(part):
        return {"input_ids": part, "length": [len(ids) for ids in part]}

    def tables(part):
        start = 0
        while start < len(part):
            size = rng.choice([1, 7, 400, 999, 1001, 1500])
            yield pa.table(columns(part[start : start + size])).cast(features.arrow_schema)
            start += size

    whole = {name: datasets.Dataset.from_dict(columns(part), features=features) for name, part in splits.items()}
    save_datasets(whole, tmp_path / "whole")
    streamed = save_dataset_tables({name: tables(part) for name, part in splits.items()}, features, tmp_path / "parts")
    assert streamed == {name: len(part) for name, part in splits.items()}
    assert folder_bytes(tmp_path / "parts") == folder_bytes(tmp_path / "whole")


@pytest.mark.parametrize("threads", [1, 2])
def test_tokenizer_pool_has_the_rules_threads(tokenizer_dir, threads):
    """stage.use_threads(n) sizes the Rust tokenizer's pool to n threads (at most the machine's cores) even
    where the environment asks for one thread (RAYON_NUM_THREADS=1) or no parallelism
    (TOKENIZERS_PARALLELISM=false)."""
    import subprocess
    import sys

    from tests.conftest import SCRIPTS

    code = (
        "import os, sys\n"
        f"sys.path.insert(0, {str(SCRIPTS)!r})\n"
        "from tokenize_data import truncating_encoder\n"
        "from ftpipe.modeling import load_tokenizer\n"
        "from ftpipe.stage import use_threads\n"
        "use_threads(int(sys.argv[1]))\n"
        "encoder = truncating_encoder(load_tokenizer(sys.argv[2]), 128)\n"
        "before = len(os.listdir('/proc/self/task'))\n"
        "encoder.encode_batch(['Girls Ballet Tutu Neon Pink, a tutu for dance'] * 4000)\n"
        "print(len(os.listdir('/proc/self/task')) - before)\n"
    )
    env = {**os.environ, "RAYON_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(
        [sys.executable, "-c", code, str(threads), str(tokenizer_dir)], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    expected = min(threads, os.cpu_count())
    assert int(result.stdout.split()[-1]) == (expected if expected > 1 else 0)
