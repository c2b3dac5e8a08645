"""Training's parts that the stage's loop puts together: the packed blocks, the model with its adapter, one
optimizer step, validation, and the loop's resumable state (early stopping, divergence).

The loss is summed over tokens and divided by the number of labelled tokens of the whole optimizer step, so
how a step is cut into micro-batches (or among processes) does not change the gradient.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch

from ftpipe.io import atomic_path
from ftpipe.modeling import dequantize_base, load_base_model, lora_config
from ftpipe.training import distributed
from ftpipe.training.lora_targets import adapter_summary, resolve_targets
from ftpipe.training.speed_plan import apply_fp8_base, apply_fused_lora

log = logging.getLogger("ftpipe.train")

IGNORE = -100


# ---------------------------------------------------------------- data


def load_blocks(packed_dir: str) -> dict[str, dict[str, torch.Tensor]]:
    """The packed train and validation splits as int32 tensors."""
    import datasets

    packed = datasets.load_from_disk(packed_dir).with_format("torch")
    if len(packed["train"]) == 0:  # else an IndexError deep in the loop
        raise SystemExit(
            f"train: {packed_dir} holds no training blocks: every row was rejected, held out or dropped as too long; "
            "see prepare's counts.json and tokenize_stats.json"
        )
    columns = ("input_ids", "labels", "position_ids")
    rows_by_split = {split: packed[split][:] for split in ("train", "validation")}
    return {
        split: {key: torch.as_tensor(rows[key]).to(torch.int32) for key in columns}
        for split, rows in rows_by_split.items()
    }


def is_boundary_packed(blocks: dict[str, torch.Tensor]) -> bool:
    """True when position ids restart inside blocks; reference blocks (0..max_len-1) need none passed,
    which keeps attention on the plain causal (flash) path."""
    positions = blocks["position_ids"]
    return not torch.equal(
        positions, torch.arange(positions.shape[1], dtype=positions.dtype, device=positions.device).expand_as(positions)
    )


def model_inputs(blocks: dict, boundary: bool, device) -> dict:
    """Input ids and labels, plus the packed position ids (and no attention mask) for boundary packing:
    where position ids restart, the model attends only within each example."""
    keys = ("input_ids", "labels", "position_ids") if boundary else ("input_ids", "labels")
    return {key: blocks[key].to(device, non_blocking=True).long() for key in keys}


def labelled_tokens(labels: torch.Tensor) -> torch.Tensor:
    """Tokens that carry loss: the model predicts labels[:, 1:] from positions [:, :-1]."""
    return (labels[:, 1:] != IGNORE).sum()


class StepOrder:
    """The block indices of each optimizer step: a seeded permutation per epoch, so a resumed run sees the same.
    The permutation is drawn once per epoch and kept on `device` (the blocks'): copying a step's indices from
    pageable host memory would wait for the GPU to finish the previous step, every step."""

    def __init__(self, steps_per_epoch: int, step_size: int, n_blocks: int, seed: int, device=None):
        self.steps_per_epoch, self.step_size, self.n_blocks, self.seed = steps_per_epoch, step_size, n_blocks, seed
        self.device, self.epoch, self.order = device, None, None

    def __call__(self, step: int) -> torch.Tensor:
        epoch, within = divmod(step, self.steps_per_epoch)
        if epoch != self.epoch:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            self.epoch, self.order = epoch, torch.randperm(self.n_blocks, generator=generator).to(self.device)
        return self.order[within * self.step_size : (within + 1) * self.step_size]


# ---------------------------------------------------------------- model


def build_model(args, plan: dict, device, dtype) -> tuple:
    """The base model (4-bit as configured, optionally dequantized once) with a fresh LoRA adapter on the
    checked target modules; and what timing.json says about the adapter
    (ftpipe.training.lora_targets.adapter_summary)."""
    from peft import get_peft_model, prepare_model_for_kbit_training
    from peft.tuners.tuners_utils import BaseTunerLayer

    model = load_base_model(args.model_dir, args.quantization, device, dtype)
    model.config.use_cache = False
    if plan["dequantize_base"]:
        log.info("dequantized %d 4-bit layers to %s", dequantize_base(model, dtype), dtype)
    if plan["upcast_frozen_fp32"]:
        # The reference's prepare_model_for_kbit_training: frozen non-quantized weights go to float32.
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=plan["gradient_checkpointing"],
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    elif plan["gradient_checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    targets, warnings = resolve_targets(model, args.lora["target_modules"])
    model = get_peft_model(model, lora_config({**args.lora, "target_modules": targets}))
    apply_fp8_base(model, plan, args.speed, dtype)
    apply_fused_lora(model, plan, args.speed)
    if plan["mixed_precision"]:
        # PEFT casts each LoRA input to the adapter's float32; under autocast that is a wasted round trip.
        for module in model.modules():
            if isinstance(module, BaseTunerLayer):
                module.cast_input_dtype_enabled = False
    adapters = adapter_summary(model, warnings)
    log.info("LoRA adapters on %s", adapters)
    return model, adapters


# ---------------------------------------------------------------- one optimizer step and evaluation


def train_step(
    model,
    optimizer,
    scheduler,
    step_blocks: dict,
    n_items: torch.Tensor,
    micro_batch: int,
    max_grad_norm: float,
    boundary: bool,
    device,
    amp: torch.autocast,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward/backward over this process's micro-batches of one step, then one optimizer step.

    `n_items` counts the labelled tokens of the whole step (all processes), so every token weighs the same
    however the step is cut. Returns the step's loss per labelled token and the gradient norm, as tensors
    (reading them is a sync).
    """
    n_items = n_items.to(device).clamp(min=1)
    total = torch.zeros((), device=device)
    params = [p for p in model.parameters() if p.requires_grad]
    starts = range(0, len(step_blocks["input_ids"]), micro_batch)
    sums = None  # with several micro-batches: the step's gradients, summed apart from `.grad`
    for start in starts:
        micro = {key: value[start : start + micro_batch] for key, value in step_blocks.items()}
        with amp:
            loss = model(**model_inputs(micro, boundary, device), num_items_in_batch=n_items, use_cache=False).loss
        loss.backward()
        total += loss.detach()
        if len(starts) > 1:
            sums = take_gradients(params, sums)
    if sums is not None:
        for param, grad in zip(params, sums, strict=True):
            param.grad = grad
    distributed.sum_across_ranks([p.grad for p in params if p.grad is not None] + [total])
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm if max_grad_norm > 0 else math.inf)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return total, grad_norm


