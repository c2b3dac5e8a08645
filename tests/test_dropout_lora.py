"""Fused dropout LoRA (speed.fused_dropout_lora): the operator is dropout followed by lora_A with the mask
drawn from a seed, forward and backward; a LoRA layer switched to it computes PEFT's output and gradients
for the same mask; the plan takes it where it applies. The Triton kernels are checked the same way by
Triton's CPU interpreter where Triton is installed."""

import copy
import importlib.util
import os
import subprocess
import sys

import pytest
import torch

from ftpipe.modeling import load_base_model
from ftpipe.training import dropout_lora
from ftpipe.training.dropout_lora import dropout_lora_down, dropout_mask, fuse_dropout_lora_layers
from ftpipe.workflow.config_check import recipe_problems
from tests.conftest import ROOT, SCRIPTS
from tests.test_fused_lora import peft_model, resolved


def check_operator(dtype, rows: int, columns: int, rank: int, p: float, tolerance: float) -> None:
    """h, dx and dA of the operator against dropout-then-matmul with the mask the operator drew."""
    generator = torch.Generator().manual_seed(rows * columns + rank)
    x = torch.randn(2, rows, columns, generator=generator, dtype=dtype, requires_grad=True)
    weight = torch.randn(rank, columns, generator=generator, dtype=dtype, requires_grad=True)
    grad = torch.randn(2, rows, rank, generator=generator, dtype=dtype)
    seed = torch.tensor([12345], dtype=torch.int64)
    keep = dropout_mask(x.detach(), seed, p)
    assert keep.shape == x.shape and keep.dtype == torch.bool
    assert abs(keep.float().mean().item() - (1 - p)) < 0.03  # each element kept with probability 1 - p
    assert torch.equal(dropout_mask(x.detach(), seed, p), keep)  # the same seed draws the same mask
    assert not torch.equal(dropout_mask(x.detach(), torch.tensor([7], dtype=torch.int64), p), keep)

    h = dropout_lora_down(x, weight, seed, p)
    h.backward(grad)
    x_ref, weight_ref = x.detach().clone().requires_grad_(), weight.detach().clone().requires_grad_()
    expected = (x_ref * keep / (1 - p)) @ weight_ref.t()
    expected.backward(grad)

    def close(actual, wanted, what):
        error = ((actual - wanted).norm() / wanted.norm()).item()
        assert error < tolerance, f"{what}: relative error {error}"

    close(h.detach(), expected.detach(), "h")
    close(x.grad, x_ref.grad, "dx")
    close(weight.grad, weight_ref.grad, "dA")
    assert bool((x.grad[~keep] == 0).all())  # dropped inputs get no gradient


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_plain_operator_is_dropout_then_lora_a(dtype, tolerance):
    assert not dropout_lora.use_triton(torch.zeros(1))  # CPU without the interpreter: the plain path
    check_operator(dtype, rows=70, columns=100, rank=8, p=0.1, tolerance=tolerance)


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton is not installed")
def test_triton_kernels_in_the_interpreter():
    """The Triton kernels (forward, dx, dA and the mask kernel) on the CPU through TRITON_INTERPRET=1, with
    row and column counts that leave partial blocks, and ranks below and at the 16 that tl.dot needs."""
    code = (
        f"import sys; sys.path[:0] = [{str(SCRIPTS)!r}, {str(ROOT)!r}]\n"
        "import torch\n"
        "from ftpipe import dropout_lora\n"
        "from tests.test_dropout_lora import check_operator\n"
        "assert dropout_lora.use_triton(torch.zeros(1))\n"
        "check_operator(torch.float32, rows=70, columns=100, rank=16, p=0.1, tolerance=5e-3)\n"
        "check_operator(torch.float32, rows=33, columns=130, rank=8, p=0.3, tolerance=5e-3)\n"
        "print('ok')\n"
    )
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


@pytest.fixture(scope="module")
def base(tiny_model_dir):
    return load_base_model(str(tiny_model_dir), {"load_in_4bit": False}, torch.device("cpu"), torch.float32)


class MaskDropout(torch.nn.Module):
    """PEFT's dropout with a given mask (to compare PEFT's path with the fused one on the same mask)."""

    def __init__(self, keep, p):
        super().__init__()
        self.keep, self.p = keep, p

    def forward(self, x):
        return x * self.keep / (1 - self.p)


