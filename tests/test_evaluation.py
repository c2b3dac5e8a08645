"""Held-out evaluation: the merged fast path against the 4-bit + PEFT slow path, the seeded title sample,
the new signals, contamination and the small-data warnings of the metrics stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from ftpipe.generation import generate_new_ids
from ftpipe.heldout import contamination, sample_rows, sample_summary
from ftpipe.modeling import DEFAULT_QUANTIZATION, load_base_model, load_for_inference, load_tokenizer, merge_adapter
from ftpipe.scoring import (
    PAIRS_PER_PROCESS,
    distinct_2,
    length_ratio,
    reference_scores,
    start_reference_scores,
    title_coverage,
)
from ftpipe.stage import namespace, use_threads
from tests.conftest import ROOT

CONFIG = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
TITLES = [
    "Girls Ballet Tutu Neon Pink",
    "Stainless Steel French Press 34 oz",
    "USB-C Cable",
    "Hardcover Notebook, Dotted Pages, A5, 240 pages, Black",
    "Wool Socks",
    "LED Desk Lamp with Wireless Charger and Clock",
]
# The prompt templates of every generating stage's arguments, as the workflow gives them.
PROMPT_VALUES = {
    "instruction_template": CONFIG["prompt"]["instruction"],
    "response_template": CONFIG["prompt"]["response"],
    "base_prompt_template": CONFIG["prompt"]["base_plain"],
}
GREEDY = {
    "max_new_tokens": 20,
    "do_sample": False,
    "temperature": 1.0,
    "top_p": 1.0,
    "repetition_penalty": 1.1,
    "stop_strings": [],
    "seed": 42,
}


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A LoRA adapter with random A and B (not the no-op init) on the 4-bit tiny model, as training saves it."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    base = load_base_model(str(tiny_model_dir), DEFAULT_QUANTIZATION, torch.device("cpu"), torch.float32)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    config = LoraConfig(r=8, lora_alpha=16, target_modules=targets, init_lora_weights=False, task_type="CAUSAL_LM")
    out = tmp_path_factory.mktemp("adapter")
    get_peft_model(base, config).save_pretrained(out)
    load_tokenizer(str(tiny_model_dir)).save_pretrained(out)
    return out


def prompts() -> list[str]:
    return [CONFIG["prompt"]["instruction"].format(title=title) for title in TITLES]


def test_merged_fast_path_gives_the_slow_paths_greedy_tokens(tiny_model_dir, adapter_dir):
    """Slow path: the 4-bit NF4 base through bitsandbytes + PeftModel, one prompt at a time (no padding).
    Fast path: the dequantized float32 base with the adapter merged, length-sorted batches of 4. Greedy
    token ids must be identical, and the logits equal within float32 rounding."""
    import bitsandbytes as bnb
    from peft import PeftModel

    cpu, tokenizer = torch.device("cpu"), load_tokenizer(str(adapter_dir))
    slow = load_base_model(str(tiny_model_dir), DEFAULT_QUANTIZATION, cpu, torch.float32)
    assert any(isinstance(module, bnb.nn.Linear4bit) for module in slow.modules())
    slow = PeftModel.from_pretrained(slow, str(adapter_dir)).eval()
    fast = merge_adapter(load_for_inference(str(tiny_model_dir), DEFAULT_QUANTIZATION, cpu), str(adapter_dir))
    assert not any("lora" in name for name, _ in fast.named_modules())
    slow_ids = generate_new_ids(slow, tokenizer, prompts(), GREEDY, batch_size=1)
    fast_ids = generate_new_ids(fast, tokenizer, prompts(), GREEDY, batch_size=4)
    assert [row.tolist() for row in fast_ids] == [row.tolist() for row in slow_ids]
    encoded = tokenizer(prompts()[0], return_tensors="pt")
    with torch.no_grad():
        difference = (fast(**encoded).logits - slow(**encoded).logits).abs().max()
    assert difference < 1e-4
    # The adapter matters: without it the same prompts give other tokens (so the check above can fail).
    base = load_for_inference(str(tiny_model_dir), DEFAULT_QUANTIZATION, cpu)
    base_ids = generate_new_ids(base, tokenizer, prompts(), GREEDY, batch_size=4)
    assert [row.tolist() for row in base_ids] != [row.tolist() for row in fast_ids]


def test_length_sorted_batches_come_back_in_prompt_order(tiny_model_dir):
    model = load_for_inference(str(tiny_model_dir), {"load_in_4bit": False}, torch.device("cpu"))
    tokenizer = load_tokenizer(str(tiny_model_dir))
    together = generate_new_ids(model, tokenizer, prompts(), GREEDY, batch_size=len(TITLES))
    for index, prompt in enumerate(prompts()):
        alone = generate_new_ids(model, tokenizer, [prompt], GREEDY, batch_size=1)[0]
        assert together[index].tolist() == alone.tolist()


def test_static_cache_gives_the_dynamic_caches_greedy_tokens(tiny_model_dir, adapter_dir):
    """generate.cache / metrics.cache: static (the benchmark's fastest GPU path) decodes the same tokens."""
    fast = merge_adapter(
        load_for_inference(str(tiny_model_dir), DEFAULT_QUANTIZATION, torch.device("cpu")), str(adapter_dir)
    )
    tokenizer = load_tokenizer(str(adapter_dir))
    dynamic = generate_new_ids(fast, tokenizer, prompts(), {**GREEDY, "cache_implementation": "dynamic"}, batch_size=4)
    static = generate_new_ids(fast, tokenizer, prompts(), {**GREEDY, "cache_implementation": "static"}, batch_size=4)
    assert [row.tolist() for row in static] == [row.tolist() for row in dynamic]


def write_rows(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def test_title_sample_is_seeded_random_and_independent_of_row_order(tmp_path):
    rows = [{"title": f"Product {i}", "content": f"Description {i}."} for i in range(300)]
    path = write_rows(tmp_path / "test.jsonl", rows)
    reversed_path = write_rows(tmp_path / "reversed.jsonl", rows[::-1])
    sample = sample_rows(path, 40, seed=0)
    assert len(sample) == 40 and sample == sample_rows(reversed_path, 40, seed=0)
    assert sample != rows[:40] and sample != sample_rows(path, 40, seed=1)
    assert sample_rows(path, 10, seed=0) == sample[:10]  # generate's titles are the first of metrics'
    assert sample_rows(path, 0, seed=0) == []
    assert sorted(map(json.dumps, sample_rows(path, None, 0))) == sorted(map(json.dumps, rows))
    summary = sample_summary(sample, 0)
    assert summary["n"] == 40 and summary != sample_summary(sample[::-1], 0)


def test_title_coverage_distinct_bigrams_and_length_ratio():
    assert title_coverage(["A pink tutu for dance.", "A mug."], ["Girls Ballet Tutu, Pink", "The Tutu"]) == [50.0, 0.0]
    assert distinct_2(["soft soft soft soft", "a soft pink tutu", "one"]) == [100 / 3, 100.0, 100.0]
    assert length_ratio(["one two three", ""], ["one two three four five six", "x"]) == [0.5, 0.0]


def test_reference_scores_started_in_processes_match_one_process_in_order():
    """Scoring forked into processes while the caller goes on (the GPU's perplexity) gives, in order, what one
    process gives: a chunk out of place or lost would shift every later title's scores."""
    n = 2 * PAIRS_PER_PROCESS + 7
    references = [f"a sturdy {i} steel water bottle keeps drinks cold" for i in range(n)]
    predictions = [f"steel bottle {i % 13} keeps water cold for {i} hours" for i in range(n)]
    result = start_reference_scores(predictions, references, processes=3)
    assert result() == reference_scores(predictions, references)


def test_contamination_finds_copied_references(tmp_path):
    copied = "Soft cotton shirt with a classic fit, two pockets and a button-down collar for every day."
    fresh = "A ceramic mug that holds twelve ounces of coffee and survives the dishwasher for years on end."
    train = write_rows(tmp_path / "train.jsonl", [{"title": "x", "content": copied.upper()}])
    result = contamination([copied, fresh], train, seed=0)
    assert result["exact_matches"] == 1 and result["n"] == 2
    assert result["ngram_overlap"]["mean"] == 50.0 and result["ngram_overlap"]["n"] == 2
    assert "1 of 2 scored references" in result["warning"]
    clean = contamination([fresh], train, seed=0)
    assert clean["exact_matches"] == 0 and clean["ngram_overlap"]["mean"] == 0.0 and clean["warning"] is False
    assert contamination([fresh], None, seed=0)["warning"].startswith("not measured")


def test_use_threads_caps_at_the_machine(monkeypatch):
    import os

    for variable in (
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "RAYON_NUM_THREADS",
        "RAYON_RS_NUM_CPUS",
        "TOKENIZERS_PARALLELISM",
    ):
        monkeypatch.setenv(variable, os.environ.get(variable, ""))  # restored after the test
    before = torch.get_num_threads()
    try:
        assert use_threads(1) == 1 and torch.get_num_threads() == 1
        assert use_threads(10_000) == os.cpu_count()
    finally:
        torch.set_num_threads(before)


def evaluation_args(tmp_path: Path, model_dir: Path, adapter: Path, splits: dict[str, str], **overrides):
    """base_eval's and metrics' arguments for the same data and settings, as the workflow gives them: each
    stage takes the values its parser knows (a value neither knows is refused)."""
    from base_eval import build_parser as base_eval_parser
    from metrics import build_parser as metrics_parser

    values = dict(
        test=splits["test"],
        validation=splits["validation"],
        train=splits.get("train"),
        model_dir=str(model_dir),
        adapter=str(adapter),
        base_eval=str(tmp_path / "base_eval.json"),
        metrics=str(tmp_path / "metrics.json"),
        num_titles=5,
        perplexity_rows=3,
        max_new_tokens=6,
        **PROMPT_VALUES,
        threads=1,
    )
    values.update(overrides)
    parsers = (base_eval_parser(), metrics_parser())
    known = [{action.dest for action in parser._actions} for parser in parsers]
    unknown = set(values) - set.union(*known) - {"threads"}
    assert not unknown, f"neither base_eval nor metrics takes {sorted(unknown)}"
    return tuple(
        namespace(parser, **{name: value for name, value in values.items() if name in names or name == "threads"})
        for parser, names in zip(parsers, known, strict=True)
    )


def evaluate(tmp_path: Path, model_dir: Path, adapter: Path, splits: dict[str, str], **overrides) -> dict:
    """The base variants (base_eval), then the adapter and the scores of all three (metrics): metrics.json."""
    from base_eval import base_eval
    from metrics import metrics

    base_eval_args, metrics_args = evaluation_args(tmp_path, model_dir, adapter, splits, **overrides)
    base_eval(base_eval_args)
    return metrics(metrics_args)


def catalog_splits(tmp_path: Path, rows: int = 60, validation: bool = True) -> dict[str, str]:
    from make_catalog import generate_records

    records = [r for r in generate_records(rows, seed=11) if isinstance(r, dict)]
    third = len(records) // 3
    return {
        "train": write_rows(tmp_path / "train.jsonl", records[:third]),
        "validation": write_rows(tmp_path / "validation.jsonl", records[third : 2 * third] if validation else []),
        "test": write_rows(tmp_path / "test.jsonl", records[2 * third :]),
    }


def test_metrics_stage_writes_the_interface(tmp_path, tiny_model_dir, adapter_dir):
    from metrics import PER_TITLE, VARIANTS

    splits = catalog_splits(tmp_path)
    result = evaluate(tmp_path, tiny_model_dir, adapter_dir, splits)
    assert json.loads((tmp_path / "metrics.json").read_text()) == result
    n = len(result["generations"])
    assert n == 5 and result["sample"]["n"] == 5 and result["sample"]["seed"] == 0
    assert [g["title"] for g in result["generations"]] == [r["title"] for r in sample_rows(splits["test"], 5, 0)]
    for variant in VARIANTS:
        for metric in PER_TITLE:
            summary = result["variants"][variant][metric]
            assert summary["low"] <= summary["mean"] <= summary["high"] and summary["n"] == n
            assert len(result["per_example"][variant][metric]) == n
        assert result["variants"][variant]["perplexity"]["perplexity"] > 1
    assert set(result["adapter_minus_base_tagged"]) == set(PER_TITLE)
    assert result["contamination"]["exact_matches"] == 0 and result["contamination"]["n"] == n
    assert any("fewer than 30" in warning for warning in result["warnings"])


def test_metrics_stage_small_data(tmp_path, tiny_model_dir, adapter_dir):
    splits = catalog_splits(tmp_path, validation=False)
    splits["train"] = splits["test"]  # every scored reference is in "train": contamination must say so
    result = evaluate(tmp_path, tiny_model_dir, adapter_dir, splits, num_titles=3)
    assert result["variants"]["adapter"]["perplexity"] is None
    assert any("no validation rows" in warning for warning in result["warnings"])
    assert result["contamination"]["exact_matches"] == 3
    assert any(warning.startswith("contamination: 3 of 3") for warning in result["warnings"])
    empty = write_rows(tmp_path / "empty.jsonl", [])
    with pytest.raises(SystemExit, match="test split is empty"):
        evaluate(tmp_path, tiny_model_dir, adapter_dir, {**splits, "test": empty})


def test_train_skips_validation_on_an_empty_split_with_a_warning(caplog):
    from ftpipe.training.steps import validation_steps

    empty = {"input_ids": torch.zeros((0, 128), dtype=torch.int32)}
    with caplog.at_level("WARNING"):
        assert validation_steps(10, empty) == 0
    assert "validation split is empty" in caplog.text
    assert validation_steps(10, {"input_ids": torch.zeros((3, 128), dtype=torch.int32)}) == 10
    assert validation_steps(0, empty) == 0


def test_config_refuses_held_out_fractions_that_leave_no_train_rows():
    from ftpipe.workflow.config_check import recipe_problems

    problems = recipe_problems({"data": {"validation_fraction": 0.5, "test_fraction": 0.5}})
    assert problems and "leaves no rows for training" in problems[0]
    assert recipe_problems({"data": {"validation_fraction": 0.1, "test_fraction": 0.1}}) == []


def test_stop_check_decodes_only_rows_that_can_complete_a_stop(tiny_model_dir):
    """The filtered stop check stops each row at the step where decoding every row at every step would
    first stop it (generate keeps a stopped row stopped), and never where that check would not."""
    from ftpipe.generation import StopOnText

    tokenizer = load_tokenizer(str(tiny_model_dir))
    stops = ["<end_of_turn>", "<eos>"]
    texts = ["A pink tutu.<end_of_turn> more", "Soft <eos", "x<eos> y <end_of_turn>", "plain text, no stop"]
    prompt = tokenizer("Title: tutu\n", add_special_tokens=False)["input_ids"]
    check = StopOnText(tokenizer, stops, len(prompt))
    first_stops = []
    for text in texts:
        new = tokenizer(text, add_special_tokens=False)["input_ids"]
        naive = [
            any(s in tokenizer.decode(new[:step][-check.window :]) for s in stops) for step in range(1, len(new) + 1)
        ]
        filtered = [check(torch.tensor([prompt + new[:step]]), None).item() for step in range(1, len(new) + 1)]
        assert all(n for n, f in zip(naive, filtered, strict=True) if f)
        first = naive.index(True) if any(naive) else None
        assert (filtered.index(True) if any(filtered) else None) == first, text
        first_stops.append(first)
    assert first_stops[0] is not None and first_stops[1] is None and first_stops[3] is None
    # Every step that writes a stop string's last character is seen: the text first holds it there.
    assert check(torch.tensor([prompt + tokenizer("ok<eos>", add_special_tokens=False)["input_ids"]]), None).item()


def test_auto_batch_size(tiny_model_dir):
    from ftpipe.generation import AUTO_BATCH_CPU, kv_cache_bytes_per_token, resolve_batch_size

    model = load_for_inference(str(tiny_model_dir), {"load_in_4bit": False}, torch.device("cpu"))
    assert resolve_batch_size("auto", model, 200) == AUTO_BATCH_CPU and resolve_batch_size(7, model, 200) == 7
    # keys and values x 2 layers x 2 key/value heads x head size 16 x 4 bytes (float32)
    assert kv_cache_bytes_per_token(model) == 2 * 2 * 2 * 16 * 4


def test_description_nll_is_the_models_own_loss_on_each_response(tiny_model_dir):
    """Batched and right-padded, the summed nll of each response equals the model's own loss on that row alone
    (labels -100 on the prompt) times the response's token count."""
    from ftpipe.scoring import description_nll

    tokenizer = load_tokenizer(tiny_model_dir)
    model = load_for_inference(tiny_model_dir, DEFAULT_QUANTIZATION, torch.device("cpu"))
    prompts = ["Title: Girls Ballet Tutu\nDescription: ", "Title: a\nDescription: ", "Title: USB-C cable, 2 m\n"]
    responses = ["A pink tutu for dance class.", "Short.", "Braided nylon, fast charging, two metres long, in grey."]
    got = description_nll(model, tokenizer, prompts, responses, batch_size=2)
    for (nll, count), prompt, response in zip(got, prompts, responses, strict=True):
        ids = tokenizer(prompt + response, return_tensors="pt")["input_ids"]
        prompt_tokens = len(tokenizer(prompt)["input_ids"])
        labels = ids.clone()
        labels[:, :prompt_tokens] = -100
        with torch.no_grad():
            mean = model(input_ids=ids, labels=labels).loss.item()
        assert count == ids.shape[1] - prompt_tokens
        assert nll == pytest.approx(mean * count, rel=1e-4)
