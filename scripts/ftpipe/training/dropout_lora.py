"""LoRA dropout fused into the LoRA down-projection: h = (x * m / (1 - p)) A^T without storing the mask.

PEFT computes a LoRA layer's low-rank input as lora_A(dropout(x)): the dropout writes an activation-sized
masked copy of x and keeps its mask for the backward pass, and lora_A reads the copy again. Here one
operation takes x, the weight A (r x in), the dropout probability p and a seed: the mask m is a function of
(seed, row, column), drawn with Philox where it is needed, so the forward pass reads x once and writes only
h (tokens x r), and the backward pass draws the same mask again from the seed:
    dx = ((dh A) * m) / (1 - p),    dA = dh^T (x * m) / (1 - p).
On a GPU with Triton three kernels do this (forward; dx; dA in column tiles, split over the rows); elsewhere
the plain path computes the same function with the mask drawn by torch from the seed. Both are
`torch.library` custom operators, so torch.compile and CUDA graphs treat them as single opaque kernels.
The mask differs from PEFT's (another random stream), its distribution is the same: each element kept with
probability 1 - p, independently, a fresh mask for every call in training.
"""

from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the plain path
    triton = None


def use_triton(x: torch.Tensor) -> bool:
    """Triton on CUDA tensors; with TRITON_INTERPRET=1 (Triton's CPU interpreter, for tests) on any tensor."""
    return triton is not None and (x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1")


# ---------------------------------------------------------------- plain path (any device)


def plain_mask(shape, seed: torch.Tensor, p: float, device) -> torch.Tensor:
    """The plain path's keep-mask for a (rows, columns) input: torch's generator seeded with `seed`."""
    generator = torch.Generator(device=device).manual_seed(int(seed))
    return torch.rand(shape, generator=generator, device=device) >= p


def _plain_forward(x2, weight, seed, p):
    keep = plain_mask(x2.shape, seed, p, x2.device)
    return (x2 * keep).matmul(weight.to(x2.dtype).t()) / (1 - p)


def _plain_backward(grad2, x2, weight, seed, p):
    keep = plain_mask(x2.shape, seed, p, x2.device)
    grad_x = grad2.matmul(weight.to(grad2.dtype)) * keep / (1 - p)
    accumulate = torch.promote_types(x2.dtype, torch.float32)  # as the kernel: at least float32
    grad_w = grad2.t().to(accumulate).matmul((x2 * keep).to(accumulate)) / (1 - p)
    return grad_x.to(x2.dtype), grad_w.to(weight.dtype)


# ---------------------------------------------------------------- Triton kernels

if triton is not None:

    @triton.jit
    def _keep(seed, rows, cols, K, p):
        return tl.rand(seed, rows[:, None] * K + cols[None, :]) >= p

    @triton.jit
    def _forward_kernel(
        x_ptr,
        w_ptr,
        h_ptr,
        seed_ptr,
        M,
        K,
        R,
        p,
        scale,
        K_TILES: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_K: tl.constexpr,
        BLOCK_R: tl.constexpr,
    ):
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        ranks = tl.arange(0, BLOCK_R)
        seed = tl.load(seed_ptr)
        acc = tl.zeros((BLOCK_M, BLOCK_R), dtype=tl.float32)
        for tile in range(K_TILES):  # a constant trip count: Triton's CPU interpreter cannot loop to a runtime K
            cols = tile * BLOCK_K + tl.arange(0, BLOCK_K)
            inside = (rows[:, None] < M) & (cols[None, :] < K)
            x = tl.load(x_ptr + rows[:, None] * K + cols[None, :], mask=inside, other=0.0)
            x = tl.where(_keep(seed, rows, cols, K, p), x, 0.0).to(x_ptr.dtype.element_ty)
            w_t = tl.load(
                w_ptr + ranks[None, :] * K + cols[:, None], mask=(ranks[None, :] < R) & (cols[:, None] < K), other=0.0
            )
            acc += tl.dot(x, w_t.to(x_ptr.dtype.element_ty))
        out = (rows[:, None] < M) & (ranks[None, :] < R)
        tl.store(h_ptr + rows[:, None] * R + ranks[None, :], (acc * scale).to(h_ptr.dtype.element_ty), mask=out)

    @triton.jit
    def _grad_x_kernel(
        g_ptr,
        w_ptr,
        dx_ptr,
        seed_ptr,
        M,
        K,
        R,
        p,
        scale,
        BLOCK_M: tl.constexpr,
        BLOCK_K: tl.constexpr,
        BLOCK_R: tl.constexpr,
    ):
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        cols = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
        ranks = tl.arange(0, BLOCK_R)
        seed = tl.load(seed_ptr)
        g = tl.load(
            g_ptr + rows[:, None] * R + ranks[None, :], mask=(rows[:, None] < M) & (ranks[None, :] < R), other=0.0
        )
        w = tl.load(
            w_ptr + ranks[:, None] * K + cols[None, :], mask=(ranks[:, None] < R) & (cols[None, :] < K), other=0.0
        )
        d = tl.dot(g, w.to(g_ptr.dtype.element_ty))
        d = tl.where(_keep(seed, rows, cols, K, p), d * scale, 0.0)
        inside = (rows[:, None] < M) & (cols[None, :] < K)
        tl.store(dx_ptr + rows[:, None] * K + cols[None, :], d.to(dx_ptr.dtype.element_ty), mask=inside)

    @triton.jit
    def _grad_w_kernel(
        g_ptr,
        x_ptr,
        part_ptr,
        seed_ptr,
        M,
        K,
        R,
        p,
        M_TILES: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_K: tl.constexpr,
        BLOCK_R: tl.constexpr,
    ):
        cols = tl.program_id(0) * BLOCK_K + tl.arange(0, BLOCK_K)
        ranks = tl.arange(0, BLOCK_R)
        seed = tl.load(seed_ptr)
        start = tl.program_id(1) * M_TILES * BLOCK_M  # this program's rows: M_TILES blocks of BLOCK_M
        acc = tl.zeros((BLOCK_R, BLOCK_K), dtype=tl.float32)
        for tile in range(M_TILES):
            rows = start + tile * BLOCK_M + tl.arange(0, BLOCK_M)
            in_rows = rows < M
            g_t = tl.load(
                g_ptr + rows[None, :] * R + ranks[:, None], mask=in_rows[None, :] & (ranks[:, None] < R), other=0.0
            )
            x = tl.load(
                x_ptr + rows[:, None] * K + cols[None, :], mask=in_rows[:, None] & (cols[None, :] < K), other=0.0
            )
            x = tl.where(_keep(seed, rows, cols, K, p), x, 0.0).to(x_ptr.dtype.element_ty)
            acc += tl.dot(g_t.to(x_ptr.dtype.element_ty), x)
        out = (ranks[:, None] < R) & (cols[None, :] < K)
        tl.store(part_ptr + tl.program_id(1) * R * K + ranks[:, None] * K + cols[None, :], acc, mask=out)

    @triton.jit
    def _mask_kernel(keep_ptr, seed_ptr, M, K, p, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr):
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        cols = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
        keep = _keep(tl.load(seed_ptr), rows, cols, K, p)
        inside = (rows[:, None] < M) & (cols[None, :] < K)
        tl.store(keep_ptr + rows[:, None] * K + cols[None, :], keep.to(tl.int8), mask=inside)


BLOCK_M, BLOCK_K = 64, 64
FORWARD_BLOCK_M = 32  # 256 programs for 8192 rows: each streams its rows of x once (a guess, not tuned on a GPU)


def _block_r(rank: int) -> int:
    return max(16, triton.next_power_of_2(rank))  # tl.dot needs 16 or more


def _check(x2: torch.Tensor) -> None:
    if x2.numel() >= 2**31:
        raise ValueError(f"fused dropout LoRA: {tuple(x2.shape)} has 2^31 elements or more (32-bit mask offsets)")


def _triton_forward(x2, weight, seed, p):
    _check(x2)
    (M, K), R = x2.shape, weight.shape[0]
    h = torch.empty((M, R), device=x2.device, dtype=x2.dtype)
    grid = (triton.cdiv(M, FORWARD_BLOCK_M),)
    tiles = triton.cdiv(K, BLOCK_K)
    _forward_kernel[grid](x2, weight, h, seed, M, K, R, p, 1 / (1 - p), tiles, FORWARD_BLOCK_M, BLOCK_K, _block_r(R))
    return h


def _triton_backward(grad2, x2, weight, seed, p):
    (M, K), R = x2.shape, weight.shape[0]
    grad2 = grad2.contiguous()
    grad_x = torch.empty_like(x2)
    grid = (triton.cdiv(M, BLOCK_M), triton.cdiv(K, BLOCK_K))
    _grad_x_kernel[grid](grad2, weight, grad_x, seed, M, K, R, p, 1 / (1 - p), BLOCK_M, BLOCK_K, _block_r(R))
    column_tiles, row_tiles = triton.cdiv(K, BLOCK_K), triton.cdiv(M, BLOCK_M)
    splits = max(1, min(row_tiles, 264 // column_tiles))  # about two programs per H100/H200 multiprocessor
    tiles_per_split = triton.cdiv(row_tiles, splits)
    splits = triton.cdiv(row_tiles, tiles_per_split)
    parts = torch.empty((splits, R, K), device=x2.device, dtype=torch.float32)
    grid = (column_tiles, splits)
    _grad_w_kernel[grid](grad2, x2, parts, seed, M, K, R, p, tiles_per_split, BLOCK_M, BLOCK_K, _block_r(R))
    grad_w = parts.sum(0).mul_(1 / (1 - p))
    return grad_x, grad_w.to(weight.dtype)


def dropout_mask(x: torch.Tensor, seed: torch.Tensor, p: float) -> torch.Tensor:
    """The keep-mask that the operator draws for input `x` with `seed` (rows = all leading dimensions), as
    booleans of x's shape: what the tests compare against."""
    x2 = x.reshape(-1, x.shape[-1])
    if not use_triton(x2):
        return plain_mask(x2.shape, seed, p, x2.device).view(x.shape)
    M, K = x2.shape
    keep = torch.empty((M, K), device=x2.device, dtype=torch.int8)
    _mask_kernel[(triton.cdiv(M, BLOCK_M), triton.cdiv(K, BLOCK_K))](keep, seed, M, K, p, BLOCK_M, BLOCK_K)
    return keep.bool().view(x.shape)


# ---------------------------------------------------------------- the operator and its gradient


@torch.library.custom_op("ftpipe::dropout_lora_down", mutates_args=())
def dropout_lora_down(x: torch.Tensor, weight: torch.Tensor, seed: torch.Tensor, p: float) -> torch.Tensor:
    """(dropout_p(x) A^T) for x (..., in) and A (r, in), in x's dtype; the mask is drawn from `seed`."""
    x2 = x.reshape(-1, x.shape[-1]).contiguous()
    weight = weight.contiguous()
    forward = _triton_forward if use_triton(x2) else _plain_forward
    return forward(x2, weight, seed, p).view(*x.shape[:-1], weight.shape[0])


@dropout_lora_down.register_fake
def _(x, weight, seed, p):
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


@torch.library.custom_op("ftpipe::dropout_lora_down_backward", mutates_args=())
def dropout_lora_down_backward(
    grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, seed: torch.Tensor, p: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradients of dropout_lora_down for x and A, with the forward's mask drawn again from `seed`."""
    x2 = x.reshape(-1, x.shape[-1]).contiguous()
    grad2 = grad.reshape(-1, grad.shape[-1]).to(x2.dtype)
    backward = _triton_backward if use_triton(x2) else _plain_backward
    grad_x, grad_w = backward(grad2, x2, weight.contiguous(), seed, p)
    return grad_x.view(x.shape), grad_w


@dropout_lora_down_backward.register_fake
def _(grad, x, weight, seed, p):
    return x.new_empty(x.shape), weight.new_empty(weight.shape)


def _setup_context(ctx, inputs, output):
    x, weight, seed, p = inputs
    ctx.save_for_backward(x, weight, seed)
    ctx.p = p


def _backward(ctx, grad):
    x, weight, seed = ctx.saved_tensors
    grad_x, grad_w = dropout_lora_down_backward(grad, x, weight, seed, ctx.p)
    return grad_x, grad_w, None, None


dropout_lora_down.register_autograd(_backward, setup_context=_setup_context)


# ---------------------------------------------------------------- PEFT layers


def new_seed(device) -> torch.Tensor:
    """A fresh mask seed from torch's generator (so a seeded run draws the same masks), kept on the device."""
    return torch.randint(0, 2**31 - 1, (1,), device=device, dtype=torch.int64)


def dropout_lora_forward(self, x, *args, **kwargs):
    """A PEFT LoRA Linear's forward with lora_dropout + lora_A as one operator in training; PEFT's own path
    when the adapter is disabled or merged, in evaluation (no dropout there) and for extra arguments."""
    if self.disable_adapters or self.merged or args or kwargs or not self.training:
        return type(self).forward(self, x, *args, **kwargs)
    result = self.base_layer(x)
    result_dtype = result.dtype
    for name in self.active_adapters:
        if name not in self.lora_A:
            continue
        lora_a, lora_b = self.lora_A[name], self.lora_B[name]
        p = self.lora_dropout[name].p
        x_in = self._cast_input_dtype(x, lora_a.weight.dtype)
        h = dropout_lora_down(x_in, lora_a.weight, new_seed(x.device), p)
        result = result + lora_b(h) * self.scaling[name]
    return result.to(result_dtype)


def fusable(module) -> str | None:
    """Why `module` (a PEFT LoRA linear layer) cannot take the fused dropout path, or None when it can."""
    for name in module.active_adapters:
        dropout = module.lora_dropout[name]
        if not isinstance(dropout, torch.nn.Dropout) or not dropout.p:
            return "LoRA dropout is 0 (nothing to fuse; fused_lora applies there)"
        if name in getattr(module, "lora_variant", {}):
            return "a LoRA variant (DoRA) is on"
        if getattr(module, "use_dora", {}).get(name):
            return "DoRA is on"
    return None


def fuse_dropout_lora_layers(model) -> int:
    """Switch every LoRA Linear layer of a PEFT model to the fused dropout operator; returns the count."""
    from ftpipe.training.fused_lora import switch_lora_forward

    return switch_lora_forward(model, dropout_lora_forward, fusable, "fused dropout LoRA")