def test_fused_layer_is_peft_with_the_same_mask(base, monkeypatch):
    fused = peft_model(base, dropout=0.1)
    plain = copy.deepcopy(fused)
    assert fuse_dropout_lora_layers(fused) == 14  # 7 projections x 2 layers
    fused_layer = fused.base_model.model.model.layers[0].mlp.gate_proj
    plain_layer = plain.base_model.model.model.layers[0].mlp.gate_proj
    seed = torch.tensor([99], dtype=torch.int64)
    monkeypatch.setattr(dropout_lora, "new_seed", lambda device: seed)
    x = torch.randn(3, 11, fused_layer.in_features, generator=torch.Generator().manual_seed(3))
    plain_layer.lora_dropout["default"] = MaskDropout(dropout_mask(x, seed, 0.1), 0.1)
    outputs, grads = [], []
    for layer in (fused_layer, plain_layer):
        layer.train()
        x_in = x.clone().requires_grad_()
        out = layer(x_in)
        out.backward(torch.ones_like(out))
        outputs.append(out.detach())
        grads.append([x_in.grad, layer.lora_A["default"].weight.grad, layer.lora_B["default"].weight.grad])
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-5, atol=1e-6)
    for fused_grad, plain_grad in zip(*grads, strict=True):
        assert plain_grad.norm() > 0
        torch.testing.assert_close(fused_grad, plain_grad, rtol=1e-4, atol=1e-6)


def test_fused_model_trains_and_evaluates_as_peft(base):
    fused = peft_model(base, dropout=0.1)
    plain = copy.deepcopy(fused)
    fuse_dropout_lora_layers(fused)
    ids = torch.randint(0, 1000, (2, 16), generator=torch.Generator().manual_seed(0))
    fused.eval(), plain.eval()
    with torch.no_grad():  # no dropout in evaluation: PEFT's own path
        torch.testing.assert_close(fused(input_ids=ids).logits, plain(input_ids=ids).logits)
    fused.train()
    torch.manual_seed(0)
    loss = fused(input_ids=ids, labels=ids, use_cache=False).loss
    loss.backward()
    grads = {name: p.grad for name, p in fused.named_parameters() if p.requires_grad}
    assert len(grads) == 28 and all(grad is not None and grad.norm() > 0 for grad in grads.values())
    torch.manual_seed(0)
    again = fused(input_ids=ids, labels=ids, use_cache=False).loss
    assert torch.equal(again, loss.detach())  # masks come from torch's generator: a seeded run repeats
    assert not torch.equal(fused(input_ids=ids, labels=ids, use_cache=False).loss, loss.detach())  # fresh masks


def test_dropout_zero_is_refused(base):
    with pytest.raises(ValueError, match="q_proj: LoRA dropout is 0"):
        fuse_dropout_lora_layers(peft_model(base, dropout=0.0))


def test_plan_takes_it_on_gpus_with_dropout_and_true_insists():
    from ftpipe.settings import default

    def plan(wanted, dropout, device="cuda"):
        return resolved({"fused_dropout_lora": wanted}, dropout=dropout, device=device)["fused_dropout_lora"]

    assert default("train.speed.fused_dropout_lora") is False  # measured slower on an H200: a memory lever
    assert plan("auto", 0.05) is True  # the recipe on a GPU
    assert plan("auto", 0.05, device="cpu") is False
    assert plan("auto", 0.0) is False  # dropout 0: fused_lora's case
    assert plan(False, 0.05) is False
    assert plan(True, 0.05, device="cpu") is True  # the plain path
    with pytest.raises(SystemExit, match="fused_dropout_lora needs lora.dropout > 0"):
        plan(True, 0.0)
    assert recipe_problems({"train": {"lora": {"dropout": 0}, "speed": {"fused_dropout_lora": True}}}) == [
        "train.speed.fused_dropout_lora: needs train.lora.dropout > 0 (it is 0); or use fused_dropout_lora: auto"
    ]
    assert recipe_problems({"train": {"lora": {"dropout": 0.05}, "speed": {"fused_dropout_lora": True}}}) == []
