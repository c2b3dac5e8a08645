"""FP8 frozen base (speed.fp8_base): the quantization's scales, the matmuls and their input gradient against
float64, a LoRA model's loss and gradients against the 16/32-bit base, and the plan's rules. On the CPU the
module computes from the dequantized e4m3 operands (torch has no FP8 matmul there), which is the same function
the GPU's scaled matmul computes up to the accumulation order (bench/train_throughput.py checks that on a GPU)."""

import copy
import functools
import logging

import pytest
import torch

from ftpipe.modeling import load_base_model, lora_config
from ftpipe.training.fp8_base import E4M3_MAX, Fp8Linear, fp8_base_layers, quantize_rows
from tests.conftest import resolved_plan

resolved = functools.partial(resolved_plan, dropout=0.05)  # the plan for this LoRA dropout

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
E4M3_STEP = 2.0**-3  # 3 mantissa bits: a rounding error of at most half a step, 1/16, relative


def spread_rows(rows: int, columns: int, seed: int) -> torch.Tensor:
    """Random rows whose magnitudes span six orders: one scale for the whole tensor would flush the small rows
    to zero (e4m3's smallest subnormal is 2^-9 of its largest value / 448)."""
    generator = torch.Generator().manual_seed(seed)
    magnitudes = 10.0 ** torch.linspace(-3, 3, rows).unsqueeze(1)
    return torch.randn(rows, columns, generator=generator, dtype=torch.float64) * magnitudes


