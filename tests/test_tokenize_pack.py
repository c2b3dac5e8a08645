"""tokenize and pack: completion-only masking, overlong policies, block shapes, boundary-aware attention."""

from __future__ import annotations

import itertools

import pytest
import torch
from pack import IGNORE, assign_blocks, pack_boundary, pack_reference
from tokenize_data import apply_overlong, tokenize_examples, truncating_encoder

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


def test_reference_labels_everything(tokenizer_dir):
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
        ("reference", ([1, 2, 3, 4, 9], [-100, -100, 3, 4, 9], "truncated")),
        ("drop", None),
    ],
)
def test_overlong_policies(policy, expected):
    ids, labels = [1, 2, 3, 4, 5, 6, 9], [-100, -100, 3, 4, 5, 6, 9]
    assert apply_overlong(ids, labels, 4, policy, eos=9) == expected


def test_truncate_drops_when_the_prompt_fills_the_block():
    assert apply_overlong([1, 2, 3, 4, 5, 9], [-100, -100, -100, -100, 5, 9], 4, "truncate", eos=9) is None


def test_reference_packing_cuts_a_stream():
    blocks = pack_reference([[1, 2, 3], [4, 5, 6, 7], [8, 9]], [[1, 2, 3], [4, 5, 6, 7], [8, 9]], 4)
    assert [b["input_ids"] for b in blocks] == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert all(b["position_ids"] == [0, 1, 2, 3] for b in blocks)


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
    # The reference packing (one running sequence) does let the neighbour change the example's logits.
    running = list(range(8))
    assert not torch.allclose(
        _logits(model, neighbour + example, running)[3:], _logits(model, other + example, running)[3:], atol=1e-3
    )


def test_tokenize_and_pack_stages(tmp_path, tokenizer_dir, tiny_catalog):
    import datasets
    from pack import build_parser as pack_parser
    from pack import pack
    from prepare import prepare
    from tokenize_data import build_parser as tokenize_parser
    from tokenize_data import tokenize

    from ftpipe.stage import namespace
    from tests.test_prepare import args_for

    prepare(args_for(tiny_catalog, tmp_path, instruction_template=PROMPT))
    splits = {s: str(tmp_path / f"{s}.jsonl") for s in ("train", "validation", "test")}

    def tokenize_into(name: str) -> dict:
        return tokenize(
            namespace(
                tokenize_parser(),
                **splits,
                model_dir=str(tokenizer_dir),
                dataset=str(tmp_path / name),
                stats=str(tmp_path / f"{name}.json"),
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
    for mode in ("boundary", "reference"):
        pack_into(mode, mode)
        packed = datasets.load_from_disk(str(tmp_path / mode))
        assert set(packed) == {"train", "validation"}
        assert all(len(row) == 128 for row in packed["train"]["input_ids"])
    pack_into("again", "boundary")
    assert folder_bytes(tmp_path / "again") == folder_bytes(tmp_path / "boundary")  # byte-identical on rerun


def folder_bytes(folder) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
