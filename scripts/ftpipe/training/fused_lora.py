"""LoRA folded into the frozen weight, one matmul per projection instead of three (LoRA dropout 0 only).

PEFT computes y = x W^T + s (x A^T) B^T: besides the base matmul, two thin matmuls, an activation-sized
LoRA output and an add, and in the backward pass another activation-sized product added into dx. With no
dropout on the LoRA input the same y is x (W + s B A)^T: the merged weight costs one small (out x in)
addmm per projection and step, the thin products on the activations go away, and dx = dy (W + s B A) is
again one matmul. The gradients of A and B come from the low-rank products, exactly as PEFT's:
dB = s dy^T (x A^T), dA = s (dy B)^T x.
"""

from __future__ import annotations

import types

import torch


class MergedLoraMatmul(torch.autograd.Function):
    """y = x (W + s B A)^T for a frozen W; gradients for x, A and B."""

    @staticmethod
    def forward(ctx, x, weight, lora_a, lora_b, scaling: float):
        dtype = weight.dtype
        a, b = lora_a.to(dtype), lora_b.to(dtype)
        merged = torch.addmm(weight, b, a, alpha=scaling)  # one rounding of W + s B A in the compute dtype
        flat = x.reshape(-1, x.shape[-1]).to(dtype)
        ctx.save_for_backward(flat, flat @ a.t(), merged, b)
        ctx.scaling, ctx.dtypes = scaling, (x.dtype, lora_a.dtype, lora_b.dtype)
        return (flat @ merged.t()).view(*x.shape[:-1], merged.shape[0])

    @staticmethod
    def backward(ctx, grad_out):
        merged = ctx.saved_tensors[2]
        # One dtype: under CPU autocast the merged weight came out bf16 while W, x and B were float32.
        flat, projected, _, b = (tensor.to(merged.dtype) for tensor in ctx.saved_tensors)
        x_dtype, a_dtype, b_dtype = ctx.dtypes
        grad = grad_out.reshape(-1, grad_out.shape[-1]).to(merged.dtype)
        grad_x = (grad @ merged).view(*grad_out.shape[:-1], merged.shape[1]).to(x_dtype)
        grad_a = ((grad @ b).t() @ flat).mul_(ctx.scaling).to(a_dtype)
        grad_b = (grad.t() @ projected).mul_(ctx.scaling).to(b_dtype)
        return grad_x, None, grad_a, grad_b, None


def fusable(module) -> str | None:
    """Why `module` (a PEFT LoRA linear layer) cannot take the merged path, or None when it can."""
    if len(module.active_adapters) != 1:
        return "more than one active adapter"
    name = module.active_adapters[0]
    if not isinstance(module.lora_dropout[name], torch.nn.Identity):
        return "LoRA dropout is not 0 (the dropout applies to the LoRA input only, which a merged weight cannot)"
    if type(module.base_layer) is not torch.nn.Linear:
        return f"the base layer is {type(module.base_layer).__name__}, not a 16/32-bit nn.Linear"
    if name in getattr(module, "lora_variant", {}):
        return "a LoRA variant (DoRA) is on"
    return None


def merged_forward(self, x, *args, **kwargs):
    """The forward of a fused LoRA layer; PEFT's own path whenever the adapter is disabled or merged."""
    if self.disable_adapters or self.merged or args or kwargs:
        return type(self).forward(self, x, *args, **kwargs)
    name = self.active_adapters[0]
    lora_a, lora_b = self.lora_A[name].weight, self.lora_B[name].weight
    result = MergedLoraMatmul.apply(x, self.base_layer.weight, lora_a, lora_b, self.scaling[name])
    bias = self.base_layer.bias  # frozen (Qwen2's q/k/v have one): added as the base layer adds it
    return result if bias is None else result + bias.to(result.dtype)


def fuse_lora_layers(model) -> int:
    """Switch every LoRA linear layer of a PEFT model to the merged path; returns the count."""
    return switch_lora_forward(model, merged_forward, fusable, "fused LoRA")


def switch_lora_forward(model, forward, why_not, what: str) -> int:
    """Give every LoRA linear layer of a PEFT model the forward `forward`; returns the count. Raises ValueError
    naming the first layer that cannot take it (`why_not(module)` says why), so a run never mixes two paths."""
    from peft.tuners.lora import Linear as LoraLinear

    layers = [(name, module) for name, module in model.named_modules() if isinstance(module, LoraLinear)]
    for name, module in layers:
        reason = why_not(module)
        if reason:
            raise ValueError(f"{what} is not possible for {name}: {reason}")
    for _, module in layers:
        module.forward = types.MethodType(forward, module)
    return len(layers)
