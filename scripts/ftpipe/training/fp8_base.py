"""FP8 for the frozen base weights (speed.fp8_base): their matmuls, forward and input gradient, in e4m3.

The base weights never change during LoRA training, so each is quantized once: W (out x in) to float8 e4m3
with one scale per output channel (the rows of W, for y = x W^T), and a second copy W^T with one scale per
input channel (for dx = dy W, whose output columns are W's input channels). Activations and output
gradients are quantized per row (one scale per token) just before each matmul, so an outlier token costs
precision only to itself. torch._scaled_mm multiplies the two e4m3 operands on Hopper's FP8 tensor cores
and applies both scales to the float32 accumulators (rowwise scaling), out in bf16. No activation is saved
for the backward pass: the base weight is frozen, so only dx is needed, from dy and W^T. LoRA (and its
dropout), the norms, attention and the LM head stay as they are.

Where torch has no FP8 matmul (the CPU), the same quantization is applied and the product computed from the
dequantized operands in float32: the same function up to the accumulation order, which tests use.
"""

from __future__ import annotations

import torch

E4M3 = torch.float8_e4m3fn
E4M3_MAX = torch.finfo(E4M3).max  # 448
MIN_CAPABILITY = (8, 9)  # Ada and Hopper have FP8 tensor cores


def fp8_unavailable(device: torch.device) -> str | None:
    """Why the FP8 base cannot run on `device`, or None when it can."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return f"the device is {device.type} without CUDA, not a GPU with FP8 tensor cores"
    capability = torch.cuda.get_device_capability(device)
    if capability < MIN_CAPABILITY:
        name = torch.cuda.get_device_name(device)
        return f"{name} has compute capability {capability[0]}.{capability[1]}; FP8 matmuls need 8.9 or later"
    return None


def quantize_rows(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """e4m3 values and float32 scales, one per row (shape rows x 1), with matrix ~= values * scales: each row's
    largest magnitude maps to e4m3's largest finite value, 448."""
    wide = matrix.float()
    amax = wide.abs().amax(dim=-1, keepdim=True).clamp(min=1e-12)
    scale = amax / E4M3_MAX
    return (wide / scale).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3), scale


def dequantize_rows(values: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return values.float() * scale


def scaled_matmul(a: torch.Tensor, a_scale: torch.Tensor, b: torch.Tensor, b_scale: torch.Tensor, out_dtype):
    """(a * a_scale) @ (b * b_scale)^T for row-scaled e4m3 a (m x k) and b (n x k): FP8 tensor cores on a GPU
    (a row-major, b^T column-major, as cuBLAS wants), dequantized float32 elsewhere."""
    if a.is_cuda:
        return torch._scaled_mm(a, b.t(), scale_a=a_scale, scale_b=b_scale.t(), out_dtype=out_dtype)
    return (dequantize_rows(a, a_scale) @ dequantize_rows(b, b_scale).t()).to(out_dtype)


class Fp8Matmul(torch.autograd.Function):
    """y = x W^T with a frozen W held as e4m3 twice (W and W^T, each scaled per row); gradient for x only."""

    @staticmethod
    def forward(ctx, x, weight, weight_scale, weight_t, weight_t_scale, out_dtype):
        flat = x.reshape(-1, x.shape[-1])
        values, scale = quantize_rows(flat)
        out = scaled_matmul(values, scale, weight, weight_scale, out_dtype)
        ctx.save_for_backward(weight_t, weight_t_scale)
        ctx.x_dtype = x.dtype
        return out.view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad_out):
        weight_t, weight_t_scale = ctx.saved_tensors
        flat = grad_out.reshape(-1, grad_out.shape[-1])
        values, scale = quantize_rows(flat)
        grad_x = scaled_matmul(values, scale, weight_t, weight_t_scale, grad_out.dtype)
        return grad_x.view(*grad_out.shape[:-1], weight_t.shape[0]).to(ctx.x_dtype), None, None, None, None, None


class Fp8Linear(torch.nn.Module):
    """A frozen nn.Linear whose matmuls run in FP8. `weight` (e4m3, a frozen parameter, so parameter counts
    stay those of the model) and its per-output-channel scales serve the forward pass; the transposed copy (a
    buffer) and its per-input-channel scales serve the input gradient. The bias, if any (Qwen2's q/k/v), is
    added in `out_dtype`, the output's dtype."""

    def __init__(self, linear: torch.nn.Linear, out_dtype: torch.dtype):
        super().__init__()
        self.bias = None if linear.bias is None else torch.nn.Parameter(linear.bias.detach(), requires_grad=False)
        weight = linear.weight.detach()
        self.in_features, self.out_features, self.out_dtype = linear.in_features, linear.out_features, out_dtype
        values, scale = quantize_rows(weight)
        values_t, scale_t = quantize_rows(weight.t().contiguous())
        self.weight = torch.nn.Parameter(values, requires_grad=False)
        self.register_buffer("weight_scale", scale)
        self.register_buffer("weight_t", values_t)
        self.register_buffer("weight_t_scale", scale_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = Fp8Matmul.apply(x, self.weight, self.weight_scale, self.weight_t, self.weight_t_scale, self.out_dtype)
        return out if self.bias is None else out + self.bias.to(out.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, e4m3 per-channel scales"


def fp8_base_layers(model, out_dtype: torch.dtype) -> int:
    """Replace the base layer of every LoRA linear layer of a PEFT model by its FP8 version; returns the count.
    Raises ValueError naming the first layer whose base is not a 16/32-bit nn.Linear (a 4-bit base, say), so a
    run never mixes two paths."""
    from peft.tuners.lora import Linear as LoraLinear

    layers = [(name, module) for name, module in model.named_modules() if isinstance(module, LoraLinear)]
    for name, module in layers:
        base = module.base_layer
        if type(base) is not torch.nn.Linear:
            raise ValueError(
                f"fp8_base is not possible for {name}: its base layer is {type(base).__name__}, not a 16/32-bit "
                "nn.Linear (set speed.dequantize_base: true)"
            )
    for _, module in layers:
        module.base_layer = Fp8Linear(module.base_layer, out_dtype)
    return len(layers)
