"""Fused LoRA (speed.fused_lora): the merged-weight path computes PEFT's loss and gradients, and refuses
the settings it cannot compute (LoRA dropout, a 4-bit base) with a message instead of mixing paths; and
the plan's rules for the levers that depend on others (fused LoRA, CUDA graphs)."""

import copy
import functools

import pytest
import torch

from ftpipe.modeling import load_base_model, lora_config
from ftpipe.training.fused_lora import fuse_lora_layers
from ftpipe.workflow.config_check import recipe_problems
from tests.conftest import resolved_plan

resolved = functools.partial(resolved_plan, dropout=0.0)  # the plan for this LoRA dropout

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def peft_model(base, dropout: float = 0.0):
    from peft import get_peft_model

    torch.manual_seed(1)
    model = get_peft_model(
        copy.deepcopy(base), lora_config({"r": 4, "alpha": 8, "dropout": dropout, "target_modules": TARGETS})
    )
    for name, param in model.named_parameters():
        if "lora_B" in name:  # B starts at zero; a nonzero B makes the merged weight differ from W
            torch.nn.init.normal_(param, std=0.05)
    return model


@pytest.fixture(scope="module")
def base(tiny_model_dir):
    return load_base_model(str(tiny_model_dir), {"load_in_4bit": False}, torch.device("cpu"), torch.float32)


def loss_and_grads(model, ids):
    model.zero_grad()
    loss = model(input_ids=ids, labels=ids, use_cache=False).loss
    loss.backward()
    return loss.detach(), {name: p.grad for name, p in model.named_parameters() if p.requires_grad}


def test_merged_path_gives_peft_loss_and_gradients(base):
    plain, fused = peft_model(base), peft_model(base)
    assert fuse_lora_layers(fused) == 14  # 7 projections x 2 layers
    ids = torch.randint(0, 1000, (3, 24), generator=torch.Generator().manual_seed(0))
    plain_loss, plain_grads = loss_and_grads(plain, ids)
    fused_loss, fused_grads = loss_and_grads(fused, ids)
    torch.testing.assert_close(fused_loss, plain_loss, rtol=1e-5, atol=0)
    assert plain_grads.keys() == fused_grads.keys() and len(plain_grads) == 28
    for name, grad in plain_grads.items():
        assert grad.norm() > 0, name
        torch.testing.assert_close(fused_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_disabled_adapter_falls_back_to_the_base_model(base):
    fused = peft_model(base)
    fuse_lora_layers(fused)
    ids = torch.randint(0, 1000, (1, 8))
    with torch.no_grad(), fused.disable_adapter():
        without = fused(input_ids=ids).logits
    with torch.no_grad():
        expected, adapted = base(input_ids=ids).logits, fused(input_ids=ids).logits
    torch.testing.assert_close(without, expected)
    assert not torch.allclose(adapted, expected)


def test_dropout_is_refused(base):
    with pytest.raises(ValueError, match="q_proj: LoRA dropout is not 0"):
        fuse_lora_layers(peft_model(base, dropout=0.05))


def test_auto_takes_the_merged_path_where_possible_and_true_insists():
    from ftpipe.settings import default

    def plan(fused_lora, dropout: float, dequantize_base: bool = True):
        return resolved({"fused_lora": fused_lora, "dequantize_base": dequantize_base}, dropout=dropout)["fused_lora"]

    assert default("train.speed.fused_lora") == "auto"
    assert plan("auto", 0.0) is True
    assert plan("auto", 0.05) is False  # the recipe's dropout
    assert plan("auto", 0.0, dequantize_base=False) is False  # the 4-bit low-memory setting
    assert plan(False, 0.0) is False
    assert plan(True, 0.0) is True
    with pytest.raises(SystemExit, match="speed.fused_lora needs lora.dropout 0, not 0.05"):
        plan(True, 0.05)
    with pytest.raises(SystemExit, match="needs the base weights in 16 bits"):
        plan(True, 0.0, dequantize_base=False)


def test_config_check_refuses_fused_lora_true_with_dropout():
    config = {"train": {"lora": {"dropout": 0.05}, "speed": {"fused_lora": True}}}
    assert recipe_problems(config) == [
        "train.speed.fused_lora: needs train.lora.dropout 0 (it is 0.05); or use fused_lora: auto"
    ]
    assert recipe_problems({"train": {"lora": {"dropout": 0}, "speed": {"fused_lora": True}}}) == []
    assert recipe_problems({"train": {"lora": {"dropout": 0.05}, "speed": {"fused_lora": "auto"}}}) == []


def test_cuda_graphs_on_a_gpu_with_compiled_code():
    assert resolved({}, device="cuda")["cuda_graphs"] is True  # the default on GPUs
    assert resolved({"micro_batch": 16}, device="cuda")["cuda_graphs"] is True  # accumulation: grads summed apart
    assert resolved({}, device="cpu")["cuda_graphs"] is False
    assert resolved({"compile": False}, device="cuda")["cuda_graphs"] is False


def test_a_layer_that_cannot_take_it_turns_auto_off_and_stops_true(base):
    """DoRA layers cannot take the merged path: `auto` turns the lever off with the reason in the plan (the run
    goes on with PEFT's path), `true` stops the stage; no layer is switched either way."""
    from peft import LoraConfig, get_peft_model

    from ftpipe.training.speed_plan import apply_fused_lora

    dora = get_peft_model(copy.deepcopy(base), LoraConfig(r=4, target_modules=TARGETS, use_dora=True))
    plan = {"fused_lora": True, "fused_dropout_lora": False, "levers_off": {}}
    apply_fused_lora(dora, plan, {"fused_lora": "auto"})
    assert plan["fused_lora"] is False and "a LoRA variant (DoRA) is on" in plan["levers_off"]["fused_lora"]
    with pytest.raises(SystemExit, match="train: speed.fused_lora: fused LoRA is not possible for .*q_proj"):
        apply_fused_lora(dora, {**plan, "fused_lora": True}, {"fused_lora": True})
    assert not any("forward" in vars(module) for module in dora.modules())  # PEFT's own forward everywhere


def test_merged_path_adds_the_base_layers_bias():
    """Qwen2's q/k/v projections have a bias: the merged path adds it, under bf16 autocast too."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    layers = torch.nn.Sequential(torch.nn.Linear(16, 24, bias=True), torch.nn.Linear(24, 8, bias=True))
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["0", "1"])
    models = []
    for _ in range(2):
        torch.manual_seed(1)  # the same LoRA A and B in both
        models.append(get_peft_model(copy.deepcopy(layers), config))
        for name, param in models[-1].named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(param, std=0.1)
    plain, fused = models
    assert fuse_lora_layers(fused) == 2
    x = torch.randn(5, 16)
    for enabled in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
            expected, actual = plain(x), fused(x)
        tolerance = 2e-2 if enabled else 1e-5
        torch.testing.assert_close(actual.float(), expected.float(), rtol=tolerance, atol=tolerance)
        actual.float().sum().backward()  # the backward runs with autocast's bf16 merged weight (was a dtype error)
