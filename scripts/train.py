"""Stage 5, train: QLoRA fine-tuning of the base model on the packed blocks.

Read top to bottom: resolve the plan (the recipe, plus the speed levers on a GPU), load blocks and model,
build optimizer and schedule, resume from the last complete checkpoint made with the same configuration,
then the loop: accumulate, step, log, evaluate, save. The loss is summed over tokens and divided by the
number of labelled tokens of the whole optimizer step, so how a step is cut into micro-batches does not
change the gradient. Uses the GPU when there is one (bf16 compute, TF32 on), the CPU otherwise (float32).
"""

import argparse
import csv
import hashlib
import io
import json
import logging
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ftpipe import distributed, settings, stage  # noqa: E402
from ftpipe.checkpoints import load_adapter_weights, load_checkpoint, save_checkpoint  # noqa: E402
from ftpipe.dropout_lora import fuse_dropout_lora_layers  # noqa: E402
from ftpipe.fused_lora import fuse_lora_layers  # noqa: E402
from ftpipe.imports import imported_modules  # noqa: E402
from ftpipe.io import atomic_path, write_json, write_text  # noqa: E402
from ftpipe.modeling import (  # noqa: E402
    compute_dtype,
    dequantize_base,
    enable_tf32,
    load_base_model,
    load_tokenizer,
    lora_config,
    pick_device,
)

log = logging.getLogger("ftpipe.train")

IGNORE = -100
# Dense bf16 peak of known GPUs, for the MFU estimate (vendor datasheets).
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}

# ---------------------------------------------------------------- plan and data


def largest_divisor_at_most(number: int, limit: int) -> int:
    return max(d for d in range(1, min(number, max(limit, 1)) + 1) if number % d == 0)


