"""The evaluation's base variants (base_eval): one job per base model, data, prompt and decoding settings, shared
by every run that agrees on them, and scored by metrics exactly as if metrics had generated them itself."""

from __future__ import annotations

import copy
import json
import re

import pytest
import torch
import yaml

from ftpipe.generation import generate_with_endings, prompt_format_of
from ftpipe.heldout import sample_rows
from ftpipe.modeling import load_for_inference, load_tokenizer
from ftpipe.scoring import bootstrap_mean, description_nll
from ftpipe.variants import BASE_VARIANTS, scoring_batch
from ftpipe.workflow.experiments import ExperimentPlan
from tests.conftest import ROOT, run_snakemake, write_tiny_config
from tests.test_evaluation import (
    adapter_dir,  # noqa: F401 (the fixture of a random LoRA adapter)
    catalog_splits,
    evaluate,
    evaluation_args,
)

SHIPPED = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))


def base_eval_keys(runs: dict) -> dict[str, str]:
    """Each run's base_eval key in an experiment of the shipped config with these runs."""
    plan = ExperimentPlan({**copy.deepcopy(SHIPPED), "experiment": {"runs": runs}}, source_hash=lambda path: "raw")
    return {name: keys["base_eval"] for name, keys in plan.keys.items()}


def test_runs_that_differ_in_training_or_generate_share_the_base_variants():
    keys = base_eval_keys(
        {
            "a": {},
            "b": {"train": {"learning_rate": 1e-3, "seed": 7}},
            "c": {"train": {"lora": {"r": 4}}, "pack": {"mode": "seed"}, "tokenize": {"completion_only": False}},
            "d": {"generate": {"temperature": 0.3, "num_titles": 3}},
            "e": {"metrics": {"resources": {"mem_mb": 1000}}},  # how a job runs, not what it writes
        }
    )
    assert len(set(keys.values())) == 1, keys


@pytest.mark.parametrize(
    "overrides",
    [
        {"prompt": {"instruction": "Describe: {title}\n"}},
        {"prompt": {"response": "{content}</s>"}},
        {"prompt": {"base_plain": "Describe: {title}\n"}},
        {"prompt": {"stop_strings": ["<eos>"]}},
        {"prompt": {"format": "chat_template"}},
        {"tokenize": {"max_len": 96}},  # bounds the auto budget
        {"metrics": {"num_titles": 20}},
        {"metrics": {"perplexity_rows": 8}},
        {"metrics": {"sample_seed": 1}},
        {"metrics": {"max_new_tokens": 64}},
        {"metrics": {"repetition_penalty": 1.0}},
        {"metrics": {"no_repeat_ngram_size": 3}},
        {"metrics": {"num_beams": 2}},
        {"metrics": {"batch_size": 8}},
        {"metrics": {"cache": "static"}},
        {"train": {"quantization": {"load_in_4bit": False}}},  # the base is loaded for evaluation as for training
        {"data": {"seed": 1}},  # other splits
        {"model": {"source": "HuggingFaceTB/SmolLM2-135M"}},
    ],
    ids=json.dumps,
)
def test_a_setting_of_the_base_variants_gives_them_a_new_key(overrides):
    keys = base_eval_keys({"a": {}, "b": overrides})
    assert keys["a"] != keys["b"]


