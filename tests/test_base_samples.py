"""generate's base variants (base_samples): sampled once per base model, data, prompt and generate settings, and
in generate's samples.json exactly as generate sampled them itself before the split."""

from __future__ import annotations

import json

import pytest
import torch

from ftpipe.generation import generate_texts, prompt_format_of
from ftpipe.heldout import sample_rows
from ftpipe.modeling import load_for_inference, load_tokenizer, merge_adapter
from ftpipe.stage import namespace
from ftpipe.workflow.experiments import ExperimentPlan
from tests.test_evaluation import CONFIG, PROMPT_VALUES, adapter_dir, catalog_splits  # noqa: F401 (the fixture)

CPU = torch.device("cpu")
SHIPPED = json.loads(json.dumps(CONFIG))  # a copy: the plans below add an experiment


def base_samples_keys(runs: dict) -> dict[str, str]:
    """Each run's base_samples key in an experiment of the shipped config with these runs."""
    plan = ExperimentPlan({**SHIPPED, "experiment": {"runs": runs}}, source_hash=lambda path: "raw")
    return {name: keys["base_samples"] for name, keys in plan.keys.items()}


def test_runs_that_differ_in_training_or_metrics_share_the_base_samples():
    keys = base_samples_keys(
        {
            "a": {},
            "b": {"train": {"learning_rate": 1e-3, "lora": {"r": 4}}, "pack": {"mode": "seed"}},
            "c": {"metrics": {"num_titles": 20}, "tokenize": {"max_len": 96}},
            "d": {"generate": {"resources": {"mem_mb": 1000}}},  # how a job runs, not what it writes
        }
    )
    assert len(set(keys.values())) == 1, keys


@pytest.mark.parametrize(
    "overrides",
    [
        {"generate": {"temperature": 0.3}},
        {"generate": {"num_titles": 3}},
        {"generate": {"seed": 1}},
        {"prompt": {"base_plain": "Describe: {title}\n"}},
        {"prompt": {"instruction": "Describe: {title}\n"}},
        {"train": {"quantization": {"load_in_4bit": False}}},  # the base is loaded for sampling as for training
        {"data": {"seed": 1}},
        {"model": {"source": "elsewhere"}},
    ],
    ids=json.dumps,
)
def test_what_the_base_samples_depend_on_gives_them_a_key_of_their_own(overrides):
    keys = base_samples_keys({"a": {}, "b": overrides})
    assert keys["a"] != keys["b"]


def stage_args(tmp_path, model_dir, adapter, splits, **overrides):
    """base_samples' and generate's arguments for the same data and settings, as the workflow gives them."""
    from base_samples import build_parser as base_samples_parser
    from generate import build_parser as generate_parser

    values = dict(
        test=splits["test"],
        model_dir=str(model_dir),
        base_samples=str(tmp_path / "base_samples.json"),
        num_titles=4,
        max_new_tokens=8,
        **PROMPT_VALUES,
        threads=1,
    )
    values.update(overrides)
    generate_values = {**values, "adapter": str(adapter), "samples": str(tmp_path / "samples.json")}
    return namespace(base_samples_parser(), **values), namespace(generate_parser(), **generate_values)


def direct_samples(args, model_dir, adapter=None) -> dict[str, list[str]]:
    """Each variant's sampled texts generated directly on one model: the base model's plain and tagged prompts,
    or with `adapter` merged, the adapter's tagged prompt; the settings written out, not taken from the stages."""
    tokenizer = load_tokenizer(str(model_dir))
    prompt_format = prompt_format_of(args, tokenizer)
    titles = [row["title"] for row in sample_rows(args.test, args.num_titles, args.sample_seed)]
    settings = {
        "max_new_tokens": args.max_new_tokens,
        "do_sample": True,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "repetition_penalty": args.repetition_penalty,
        "stop_strings": prompt_format.stop_strings,
        "seed": args.seed,
    }
    model = load_for_inference(str(model_dir), args.quantization, CPU)
    tagged = [prompt_format.prompt(title) for title in titles]
    if adapter is not None:
        return {"adapter": generate_texts(merge_adapter(model, str(adapter)), tokenizer, tagged, settings, 2)}
    plain = [args.base_prompt_template.format(title=title) for title in titles]
    return {
        name: generate_texts(model, tokenizer, prompts, settings, 2)
        for name, prompts in (("base_plain", plain), ("base_tagged", tagged))
    }


def test_base_samples_are_the_base_models_samples_and_generate_adds_the_adapters(tmp_path, tiny_model_dir, adapter_dir):  # noqa: F811
    from base_samples import base_samples
    from generate import generate

    splits = catalog_splits(tmp_path)
    base_args, generate_args = stage_args(tmp_path, tiny_model_dir, adapter_dir, splits, batch_size=2)
    assert base_args.do_sample  # generate's shipped settings sample: the seed decides the texts
    base = base_samples(base_args)
    expected = direct_samples(base_args, tiny_model_dir)
    assert base["variants"] == expected and len(expected["base_plain"]) == 4
    assert base["variants"]["base_plain"] != base["variants"]["base_tagged"]
    assert set(base["timing"]) == {"load_model", "generate_base_plain", "generate_base_tagged", "total"}
    result = generate(generate_args)
    assert result == json.loads((tmp_path / "samples.json").read_text())
    adapter = direct_samples(generate_args, tiny_model_dir, adapter_dir)["adapter"]
    assert adapter != expected["base_tagged"]  # the merged adapter changed the model
    rows = sample_rows(splits["test"], 4, generate_args.sample_seed)
    assert result["samples"] == [
        {
            "title": row["title"],
            "reference": row["content"],
            "base_plain": expected["base_plain"][i],
            "base_tagged": expected["base_tagged"][i],
            "adapter": adapter[i],
        }
        for i, row in enumerate(rows)
    ]
    assert result["settings"] == base["settings"] and result["sample"] == base["sample"]
    own = {"load_model", "merge_adapter", "generate_adapter", "total"}
    assert set(result["timing"]) == own | {f"base_samples_{part}" for part in base["timing"]}


def test_generate_refuses_base_samples_of_other_titles_or_settings(tmp_path, tiny_model_dir, adapter_dir):  # noqa: F811
    from base_samples import base_samples
    from generate import generate

    splits = catalog_splits(tmp_path)
    base_samples(stage_args(tmp_path, tiny_model_dir, adapter_dir, splits)[0])
    with pytest.raises(SystemExit, match="base_samples.json holds the base variants of other sample rows"):
        generate(stage_args(tmp_path, tiny_model_dir, adapter_dir, splits, num_titles=3)[1])
    with pytest.raises(SystemExit, match=r"base_samples.json was generated with other sampling settings .*temperature"):
        generate(stage_args(tmp_path, tiny_model_dir, adapter_dir, splits, temperature=0.3)[1])
    assert not (tmp_path / "samples.json").exists()
    assert len(generate(stage_args(tmp_path, tiny_model_dir, adapter_dir, splits)[1])["samples"]) == 4
