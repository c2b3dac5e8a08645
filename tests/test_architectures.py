"""The training stage on each supported architecture (Llama tied and untied, Qwen2, Qwen3, Mistral, Gemma-2,
Phi-3), as tiny random models of transformers' own config classes with the SmolLM2 tokenizer (one test per
architecture: see its docstring). An explicit target list that matches nothing stops the stage; one that
leaves projections out warns, in the log and in timing.json."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import PROMPT, ROOT
from tests.test_train import cli_args

sys.path.insert(0, str(ROOT / "bench"))
from model_zoo import ARCHITECTURES, TINY_WIDTHS, model_config  # noqa: E402

# Sliding windows shorter than a 128-token block, so that they matter here.
TINY_FEATURES = {"mistral": {"sliding_window": 32}, "gemma2": {"sliding_window": 32}}
ADAPTED = {
    "phi3": ["down_proj", "gate_up_proj", "o_proj", "qkv_proj"],
    **{
        name: ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
        for name in ARCHITECTURES
        if name != "phi3"
    },
}
ALL_LINEAR = {"r": 4, "alpha": 8, "dropout": 0.05, "target_modules": "all-linear"}


@pytest.fixture(scope="module")
def small_tokenizer_dir(tokenizer_dir, tmp_path_factory) -> Path:
    """The SmolLM2 tokenizer cut to its first 4,096 ids (and the merges that build them; every text still
    encodes): the output layer of a 49,152-token vocabulary would be most of each step's time."""
    from train_throughput import truncated_tokenizer

    return truncated_tokenizer(tokenizer_dir, tmp_path_factory.mktemp("tokenizer_4096"), 4096)


@pytest.fixture(scope="module")
def small_packed_dir(small_tokenizer_dir, tiny_catalog, tmp_path_factory) -> Path:
    """The tiny catalog through prepare -> tokenize -> pack with the small tokenizer (boundary packing)."""
    from inprocess import run_data_stages

    out = tmp_path_factory.mktemp("small_data")
    return run_data_stages(
        tiny_catalog, out, small_tokenizer_dir, PROMPT, "{content}<eos>", validation_fraction=0.1, test_fraction=0.1
    )