def resolve_plan(args, device: torch.device, world: int = 1) -> dict:
    """The recipe as configured, with the speed levers applied where they are on (by default: on GPUs).

    The effective batch (micro-batch x accumulation) stays as configured: with several ranks, each does
    its share, micro-batch x accumulation x ranks = the configured effective batch."""
    # The levers' defaults are config.yaml's train.speed; a partial mapping (a benchmark's) changes only its keys.
    speed = {**settings.default("train.speed"), **(args.speed or {})}
    levers_on = device.type == "cuda" if speed["enabled"] == "auto" else bool(speed["enabled"])
    effective = args.micro_batch * args.grad_accum
    if effective % world:
        raise SystemExit(f"train: the effective batch {effective} does not divide among {world} processes")
    per_rank = effective // world
    micro = largest_divisor_at_most(
        per_rank, speed["micro_batch"] if levers_on and speed["micro_batch"] else args.micro_batch
    )
    plan = {"speed_levers": levers_on, "world_size": world, "micro_batch": micro, "grad_accum": per_rank // micro}
    # Every other key of train.speed is a lever. Off, a lever that is also a recipe setting (gradient
    # checkpointing, the fp32 upcast) takes the recipe's value; any other is off (false).
    for lever, value in speed.items():
        if lever not in ("enabled", "micro_batch"):
            plan[lever] = value if levers_on else getattr(args, lever, False)
    if not plan["compile"]:
        plan["compile_scope"] = None
    plan["compile_loss"] = plan["compile_loss"] and plan["compile_scope"] == "layers"  # "model" includes it
    plan["cuda_graphs"] = plan["cuda_graphs"] and plan["compile"] and device.type == "cuda"
    plan["fused_lora"] = fused_lora_plan(plan["fused_lora"], args, plan)
    plan["fused_dropout_lora"] = fused_dropout_lora_plan(plan["fused_dropout_lora"], args, device)
    return plan


def fused_dropout_lora_plan(wanted, args, device: torch.device) -> bool:
    """The fused dropout + LoRA down-projection replaces PEFT's dropout, so it needs LoRA dropout > 0. `auto`
    takes it on GPUs (Triton kernels); `true` also elsewhere (the plain path) and stops where impossible."""
    if wanted == "auto":
        return bool(args.lora["dropout"]) and device.type == "cuda"
    if not wanted:
        return False
    if not args.lora["dropout"]:
        raise SystemExit(
            "train: speed.fused_dropout_lora needs lora.dropout > 0 (with dropout 0 there is no mask to fuse, and "
            "fused_lora folds the LoRA into the weight instead). Set speed.fused_dropout_lora: false."
        )
    return True


def fused_lora_plan(wanted, args, plan: dict) -> bool:
    """The merged LoRA path computes x (W + s B A)^T: no dropout on the LoRA input, and W in 16/32 bits.
    `auto` takes it where possible; `true` stops with the reason where it is not."""
    four_bit = args.quantization.get("load_in_4bit") and not plan["dequantize_base"]
    if wanted == "auto":
        return not args.lora["dropout"] and not four_bit
    if not wanted:
        return False
    if args.lora["dropout"]:
        raise SystemExit(
            f"train: speed.fused_lora needs lora.dropout 0, not {args.lora['dropout']}: dropout applies to the "
            "LoRA input only, which a merged weight cannot do. Set lora.dropout: 0 or speed.fused_lora: auto."
        )
    if four_bit:
        raise SystemExit(
            "train: speed.fused_lora needs the base weights in 16 bits: set speed.dequantize_base: true "
            "(or speed.fused_lora: auto for the 4-bit low-memory setting)."
        )
    return True


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
    """True when position ids restart inside blocks; seed-packed blocks (0..max_len-1) need none passed,
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


def step_indices(step: int, steps_per_epoch: int, step_size: int, n_blocks: int, seed: int) -> torch.Tensor:
    """The block indices of one optimizer step: a seeded permutation per epoch, so a resumed run sees the same."""
    epoch, within = divmod(step, steps_per_epoch)
    order = torch.randperm(n_blocks, generator=torch.Generator().manual_seed(seed + epoch))
    return order[within * step_size : (within + 1) * step_size]


# ---------------------------------------------------------------- model


def build_model(args, plan: dict, device, dtype):
    """The base model (4-bit as configured, optionally dequantized once) with a fresh LoRA adapter."""
    from peft import get_peft_model, prepare_model_for_kbit_training
    from peft.tuners.tuners_utils import BaseTunerLayer

    model = load_base_model(args.model_dir, args.quantization, device, dtype)
    model.config.use_cache = False
    if plan["dequantize_base"]:
        log.info("dequantized %d 4-bit layers to %s", dequantize_base(model, dtype), dtype)
    if plan["upcast_frozen_fp32"]:
        # The seed notebook's prepare_model_for_kbit_training: frozen non-quantized weights go to float32.
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=plan["gradient_checkpointing"],
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    elif plan["gradient_checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model = get_peft_model(model, lora_config(args.lora))
    if plan["fused_lora"]:
        log.info("fused LoRA: %d layers compute x (W + s B A)^T in one matmul", fuse_lora_layers(model))
    if plan["fused_dropout_lora"]:
        log.info("fused dropout LoRA: %d layers draw the dropout mask inside lora_A", fuse_dropout_lora_layers(model))
    if plan["mixed_precision"]:
        # PEFT casts each LoRA input to the adapter's float32; under autocast that is a wasted round trip.
        for module in model.modules():
            if isinstance(module, BaseTunerLayer):
                module.cast_input_dtype_enabled = False
    log.info("trainable parameters: %d", sum(p.numel() for p in model.parameters() if p.requires_grad))
    return model


def compile_model(model, plan: dict):
    """torch.compile the whole model, or each decoder layer in place: the layers are alike, so one
    compilation serves all of them and the warm-up is a fraction of the whole model's. With CUDA graphs,
    each compiled graph is replayed instead of launching its kernels one by one from Python. With
    `compile_loss`, the cross-entropy is compiled too: transformers copies the logits to float32 first,
    the compiled loss reads them once."""
    scope, cuda_graphs = plan["compile_scope"], plan["cuda_graphs"]
    mode = "reduce-overhead" if cuda_graphs else None
    if plan["compile_loss"]:
        base = model.get_base_model()
        base.loss_function = torch.compile(base.loss_function, mode=mode)
    if cuda_graphs:
        # Each forward starts a new "step" for the graphs' memory: no output of the last one is read again.
        model.register_forward_pre_hook(lambda *_: torch.compiler.cudagraph_mark_step_begin())
    layer_classes = set(getattr(model.get_base_model(), "_no_split_modules", None) or [])
    layers = [module for module in model.modules() if type(module).__name__ in layer_classes]
    if scope == "model" or not layers:
        return torch.compile(model, mode=mode)
    for layer in layers:
        layer.compile(mode=mode)
    return model


def autocast(device, plan: dict):
    """bf16 autocast (fp16 where bf16 is missing) when mixed precision is on; the LoRA weights stay float32."""
    bf16 = device.type != "cuda" or torch.cuda.is_bf16_supported()
    return torch.autocast(device.type, dtype=torch.bfloat16 if bf16 else torch.float16, enabled=plan["mixed_precision"])


def run_fingerprint(args, packed_dir: str) -> str:
    """Identifies what a checkpoint was trained with: configuration, data and code."""
    # The process count is left out: a run resumed with another number of GPUs continues the same training.
    outputs = {"adapter", "train_log", "history", "timing", "checkpoint_dir"}
    ignored = outputs | {"threads", "keep_checkpoints", "processes"}
    values = {key: value for key, value in sorted(vars(args).items()) if key not in ignored}
    digest = hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode())
    code = [Path(__file__), *imported_modules(__file__)]  # the rule's code inputs: the same files
    for path in [*sorted(Path(packed_dir).glob("train/*.arrow")), *code]:
        digest.update(path.read_bytes())
    return digest.hexdigest()


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


# ---------------------------------------------------------------- the stage


def train(args) -> dict:
    """Load the packed blocks and run the training loop; with several processes asked for and not yet under
    torchrun, start them with torchrun first (each one comes back here as a rank)."""
    if args.processes > 1 and distributed.world_size() == 1:
        distributed.launch(args.processes, __file__, stage.to_argv(build_parser(), args))
        return {}
    return run_training(args, load_blocks(args.packed))


def run_training(args, blocks: dict) -> dict:
    from transformers import get_scheduler

    started = time.perf_counter()
    device = distributed.setup(pick_device())
    dtype = compute_dtype(device)
    enable_tf32()
    torch.manual_seed(args.seed)
    plan = resolve_plan(args, device, distributed.world_size())
    train_blocks, val_blocks = blocks["train"], blocks["validation"]
    eval_steps = validation_steps(args.eval_steps, val_blocks)
    if plan["data_on_device"]:
        train_blocks = {key: value.to(device) for key, value in train_blocks.items()}
    boundary = is_boundary_packed(train_blocks)
    model = build_model(args, plan, device, dtype)
    forward = compile_model(model, plan) if plan["compile"] else model
    amp = autocast(device, plan)

    step_size = plan["micro_batch"] * plan["grad_accum"] * plan["world_size"]  # blocks per step, all ranks
    n_blocks = len(train_blocks["input_ids"])
    steps_per_epoch = n_blocks // step_size
    if steps_per_epoch == 0:
        raise SystemExit(f"train: {n_blocks} packed blocks are fewer than one step ({step_size})")
    total_steps = args.max_steps if args.max_steps > 0 else steps_per_epoch * args.epochs
    save_steps = args.save_steps or max(100, steps_per_epoch // 20)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=args.learning_rate, weight_decay=args.weight_decay, fused=plan["fused_optimizer"]
    )
    scheduler = get_scheduler(
        args.lr_scheduler, optimizer, num_warmup_steps=args.warmup_steps, num_training_steps=total_steps
    )
    checkpoint_dir = Path(args.checkpoint_dir)
    fingerprint = run_fingerprint(args, args.packed)
    state = load_checkpoint(model, optimizer, scheduler, checkpoint_dir, fingerprint) or fresh_state(fingerprint)
    log.info(
        "device %s (%s), plan %s; %d blocks, %d steps/epoch, %d steps, checkpoint every %d",
        device,
        dtype,
        plan,
        n_blocks,
        steps_per_epoch,
        total_steps,
        save_steps,
    )

    model.train()
    step_seconds, wait_seconds, window_loss = [], 0.0, torch.zeros((), device=device)
    run_started = time.perf_counter()
    while state["step"] < total_steps and not state["stopped_early"]:
        t0 = time.perf_counter()
        indices = step_indices(state["step"], steps_per_epoch, step_size, n_blocks, args.seed)
        n_items = labelled_tokens(train_blocks["labels"][indices.to(train_blocks["labels"].device)])
        mine = distributed.shard(indices)
        step_blocks = {key: value[mine.to(value.device)] for key, value in train_blocks.items()}
        wait_seconds += time.perf_counter() - t0
        loss, grad_norm = train_step(
            forward,
            optimizer,
            scheduler,
            step_blocks,
            n_items,
            plan["micro_batch"],
            args.max_grad_norm,
            boundary,
            device,
            amp,
        )
        window_loss += loss
        state["step"] += 1
        state["window_steps"] += 1
        record = {}
        if state["step"] % args.logging_steps == 0 or state["step"] == total_steps:
            window = (state["window_loss"] + float(window_loss)) / state["window_steps"]  # syncs the device
            norm, learning_rate = float(grad_norm), scheduler.get_last_lr()[0]
            ensure_finite(window, norm, state["step"], learning_rate)
            record.update(loss=round(window, 6), learning_rate=learning_rate, grad_norm=round(norm, 6))
            state["window_loss"], state["window_steps"], window_loss = 0.0, 0, torch.zeros((), device=device)
        if device.type == "cuda" and (record or state["step"] % save_steps == 0):
            torch.cuda.synchronize(device)
        step_seconds.append(time.perf_counter() - t0)
        if eval_steps > 0 and (state["step"] % eval_steps == 0 or state["step"] == total_steps):
            record["eval_loss"] = round(
                evaluate(model, val_blocks, plan["micro_batch"], args.eval_max_blocks, boundary, device, amp), 6
            )
            track_best(state, record["eval_loss"], args, model)
        elapsed = state["elapsed_seconds"] + time.perf_counter() - run_started
        if record:
            record.update(
                step=state["step"],
                epoch=round(state["step"] / steps_per_epoch, 4),
                tokens_per_second=round(step_size * args.max_len / step_seconds[-1], 1),
                elapsed_seconds=round(elapsed, 2),
            )
            state["history"].append(record)
            log.info("%s", record)
        if state["step"] % save_steps == 0 and state["step"] < total_steps and distributed.is_main():
            pending = {**state, "window_loss": state["window_loss"] + float(window_loss), "elapsed_seconds": elapsed}
            ensure_finite(pending["window_loss"], float(grad_norm), state["step"], scheduler.get_last_lr()[0])
            save_checkpoint(model, optimizer, scheduler, pending, checkpoint_dir, args.keep_checkpoints)
    state["elapsed_seconds"] += time.perf_counter() - run_started
    distributed.barrier()
    if not distributed.is_main():
        distributed.teardown()
        return {}
    finish(args, model, state, checkpoint_dir)
    timing = timing_summary(
        step_seconds,
        wait_seconds,
        time.perf_counter() - started,
        step_size * args.max_len,
        flops_per_token(model, plan["gradient_checkpointing"]),
        device,
        dtype,
        state["step"],
    )
    timing["plan"] = plan
    write_json(args.timing, timing)
    log.info("timing: %s", timing)
    distributed.teardown()
    return timing


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


def finish(args, model, state: dict, checkpoint_dir: Path) -> None:
    """Write the final adapter (the best one if asked) with the tokenizer, the log CSV and the history JSON."""
    if args.load_best and (checkpoint_dir / "best").exists():
        load_adapter_weights(model, checkpoint_dir / "best")
    with atomic_path(args.adapter) as tmp:
        model.save_pretrained(tmp)
        load_tokenizer(args.model_dir).save_pretrained(tmp)
    write_train_log(args.train_log, state["history"])
    keys = ("history", "step", "best_eval_loss", "best_step", "stopped_early", "elapsed_seconds")
    write_json(args.history, {key: state[key] for key in keys})


# ---------------------------------------------------------------- outputs


def write_train_log(path: str, history: list[dict]) -> None:
    columns = [
        "step",
        "epoch",
        "loss",
        "eval_loss",
        "learning_rate",
        "grad_norm",
        "tokens_per_second",
        "elapsed_seconds",
    ]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(history)
    write_text(path, buffer.getvalue())


def flops_per_token(model, gradient_checkpointing: bool) -> float:
    """Training FLOPs per token with a frozen base: forward 2N, backward 2N (activations only), +2N recompute."""
    _, n_params = model.get_nb_trainable_parameters()  # counts 4-bit packed weights at their real size
    return float((6 if gradient_checkpointing else 4) * n_params)


def timing_summary(
    step_seconds: list[float],
    wait_seconds: float,
    total_seconds: float,
    tokens_per_step: int,
    flops: float,
    device,
    dtype,
    steps: int,
) -> dict:
    """Steady-state numbers leave out the first steps (allocation, compilation), reported apart as warm-up."""
    warmup = min(3, max(len(step_seconds) - 1, 0))
    steady = step_seconds[warmup:]
    median = statistics.median(steady) if steady else float("nan")
    tokens_per_second = tokens_per_step / median if steady else float("nan")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = next((value for key, value in PEAK_FLOPS.items() if key in name), None)
    return {
        "total_seconds": round(total_seconds, 3),
        "steps": steps,
        "steps_this_run": len(step_seconds),
        "warmup_steps": warmup,
        "warmup_seconds": round(sum(step_seconds[:warmup]), 3),
        "median_step_seconds": round(median, 4),
        "tokens_per_step": tokens_per_step,
        "tokens_per_second": round(tokens_per_second, 1),
        "flops_per_token": flops,
        "mfu": round(tokens_per_second * flops / peak, 4) if peak else None,
        "peak_gpu_memory_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
        "peak_rss_bytes": peak_rss_bytes(),
        "device": name,
        "precision": str(dtype).removeprefix("torch."),
        "tf32": torch.backends.cuda.matmul.allow_tf32 if device.type == "cuda" else None,
        "data_wait_fraction": round(wait_seconds / total_seconds, 4) if total_seconds else None,
    }


def peak_rss_bytes() -> int:
    """This process's peak resident memory (Linux reports kilobytes)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--packed", required=True, help="packed DatasetDict folder (train and validation)")
    add("--model-dir", required=True, help="base model folder")
    for name in ("adapter", "train-log", "history", "timing", "checkpoint-dir"):
        add(f"--{name}", required=True, help=f"output: {name.replace('-', ' ')}")
    settings.add_options(parser, "train")
    add(
        "--processes",
        type=int,
        default=1,
        help="data-parallel processes, one per GPU (the rule passes train.resources.gpu); above 1 the stage "
        "starts them with torchrun",
    )
    return parser


if __name__ == "__main__":
    stage.run(train, build_parser(), globals())
