"""Stage 5, train: QLoRA fine-tuning of the base model on the packed blocks.

Read top to bottom: load data and model, build optimizer and schedule, resume from the last complete
checkpoint if one matches this configuration, then the loop (accumulate, step, log, evaluate, save).
The loss is summed over tokens and divided by the number of labelled tokens of the whole optimizer step,
so micro-batch x accumulation does not change the gradient. Uses the GPU when there is one (bf16 compute,
TF32 on) and the CPU otherwise (float32 compute).
"""

import argparse
import csv
import hashlib
import io
import json
import logging
import math
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ftpipe import stage  # noqa: E402
from ftpipe.io import atomic_path, read_json, write_json, write_text  # noqa: E402
from ftpipe.modeling import compute_dtype, enable_tf32, load_base_model, load_tokenizer, lora_config, pick_device  # noqa: E402

log = logging.getLogger("ftpipe.train")

IGNORE = -100
# Dense bf16 peak of known GPUs, for the MFU estimate (vendor datasheets).
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


# ---------------------------------------------------------------- setup


def build_model(args, device, dtype):
    from peft import get_peft_model, prepare_model_for_kbit_training

    model = load_base_model(args.model_dir, args.quantization, device, dtype)
    model.config.use_cache = False
    if args.upcast_frozen_fp32:
        # The reference's prepare_model_for_kbit_training: frozen non-quantized weights go to float32.
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=args.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    elif args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model = get_peft_model(model, lora_config(args.lora))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("trainable parameters: %d", trainable)
    return model


def run_fingerprint(args, packed_dir: str) -> str:
    """Identifies what a checkpoint was trained with: a checkpoint resumes only a run with the same one."""
    settings = {
        key: value
        for key, value in sorted(vars(args).items())
        if key not in {"adapter", "train_log", "history", "timing", "checkpoint_dir", "threads", "keep_checkpoints"}
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    code = [Path(__file__), *sorted(Path(__file__).with_name("ftpipe").glob("*.py"))]
    for path in [*sorted(Path(packed_dir).glob("train/*.arrow")), *code]:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def step_indices(step: int, steps_per_epoch: int, step_size: int, n_blocks: int, seed: int) -> torch.Tensor:
    """The block indices of one optimizer step: a seeded permutation per epoch, so a resumed run sees the same."""
    epoch, within = divmod(step, steps_per_epoch)
    order = torch.randperm(n_blocks, generator=torch.Generator().manual_seed(seed + epoch))
    return order[within * step_size : (within + 1) * step_size]


def to_device(batch: dict, device) -> dict:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


def model_inputs(blocks: dict) -> dict:
    """The packed position ids and no attention mask: where position ids restart (boundary packing) the
    model attends only within each example; with 0..max_len-1 (reference packing) it is plain causal."""
    return {key: blocks[key].long() for key in ("input_ids", "labels", "position_ids")}


def labelled_tokens(labels: torch.Tensor) -> int:
    """Tokens that carry loss: the model predicts labels[:, 1:] from positions [:, :-1]."""
    return int((labels[:, 1:] != IGNORE).sum())


# ---------------------------------------------------------------- one optimizer step and evaluation


def train_step(
    model, optimizer, scheduler, step_blocks: dict, micro_batch: int, max_grad_norm: float, device
) -> tuple[float, float]:
    """Forward/backward over the micro-batches of one step, then one optimizer step. Returns (loss, grad norm)."""
    n_items = labelled_tokens(step_blocks["labels"])
    total = torch.zeros((), device=device)
    for start in range(0, len(step_blocks["input_ids"]), micro_batch):
        micro = {key: value[start : start + micro_batch] for key, value in step_blocks.items()}
        inputs = to_device(model_inputs(micro), device)
        loss = model(**inputs, num_items_in_batch=max(n_items, 1), use_cache=False).loss
        loss.backward()
        total += loss.detach()
    params = [p for p in model.parameters() if p.requires_grad]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm if max_grad_norm > 0 else math.inf)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return float(total), float(grad_norm)


@torch.no_grad()
def evaluate(model, data, micro_batch: int, max_blocks: int, device) -> float:
    """Mean loss per labelled token over (the first `max_blocks` of) the validation blocks."""
    model.eval()
    n_blocks = len(data) if max_blocks <= 0 else min(max_blocks, len(data))
    loss_sum, items = 0.0, 0
    for start in range(0, n_blocks, micro_batch):
        blocks = data[start : min(start + micro_batch, n_blocks)]
        n_items = labelled_tokens(blocks["labels"])
        if n_items == 0:
            continue
        inputs = to_device(model_inputs(blocks), device)
        loss_sum += float(model(**inputs, num_items_in_batch=n_items, use_cache=False).loss) * n_items
        items += n_items
    model.train()
    return loss_sum / items if items else float("nan")


# ---------------------------------------------------------------- checkpoints