@pytest.fixture(scope="module")
def model_dirs(small_tokenizer_dir, tmp_path_factory):
    """name -> folder of a tiny random model of that architecture with the small tokenizer, built on first use."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(small_tokenizer_dir)
    built = {}

    def folder(name: str) -> Path:
        if name not in built:
            config = model_config(
                name,
                len(tokenizer),
                tokenizer.bos_token_id,
                tokenizer.eos_token_id,
                tokenizer.pad_token_id,
                **TINY_WIDTHS,
                **TINY_FEATURES.get(name, {}),
            )
            torch.manual_seed(0)
            out = tmp_path_factory.mktemp(name)
            AutoModelForCausalLM.from_config(config).save_pretrained(out)
            tokenizer.save_pretrained(out)
            built[name] = out
        return built[name]

    return folder


def stage_args(packed: Path, model: Path, out: Path, lora: dict, *extra: str):
    """The stage's arguments: 3 steps of 1 x 2 micro-batches (256 tokens a step: the 49k-token output layer is
    most of the time), a checkpoint at step 2."""
    from train import build_parser

    recipe = ["--max-steps", "3", "--micro-batch", "1", "--save-steps", "2", "--learning-rate", "1e-2"]
    return build_parser().parse_args(cli_args(packed, model, out, *recipe, "--lora", json.dumps(lora), *extra))


def train_in_process(args) -> dict:
    from train import run_training

    from ftpipe.training.steps import load_blocks

    return run_training(args, load_blocks(args.packed))


def adapter_weights(out: Path) -> dict:
    return load_file(str(out / "adapter" / "adapter_model.safetensors"))


def losses(out: Path) -> list[float]:
    return [row["loss"] for row in json.loads((out / "history.json").read_text())["history"]]


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_architecture_through_the_training_stage(name, model_dirs, small_packed_dir, tmp_path):
    """On a 4-bit base with all-linear LoRA (dropout 0, so that both paths draw no masks):
    - every projection gets an adapter, and timing.json says which and how many parameters (r (in + out) per
      linear layer);
    - a rerun after the outputs are lost resumes at the step-2 checkpoint and ends with the same adapter;
    - the fast path's CPU levers (dequantized base, bf16 autocast, fused LoRA: Qwen2's q/k/v have a bias,
      Phi-3's qkv_proj is fused; one micro-batch of 2 instead of 2 of 1; data on the device; fused AdamW) give
      the plain path's loss within 1% (compile is measured on the GPU: bench/architectures.py);
    - the merged model's logits are base + adapter's, and differ from the base's;
    - boundary-packed examples (restarting position ids, no mask) get the logits they get alone;
    - per-layer compile finds every decoder layer."""
    from peft import PeftModel

    from ftpipe.modeling import DEFAULT_QUANTIZATION, load_for_inference, merge_adapter
    from ftpipe.training.speed_plan import decoder_layers

    model_dir, plain, fast = model_dirs(name), tmp_path / "plain", tmp_path / "fast"
    lora = {**ALL_LINEAR, "dropout": 0.0}
    timing = train_in_process(stage_args(small_packed_dir, model_dir, plain, lora))
    adapters = timing["adapters"]
    assert adapters["adapted_modules"] == ADAPTED[name] and adapters["warnings"] == []
    first = adapter_weights(plain)

    for output in ("adapter", "train_log.csv", "history.json", "timing.json"):
        path = plain / output
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert train_in_process(stage_args(small_packed_dir, model_dir, plain, lora))["steps_this_run"] == 1  # step 3
    second = adapter_weights(plain)
    assert first.keys() == second.keys() and all(torch.equal(first[key], second[key]) for key in first)

    speed = {"enabled": True, "micro_batch": 2, "compile": False}
    levers = train_in_process(stage_args(small_packed_dir, model_dir, fast, lora, "--speed", json.dumps(speed)))["plan"]
    assert levers["fused_lora"] and levers["dequantize_base"] and levers["mixed_precision"] and not levers["levers_off"]
    assert levers["micro_batch"] == 2 and levers["grad_accum"] == 1
    assert len(losses(plain)) == len(losses(fast)) == 3
    assert max(abs(p - f) / p for p, f in zip(losses(plain), losses(fast), strict=True)) < 1e-2

    ids = torch.randint(0, 1000, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        with_adapter = PeftModel.from_pretrained(
            load_for_inference(str(model_dir), DEFAULT_QUANTIZATION, torch.device("cpu")), str(plain / "adapter")
        ).eval()
        adapter_logits = with_adapter(input_ids=ids).logits
        with with_adapter.disable_adapter():
            base_logits = with_adapter(input_ids=ids).logits
        assert len(decoder_layers(with_adapter)) == TINY_WIDTHS["num_hidden_layers"]
        linear = [m for n, m in with_adapter.named_modules() if n.endswith("base_layer")]
        assert adapters["trainable_parameters"] == sum(4 * (m.in_features + m.out_features) for m in linear)
        # MFU's model FLOPs: an untied input embedding is a lookup, not a matmul
        lookup = (
            0 if ARCHITECTURES[name][1]["tie_word_embeddings"] else with_adapter.get_input_embeddings().weight.numel()
        )
        assert timing["flops_per_token"] == 4 * (adapters["total_parameters"] - lookup)
        merged = merge_adapter(
            load_for_inference(str(model_dir), DEFAULT_QUANTIZATION, torch.device("cpu")), plain / "adapter"
        )
        merged_logits = merged(input_ids=ids).logits
        assert (adapter_logits - base_logits).abs().max() > 1e-3  # the adapter changes the model...
        torch.testing.assert_close(merged_logits, adapter_logits, rtol=1e-4, atol=1e-4)  # ...and merging keeps it

        generator = torch.Generator().manual_seed(1)
        examples = [torch.randint(0, 1000, (1, length), generator=generator) for length in (40, 50)]  # > window 32
        packed = torch.cat(examples, dim=1)
        positions = torch.cat([torch.arange(40), torch.arange(50)]).unsqueeze(0)
        together = merged(input_ids=packed, position_ids=positions, use_cache=False).logits  # as in training
        alone = torch.cat([merged(input_ids=example, use_cache=False).logits for example in examples], dim=1)
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-4)


def test_a_target_that_matches_nothing_names_the_layers_that_exist(model_dirs):
    """The Llama list on Phi-3 (whose attention is one qkv_proj): PEFT would adapt o_proj and down_proj only."""
    from ftpipe.modeling import load_base_model
    from ftpipe.training.lora_targets import resolve_targets

    model = load_base_model(str(model_dirs("phi3")), {"load_in_4bit": False}, torch.device("cpu"), torch.float32)
    llama_list = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    with pytest.raises(SystemExit, match=r"\['q_proj', 'k_proj', 'v_proj', 'gate_proj', 'up_proj'\] match no linear"):
        resolve_targets(model, llama_list)
    with pytest.raises(SystemExit, match=r"named \['down_proj', 'gate_up_proj', 'o_proj', 'qkv_proj'\]"):
        resolve_targets(model, llama_list)


def test_a_list_that_leaves_projections_out_warns_in_timing(model_dirs, small_packed_dir, tmp_path, caplog):
    lora = {**ALL_LINEAR, "target_modules": ["q_proj", "v_proj"]}
    timing = train_in_process(
        stage_args(small_packed_dir, model_dirs("llama_tied"), tmp_path, lora, "--max-steps", "1")
    )
    warnings = timing["adapters"]["warnings"]
    assert len(warnings) == 2
    assert any("attention projections ['k_proj', 'o_proj'] of LlamaForCausalLM" in warning for warning in warnings)
    assert any("MLP projections ['down_proj', 'gate_proj', 'up_proj']" in warning for warning in warnings)
    assert timing["adapters"]["adapted_modules"] == ["q_proj", "v_proj"]
    assert any("MLP projections" in record.message for record in caplog.records)