@torch.no_grad()
def take_gradients(params: list, sums: list | None) -> list:
    """Move this micro-batch's gradients into `sums` (a copy at the first one) and clear them. Under CUDA
    graphs the gradients live in the graphs' memory, which the next micro-batch's replay reuses: summed in
    place in `.grad`, the first micro-batch's would be overwritten."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    if sums is None:
        sums = [grad.clone() for grad in grads]
    else:
        torch._foreach_add_(sums, grads)
    for param in params:
        param.grad = None
    return sums


def validation_steps(eval_steps: int, val_blocks: dict) -> int:
    """`eval_steps`, or 0 with a warning when the validation split has no blocks: evaluating nothing would
    log a NaN validation loss at every evaluation and early stopping would never fire."""
    if eval_steps > 0 and len(val_blocks["input_ids"]) == 0:
        log.warning(
            "the validation split is empty: validation loss, early stopping and load_best are skipped "
            "(eval_steps %d); add rows or raise data.validation_fraction",
            eval_steps,
        )
        return 0
    return eval_steps


@torch.no_grad()
def evaluate(model, blocks: dict, micro_batch: int, max_blocks: int, boundary: bool, device, amp) -> float:
    """Mean loss per labelled token over (the first `max_blocks` of) the validation blocks."""
    model.eval()
    n_blocks = len(blocks["input_ids"]) if max_blocks <= 0 else min(max_blocks, len(blocks["input_ids"]))
    loss_sum, items = 0.0, 0
    for start in range(0, n_blocks, micro_batch):
        batch = {key: value[start : min(start + micro_batch, n_blocks)] for key, value in blocks.items()}
        n_items = int(labelled_tokens(batch["labels"]))
        if n_items:
            with amp:
                loss = model(**model_inputs(batch, boundary, device), num_items_in_batch=n_items, use_cache=False).loss
            loss_sum += float(loss) * n_items
            items += n_items
    model.train()
    return loss_sum / items if items else float("nan")


# ---------------------------------------------------------------- the loop's state


def ensure_finite(loss: float, grad_norm: float, step: int, learning_rate: float) -> None:
    """Stop before a diverged adapter or checkpoint is written (HF Trainer would train on with NaN)."""
    if not (math.isfinite(loss) and math.isfinite(grad_norm)):
        raise SystemExit(
            f"train: at step {step} the training loss is {loss} and the gradient norm {grad_norm} (learning rate "
            f"{learning_rate:g}); training diverged, so no adapter or checkpoint is written. Lower the learning "
            "rate, or check the base model's weights and the packed data."
        )


def fresh_state(fingerprint: str) -> dict:
    return {
        "step": 0,
        "history": [],
        "fingerprint": fingerprint,
        "window_loss": 0.0,
        "window_steps": 0,
        "best_eval_loss": None,
        "best_step": None,
        "evals_without_improvement": 0,
        "stopped_early": False,
        "elapsed_seconds": 0.0,
    }


def track_best(state: dict, eval_loss: float, args, model) -> None:
    """Early stopping bookkeeping; keeps a copy of the best adapter when `load_best` is on."""
    best = state["best_eval_loss"]
    if best is None or eval_loss < best - args.early_stopping_min_delta:
        state.update(best_eval_loss=eval_loss, best_step=state["step"], evals_without_improvement=0)
        if args.load_best and distributed.is_main():
            with atomic_path(Path(args.checkpoint_dir) / "best") as tmp:
                model.save_pretrained(tmp)
        return
    state["evals_without_improvement"] += 1
    if 0 < args.early_stopping_patience <= state["evals_without_improvement"]:
        state["stopped_early"] = True
        log.info("early stopping at step %d (best %.4f at step %s)", state["step"], best, state["best_step"])