def row_errors(approx: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    return (approx.detach().double() - exact.detach()).norm(dim=1) / exact.detach().norm(dim=1)


def test_each_row_is_scaled_to_the_e4m3_range():
    matrix = spread_rows(64, 48, seed=0)
    values, scale = quantize_rows(matrix)
    assert values.dtype == torch.float8_e4m3fn and scale.shape == (64, 1)
    torch.testing.assert_close(values.float().abs().amax(dim=1), torch.full((64,), E4M3_MAX))
    torch.testing.assert_close(scale.double().squeeze(1), matrix.abs().amax(dim=1) / E4M3_MAX, rtol=1e-6, atol=0)
    relative = (values.double() * scale.double() - matrix).abs() / matrix.abs()
    large = matrix.abs() >= scale.double() * 2.0**-6  # e4m3's normal range; below it rounding is absolute
    assert float(relative[large].max()) <= E4M3_STEP / 2 + 1e-6


def linear_pair(inputs: int, outputs: int, seed: int) -> tuple[torch.nn.Linear, Fp8Linear]:
    torch.manual_seed(seed)
    linear = torch.nn.Linear(inputs, outputs, bias=False).double()
    with torch.no_grad():  # output channels of very different sizes, as trained weights have
        linear.weight.mul_(10.0 ** torch.linspace(-2, 2, outputs, dtype=torch.float64).unsqueeze(1))
    return linear, Fp8Linear(linear, torch.float32)


def test_forward_and_input_gradient_match_float64_row_by_row():
    linear, fp8 = linear_pair(96, 80, seed=1)
    x = spread_rows(40, 96, seed=2).requires_grad_()
    grad_out = spread_rows(40, 80, seed=3)
    exact = linear(x)
    (exact_dx,) = torch.autograd.grad(exact, x, grad_out)
    x32 = x.detach().float().requires_grad_()
    out = fp8(x32)
    (dx,) = torch.autograd.grad(out, x32, grad_out.float())
    assert out.dtype == torch.float32 and dx.dtype == torch.float32
    # Every token (row) keeps e4m3's precision whatever its size: per-row scales. A per-tensor scale, or a
    # scale applied along the wrong axis, leaves the small rows at errors near 1.
    assert float(row_errors(out, exact.detach()).max()) < 0.1
    assert float(row_errors(dx, exact_dx).max()) < 0.1
    assert float(row_errors(out, exact.detach()).mean()) > 1e-3  # it is quantized: not the float64 product


def test_the_weight_is_frozen_and_counted():
    linear, fp8 = linear_pair(32, 16, seed=4)
    assert [name for name, _ in fp8.named_parameters()] == ["weight"]
    assert not fp8.weight.requires_grad and fp8.weight.numel() == linear.weight.numel()
    assert fp8.weight_t.shape == (32, 16) and fp8.weight_t_scale.shape == (32, 1)


@pytest.fixture(scope="module")
def base(tiny_model_dir):
    return load_base_model(str(tiny_model_dir), {"load_in_4bit": False}, torch.device("cpu"), torch.float32)


def lora_model(base):
    from peft import get_peft_model

    torch.manual_seed(1)
    model = get_peft_model(
        copy.deepcopy(base), lora_config({"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": TARGETS})
    )
    for name, param in model.named_parameters():
        if "lora_B" in name:  # B starts at zero, which would leave A's gradient zero
            torch.nn.init.normal_(param, std=0.05)
    return model


def test_a_lora_model_on_the_fp8_base_keeps_loss_and_gradients(base):
    plain, fp8 = lora_model(base), lora_model(base)
    assert fp8_base_layers(fp8, torch.float32) == 14  # 7 projections x 2 layers
    ids = torch.randint(0, 1000, (3, 24), generator=torch.Generator().manual_seed(0))
    results = []
    for model in (plain, fp8):
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        grads = {name: p.grad for name, p in model.named_parameters() if p.requires_grad}
        results.append((loss.detach(), grads))
    (plain_loss, plain_grads), (fp8_loss, fp8_grads) = results
    assert plain_grads.keys() == fp8_grads.keys() and len(plain_grads) == 28
    assert abs(float(fp8_loss / plain_loss) - 1) < 1e-2
    for name, grad in plain_grads.items():
        relative = float((fp8_grads[name] - grad).norm() / grad.norm())
        assert relative < 0.1, (name, relative)


def test_a_bias_is_added_and_a_base_that_is_not_linear_is_refused(base):
    torch.manual_seed(5)
    linear = torch.nn.Linear(32, 16).double()
    fp8 = Fp8Linear(linear, torch.float32)
    x = torch.randn(8, 32, dtype=torch.float64)
    exact = linear(x).detach()
    assert float(row_errors(fp8(x.float()), exact).max()) < 0.1
    assert float(row_errors(fp8(x.float()) - linear.bias.float(), exact - linear.bias.detach()).max()) < 0.1
    model = lora_model(base)
    model.base_model.model.model.layers[0].self_attn.q_proj.base_layer = torch.nn.Identity()
    with pytest.raises(ValueError, match=r"layers\.0\.self_attn\.q_proj: its base layer is Identity"):
        fp8_base_layers(model, torch.float32)


def test_auto_is_off_without_fp8_tensor_cores_and_says_why(caplog):
    with caplog.at_level(logging.INFO, logger="ftpipe.train"):
        assert resolved({"fp8_base": "auto"})["fp8_base"] is False
    assert "fp8_base off: the device is cpu" in caplog.text
    with pytest.raises(SystemExit, match="fp8_base: true is not possible: the device is cpu"):
        resolved({"fp8_base": True})
    assert resolved({"fp8_base": False})["fp8_base"] is False


def test_on_an_fp8_gpu_auto_takes_it_and_leaves_the_lora_unfused(monkeypatch):
    from ftpipe.settings import default
    from ftpipe.training import speed_plan

    monkeypatch.setattr(speed_plan, "fp8_unavailable", lambda device: None)  # as on an H100
    assert default("train.speed.fp8_base") is False  # measured: within noise of the bf16 base, see bench
    assert resolved({}, device="cuda")["fp8_base"] is False
    assert resolved({"fp8_base": "auto"}, device="cuda")["fp8_base"] is True
    on_dropout_0 = resolved({"fp8_base": "auto"}, dropout=0.0, device="cuda")
    assert on_dropout_0["fp8_base"] is True and on_dropout_0["fused_lora"] is False
    four_bit = {"fp8_base": "auto", "dequantize_base": False}  # the 4-bit low-memory setting
    assert resolved(four_bit, device="cuda")["fp8_base"] is False
    with pytest.raises(SystemExit, match="the base stays 4-bit"):
        resolved({"fp8_base": True, "dequantize_base": False}, device="cuda")
    fused = resolved({"fp8_base": "auto", "fused_lora": True}, dropout=0.0, device="cuda")
    assert fused["fp8_base"] is False and fused["fused_lora"] is True
