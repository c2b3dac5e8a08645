"""The evaluation's generation budget (metrics.max_new_tokens: auto), the count of generations that end by
themselves against those that hit the budget, and ROUGE-L precision/recall and chrF beta 1."""

from __future__ import annotations

import json

import torch

from ftpipe.budget import generation_budget, percentile
from ftpipe.generation import generate_with_endings
from ftpipe.modeling import DEFAULT_QUANTIZATION, load_for_inference, load_tokenizer, merge_adapter
from ftpipe.scoring import chrf, rouge_l
from ftpipe.variants import BASE_VARIANTS
from tests.test_evaluation import (
    CONFIG,
    GREEDY,
    adapter_dir,  # noqa: F401 (the fixture of a random LoRA adapter)
    evaluate,
    prompts,
    write_rows,
)

RESPONSE = CONFIG["prompt"]["response"]
SPEC = "stainless steel housing, {n} watt motor, two speed settings, dishwasher safe jar, one year warranty, "


def long_rows(count: int, start: int = 0) -> list[dict]:
    """Rows whose descriptions run to about 90 tokens: far past the former fixed budget of 48."""
    return [
        {"title": f"Blender Model {i}", "content": f"Blender model {i} with " + SPEC.format(n=300 + i) * 4}
        for i in range(start, start + count)
    ]


def test_auto_budget_covers_references_longer_than_48_tokens(tmp_path, tiny_model_dir, adapter_dir):  # noqa: F811
    tokenizer = load_tokenizer(str(adapter_dir))
    splits = {
        "train": write_rows(tmp_path / "train.jsonl", long_rows(40, 100)),
        "validation": write_rows(tmp_path / "validation.jsonl", long_rows(3, 150)),
        "test": write_rows(tmp_path / "test.jsonl", long_rows(4, 200)),
    }
    longest = max(
        len(tokenizer(RESPONSE.format(content=row["content"]), add_special_tokens=False)["input_ids"])
        for row in long_rows(4, 200)
    )
    assert longest > 48
    result = evaluate(tmp_path, tiny_model_dir, adapter_dir, splits, num_titles=4, max_new_tokens="auto", max_len=256)
    budget = result["settings"]["max_new_tokens"]
    assert longest <= budget <= 256 and result["budget"]["setting"] == "auto"
    assert result["budget"]["bounded_by_max_len"] is False and result["budget"]["reference_rows"] == 40
    # The random model never writes the stop text: every generation runs to the budget, and the counts say so.
    for variant, counts in result["endings"].items():
        assert counts == {"ended": 0, "hit_cap": 4, "n": 4, "max_new_tokens": budget}, variant
    assert all(row["hit_cap"] == ["base_plain", "base_tagged", "adapter"] for row in result["generations"])
    assert set(result["timing"]) >= {"load_model", "merge_adapter", "generate_adapter", "perplexity_adapter"}
    assert set(result["timing"]) >= {"scoring_adapter", "intervals", "contamination", "read_base_eval", "total"}
    # base_eval's parts (in its own job): the budget, its model load, the base variants
    parts = ("generate", "perplexity", "scoring")
    base_parts = {"budget", "load_base_model"} | {f"{p}_{v}" for v in BASE_VARIANTS for p in parts}
    assert set(result["timing"]) >= base_parts
    base_timing = json.loads((tmp_path / "base_eval.json").read_text())["timing"]
    assert result["timing"]["budget"] == base_timing["budget"]
    assert result["timing"]["load_base_model"] == base_timing["load_model"]

    # The budget is bounded by the block length, and an integer setting is taken as given.
    bounded, record = generation_budget("auto", splits["train"], tokenizer, RESPONSE, max_len=40, seed=0)
    assert bounded == 40 and record["bounded_by_max_len"] is True
    assert generation_budget(48, splits["train"], tokenizer, RESPONSE, max_len=40, seed=0)[0] == 48
    empty = write_rows(tmp_path / "empty.jsonl", [])
    assert generation_budget("auto", empty, tokenizer, RESPONSE, max_len=77, seed=0)[0] == 77


def test_percentile_is_a_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 95) == 95 and percentile(values, 50) == 50 and percentile([7], 95) == 7


def test_generations_that_end_by_themselves_are_told_from_those_that_hit_the_cap(tiny_model_dir, adapter_dir):  # noqa: F811
    """Greedy decoding without a stop string, then with a character that some of those texts contain as the
    stop string: exactly those rows end by themselves (their text up to the stop is unchanged), the others
    run to the cap with the same text as before (the random adapter makes the tiny model write varied words)."""
    cpu = torch.device("cpu")
    model = merge_adapter(load_for_inference(str(tiny_model_dir), DEFAULT_QUANTIZATION, cpu), str(adapter_dir))
    tokenizer = load_tokenizer(str(adapter_dir))
    settings = {**GREEDY, "max_new_tokens": 8}
    free, free_ended = generate_with_endings(model, tokenizer, prompts(), settings, batch_size=3)
    assert free_ended == [False] * len(free)
    characters = sorted({c for text in free for c in text if c.isalpha()})
    stop = next(c for c in characters if 0 < sum(c in text for text in free) < len(free))
    texts, ended = generate_with_endings(model, tokenizer, prompts(), {**settings, "stop_strings": [stop]}, 3)
    assert ended == [stop in text for text in free]
    for before, after, stopped in zip(free, texts, ended, strict=True):
        assert after == (before[: before.index(stop)].strip() if stopped else before)  # cut_at_stop strips


def test_precision_recall_and_chrf_beta():
    reference = "soft cotton shirt with two pockets"
    short, long = "cotton shirt", reference + " and a long story about the weather in spring and summer"
    rouge = rouge_l([short, long], [reference, reference])
    assert rouge["precision"][0] == 100 and rouge["recall"][0] < 50  # cut short: precise, incomplete
    assert rouge["recall"][1] == 100 and rouge["precision"][1] < 50  # rambling: complete, imprecise
    # beta 2 weighs recall more: the rambling answer gains against beta 1, the short one loses.
    assert chrf([long], [reference])[0] > chrf([long], [reference], beta=1)[0]
    assert chrf([short], [reference])[0] < chrf([short], [reference], beta=1)[0]