def save_checkpoint(model, optimizer, scheduler, state: dict, checkpoint_dir: Path, keep: int) -> None:
    """Everything needed to continue exactly, written atomically; only the last `keep` are kept."""
    final = checkpoint_dir / f"step-{state['step']:07d}"
    with atomic_path(final) as tmp:
        model.save_pretrained(tmp)
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(rng, tmp / "rng.pt")
        write_json(tmp / "state.json", state)
    for old in sorted(checkpoint_dir.glob("step-*"))[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(model, optimizer, scheduler, checkpoint_dir: Path, fingerprint: str) -> dict | None:
    """Restore the last complete checkpoint made with the same fingerprint; None to start fresh."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    for candidate in sorted(checkpoint_dir.glob("step-*"), reverse=True):
        state_file = candidate / "state.json"
        if not state_file.exists():
            continue
        state = read_json(state_file)
        if state.get("fingerprint") != fingerprint:
            log.info("ignoring %s: made with another configuration or data", candidate)
            continue
        set_peft_model_state_dict(model, load_file(str(candidate / "adapter_model.safetensors")))
        optimizer.load_state_dict(torch.load(candidate / "optimizer.pt", weights_only=True))
        scheduler.load_state_dict(torch.load(candidate / "scheduler.pt", weights_only=True))
        rng = torch.load(candidate / "rng.pt", weights_only=True)
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        log.info("resumed from %s (step %d)", candidate, state["step"])
        return state
    return None


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


def timing_summary(
    step_seconds: list[float],
    wait_seconds: float,
    total_seconds: float,
    tokens_per_step: int,
    flops_per_token: float,
    device,
    precision: str,
    steps: int,
) -> dict:
    median = statistics.median(step_seconds) if step_seconds else float("nan")
    tokens_per_second = tokens_per_step / median if step_seconds else float("nan")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = next((flops for key, flops in PEAK_FLOPS.items() if key in name), None)
    return {
        "total_seconds": round(total_seconds, 3),
        "steps": steps,
        "steps_this_run": len(step_seconds),
        "median_step_seconds": round(median, 4),
        "tokens_per_step": tokens_per_step,
        "tokens_per_second": round(tokens_per_second, 1),
        "flops_per_token": flops_per_token,
        "mfu": round(tokens_per_second * flops_per_token / peak, 4) if peak else None,
        "peak_gpu_memory_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
        "device": name,
        "precision": precision,
        "data_wait_fraction": round(wait_seconds / total_seconds, 4) if total_seconds else None,
    }


# ---------------------------------------------------------------- the stage


def train(args) -> dict:
    import datasets
    from transformers import get_scheduler

    device, started = pick_device(), time.perf_counter()
    dtype = compute_dtype(device)
    enable_tf32()
    torch.manual_seed(args.seed)
    packed = datasets.load_from_disk(args.packed).with_format("torch")
    train_data, val_data = packed["train"], packed["validation"]
    model = build_model(args, device, dtype)
    tokenizer = load_tokenizer(args.model_dir)

    step_size = args.micro_batch * args.grad_accum
    steps_per_epoch = len(train_data) // step_size
    if steps_per_epoch == 0:
        raise SystemExit(f"train: {len(train_data)} packed blocks are fewer than one step ({step_size})")
    total_steps = args.max_steps if args.max_steps and args.max_steps > 0 else steps_per_epoch * args.epochs
    save_steps = args.save_steps or max(100, steps_per_epoch // 20)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=args.learning_rate, weight_decay=args.weight_decay
    )
    scheduler = get_scheduler(
        args.lr_scheduler, optimizer, num_warmup_steps=args.warmup_steps, num_training_steps=total_steps
    )
    checkpoint_dir = Path(args.checkpoint_dir)
    fingerprint = run_fingerprint(args, args.packed)
    state = load_checkpoint(model, optimizer, scheduler, checkpoint_dir, fingerprint) or {
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
    log.info(
        "device %s (%s); %d blocks, %d steps/epoch, %d steps, checkpoint every %d",
        device,
        dtype,
        len(train_data),
        steps_per_epoch,
        total_steps,
        save_steps,
    )

    model.train()
    step_seconds, wait_seconds = [], 0.0
    run_started = time.perf_counter()
    for step in range(state["step"], total_steps):
        if state["stopped_early"]:
            break
        t0 = time.perf_counter()
        indices = step_indices(step, steps_per_epoch, step_size, len(train_data), args.seed)
        step_blocks = train_data[indices.tolist()]
        wait_seconds += time.perf_counter() - t0
        loss, grad_norm = train_step(
            model, optimizer, scheduler, step_blocks, args.micro_batch, args.max_grad_norm, device
        )
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        step_seconds.append(time.perf_counter() - t0)
        state["step"] = step + 1
        state["window_loss"] += loss
        state["window_steps"] += 1
        record = {}
        if state["step"] % args.logging_steps == 0 or state["step"] == total_steps:
            record.update(
                loss=round(state["window_loss"] / state["window_steps"], 6),
                learning_rate=scheduler.get_last_lr()[0],
                grad_norm=round(grad_norm, 6),
                tokens_per_second=round(step_size * args.max_len / step_seconds[-1], 1),
            )
            state["window_loss"], state["window_steps"] = 0.0, 0
        if args.eval_steps > 0 and (state["step"] % args.eval_steps == 0 or state["step"] == total_steps):
            record["eval_loss"] = round(evaluate(model, val_data, args.micro_batch, args.eval_max_blocks, device), 6)
            track_best(state, record["eval_loss"], args, model)
        if record:
            elapsed = state["elapsed_seconds"] + time.perf_counter() - run_started
            record.update(
                step=state["step"], epoch=round(state["step"] / steps_per_epoch, 4), elapsed_seconds=round(elapsed, 2)
            )
            state["history"].append(record)
            log.info("%s", record)
        if state["step"] % save_steps == 0 and state["step"] < total_steps:
            state_to_save = {**state, "elapsed_seconds": state["elapsed_seconds"] + time.perf_counter() - run_started}
            save_checkpoint(model, optimizer, scheduler, state_to_save, checkpoint_dir, args.keep_checkpoints)
    state["elapsed_seconds"] += time.perf_counter() - run_started

    finish(args, model, tokenizer, state, checkpoint_dir)
    flops = flops_per_token(model, args.gradient_checkpointing)
    timing = timing_summary(
        step_seconds,
        wait_seconds,
        time.perf_counter() - started,
        step_size * args.max_len,
        flops,
        device,
        str(dtype).removeprefix("torch."),
        state["step"],
    )
    write_json(args.timing, timing)
    log.info("timing: %s", timing)
    return timing


def track_best(state: dict, eval_loss: float, args, model) -> None:
    """Early stopping bookkeeping; keeps a copy of the best adapter when `load_best` is on."""
    best = state["best_eval_loss"]
    if best is None or eval_loss < best - args.early_stopping_min_delta:
        state.update(best_eval_loss=eval_loss, best_step=state["step"], evals_without_improvement=0)
        if args.load_best:
            model.save_pretrained(Path(args.checkpoint_dir) / "best")
        return
    state["evals_without_improvement"] += 1
    if args.early_stopping_patience > 0 and state["evals_without_improvement"] >= args.early_stopping_patience:
        state["stopped_early"] = True
        log.info("early stopping at step %d (best %.4f at step %s)", state["step"], best, state["best_step"])


def finish(args, model, tokenizer, state: dict, checkpoint_dir: Path) -> None:
    """Write the final adapter (the best one if asked), the log CSV and the history JSON."""
    best_dir = checkpoint_dir / "best"
    if args.load_best and best_dir.exists():
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(model, load_file(str(best_dir / "adapter_model.safetensors")))
    with atomic_path(args.adapter) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    write_train_log(args.train_log, state["history"])
    write_json(
        args.history,
        {
            key: state[key]
            for key in ("history", "step", "best_eval_loss", "best_step", "stopped_early", "elapsed_seconds")
        },
    )


def flops_per_token(model, gradient_checkpointing: bool) -> float:
    """Training FLOPs per token with a frozen base: forward 2N, backward 2N (activations only), +2N recompute."""
    _, n_params = model.get_nb_trainable_parameters()  # counts 4-bit packed weights at their real size
    return float((6 if gradient_checkpointing else 4) * n_params)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--packed", required=True, help="packed DatasetDict folder (train and validation)")
    add("--model-dir", required=True, help="base model folder")
    for name in ("adapter", "train-log", "history", "timing", "checkpoint-dir"):
        add(f"--{name}", required=True, help=f"output: {name.replace('-', ' ')}")
    add(
        "--quantization",
        type=stage.json_arg,
        default={"load_in_4bit": True, "quant_type": "nf4", "double_quant": True},
        help="JSON",
    )
    add("--lora", type=stage.json_arg, required=True, help='JSON: {"r", "alpha", "dropout", "target_modules"}')
    add("--learning-rate", type=float, default=2e-4)
    add("--lr-scheduler", default="linear")
    add("--warmup-steps", type=int, default=0)
    add("--weight-decay", type=float, default=0.0)
    add("--max-grad-norm", type=float, default=1.0)
    add("--micro-batch", type=int, default=8)
    add("--grad-accum", type=int, default=8)
    add("--epochs", type=int, default=1)
    add("--max-steps", type=int, default=0, help="0: run the epochs")
    add("--max-len", type=int, default=128)
    add("--logging-steps", type=int, default=50)
    add("--save-steps", type=int, default=0, help="0: the reference's max(100, steps per epoch // 20)")
    add("--keep-checkpoints", type=int, default=3)
    add("--eval-steps", type=int, default=0, help="0: no validation (the reference)")
    add("--eval-max-blocks", type=int, default=0, help="0: the whole validation split")
    add("--early-stopping-patience", type=int, default=0, help="evaluations without improvement; 0: off")
    add("--early-stopping-min-delta", type=float, default=0.0)
    add("--load-best", action=argparse.BooleanOptionalAction, default=False)
    add("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=True)
    add(
        "--upcast-frozen-fp32",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="prepare_model_for_kbit_training, as the reference",
    )
    add("--seed", type=int, default=42)
    return parser


if __name__ == "__main__":
    stage.run(train, build_parser(), globals())