def job_counts(dry_run_output: str) -> dict[str, int]:
    """The `Job stats` table of a Snakemake dry run."""
    table = dry_run_output.split("Job stats:", 1)[1].split("Reasons:", 1)[0]
    return {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


def test_an_experiment_plans_one_base_eval_job_per_distinct_evaluation(tmp_path, tiny_catalog, tiny_model_dir):
    """Four runs: three differ in training only (one base_eval job for them), d in the evaluation's beams."""
    runs = {"a": {}, "b": {"train": {"learning_rate": 1e-3}}, "c": {"train": {"lora": {"r": 4}}}}
    runs["d"] = {"metrics": {"num_beams": 2}}
    write_tiny_config(tmp_path, tiny_catalog, tiny_model_dir, experiment={"runs": runs})
    result = run_snakemake(tmp_path, "-n", "--cores", "1", "results/compare.html")
    assert result.returncode == 0, result.stderr[-3000:]
    counts = job_counts(result.stdout)
    assert counts["base_eval"] == 2 and counts["metrics"] == 4 and counts["train"] == 3, counts


def former_base_variants(args, splits: dict) -> dict:
    """What the single-stage metrics computed for the base variants: the dequantized base loaded once, the plain
    and the tagged prompts of the sampled titles decoded greedily, and the validation descriptions' nll."""
    tokenizer = load_tokenizer(args.adapter)
    model = load_for_inference(args.model_dir, args.quantization, torch.device("cpu"))
    prompt_format = prompt_format_of(args, tokenizer)
    tests = sample_rows(splits["test"], args.num_titles, args.sample_seed)
    validation = sample_rows(splits["validation"], args.perplexity_rows, args.sample_seed)
    prompts = {
        "base_plain": lambda rows: [args.base_prompt_template.format(title=row["title"]) for row in rows],
        "base_tagged": lambda rows: [prompt_format.prompt(row["title"]) for row in rows],
    }
    responses = {
        "base_plain": [row["content"] for row in validation],
        "base_tagged": [prompt_format.response(row["content"]) for row in validation],
    }
    decoding = {
        "max_new_tokens": args.max_new_tokens,
        "do_sample": False,
        "temperature": 1.0,
        "top_p": 1.0,
        "repetition_penalty": args.repetition_penalty,
        "no_repeat_ngram_size": args.no_repeat_ngram_size,
        "num_beams": args.num_beams,
        "stop_strings": prompt_format.stop_strings,
        "seed": args.seed,
        "cache_implementation": args.cache,
    }
    nll_batch = scoring_batch(args.batch_size, torch.device("cpu"))
    former = {}
    for variant in BASE_VARIANTS:
        texts, ended = generate_with_endings(model, tokenizer, prompts[variant](tests), decoding, args.batch_size)
        nll = description_nll(model, tokenizer, prompts[variant](validation), responses[variant], nll_batch)
        former[variant] = {"generations": texts, "ended": ended, "nll": nll}
    return former


def test_metrics_scores_the_base_variants_as_the_single_stage_path_did(tmp_path, tiny_model_dir, adapter_dir):  # noqa: F811
    from metrics import bootstrap_perplexity

    from ftpipe.variants import start_per_title_scores

    splits = catalog_splits(tmp_path)
    result = evaluate(tmp_path, tiny_model_dir, adapter_dir, splits, max_new_tokens=12)
    args = evaluation_args(tmp_path, tiny_model_dir, adapter_dir, splits, max_new_tokens=12)[1]
    former = former_base_variants(args, splits)
    tests = sample_rows(splits["test"], args.num_titles, args.sample_seed)
    generations = {variant: former[variant]["generations"] for variant in BASE_VARIANTS}
    generations["adapter"] = [row["adapter"] for row in result["generations"]]
    scores = start_per_title_scores(generations, tests, processes=1)()
    for variant in BASE_VARIANTS:
        assert [row[variant] for row in result["generations"]] == former[variant]["generations"], variant
        hit_cap = [variant in row["hit_cap"] for row in result["generations"]]
        assert hit_cap == [not ended for ended in former[variant]["ended"]], variant
        assert result["variants"][variant]["perplexity"] == bootstrap_perplexity(former[variant]["nll"], args.seed)
        for metric, values in scores[variant].items():
            assert result["per_example"][variant][metric] == [round(x, 4) for x in values], (variant, metric)
            assert result["variants"][variant][metric] == bootstrap_mean(values, args.seed), (variant, metric)
    shared = json.loads((tmp_path / "base_eval.json").read_text())
    assert result["base_variants_from"] == {"path": str(tmp_path / "base_eval.json"), "device": "cpu"}
    assert result["budget"] == shared["budget"] and result["sample"] == shared["sample"]


def test_metrics_refuses_base_variants_of_other_titles_or_decoding(tmp_path, tiny_model_dir, adapter_dir):  # noqa: F811
    from base_eval import base_eval
    from metrics import metrics

    splits = catalog_splits(tmp_path)
    base_eval_args, metrics_args = evaluation_args(tmp_path, tiny_model_dir, adapter_dir, splits, num_titles=4)
    base_eval(base_eval_args)
    with pytest.raises(SystemExit, match="base_eval.json holds the base variants of other sample rows"):
        metrics(evaluation_args(tmp_path, tiny_model_dir, adapter_dir, splits, num_titles=3)[1])
    with pytest.raises(SystemExit, match=r"other decoding settings than these \(repetition_penalty\)"):
        metrics(evaluation_args(tmp_path, tiny_model_dir, adapter_dir, splits, num_titles=4, repetition_penalty=1.0)[1])
    assert metrics(metrics_args)["settings"]["num_titles"] == 4
