"""Stage 5, train: QLoRA fine-tuning of the base model on the packed blocks.

The story: resolve the plan (the recipe, plus the speed levers on a GPU: ftpipe/training/speed_plan.py), then `setup`
loads the model, builds optimizer and schedule and resumes from the last complete checkpoint made with the same
configuration, and returns a `Training`; `train_loop` runs it: accumulate, step, log, evaluate, save. Then the
adapter, logs and timing are written (ftpipe/training/outputs.py). The parts (blocks, model, one step, validation)
live in ftpipe/training/steps.py. Uses the GPU when there is one (bf16 compute, TF32 on), the CPU otherwise (float32).
"""

import argparse
import hashlib
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ftpipe import settings, stage  # noqa: E402
from ftpipe.imports import imported_modules  # noqa: E402
from ftpipe.io import write_json  # noqa: E402
from ftpipe.modeling import compute_dtype, enable_tf32, pick_device  # noqa: E402
from ftpipe.training import distributed  # noqa: E402
from ftpipe.training.checkpoints import load_checkpoint, save_checkpoint  # noqa: E402
from ftpipe.training.outputs import StepClock, flops_per_token, timing_summary, write_outputs  # noqa: E402
from ftpipe.training.speed_plan import autocast, compile_model, resolve_plan, start_compiler  # noqa: E402
from ftpipe.training.steps import (  # noqa: E402
    StepOrder,
    build_model,
    ensure_finite,
    evaluate,
    fresh_state,
    is_boundary_packed,
    labelled_tokens,
    load_blocks,
    track_best,
    train_step,
    validation_steps,
)

log = logging.getLogger("ftpipe.train")


def train(args) -> dict:
    """Load the packed blocks and train; with several processes asked for and not yet under torchrun, start
    them with torchrun first (each one comes back here as a rank)."""
    if args.processes > 1 and distributed.world_size() == 1:
        distributed.launch(args.processes, __file__, stage.to_argv(build_parser(), args))
        return {}
    return run_training(args, load_blocks(args.packed))


def run_training(args, blocks: dict) -> dict:
    """Set up, run the loop, write the adapter and logs (main process) and the timing; returns the timing."""
    started = time.perf_counter()
    device = distributed.setup(pick_device())
    enable_tf32()
    torch.manual_seed(args.seed)
    plan = resolve_plan(args, device, distributed.world_size())
    start_compiler(plan, device)
    training = setup(args, plan, blocks, device)
    setup_seconds = time.perf_counter() - started
    step_seconds, wait_seconds = train_loop(training)
    distributed.barrier()
    if not distributed.is_main():
        distributed.teardown()
        return {}
    save_started = time.perf_counter()
    write_outputs(args, training.model, training.state, training.checkpoint_dir)
    save_seconds = time.perf_counter() - save_started
    timing = timing_summary(
        step_seconds,
        wait_seconds,
        time.perf_counter() - started,
        training.step_size * args.max_len,
        flops_per_token(training.model, plan["gradient_checkpointing"]),
        device,
        training.dtype,
        training.state["step"],
    )
    # Where the stage's time went: setting up (model, adapter, levers, optimizer), the loop (its first steps
    # compile: warmup_seconds), writing the adapter and logs.
    timing["setup_seconds"], timing["save_seconds"] = round(setup_seconds, 3), round(save_seconds, 3)
    timing["plan"] = plan
    timing["adapters"] = training.adapters
    write_json(args.timing, timing)
    log.info("timing: %s", timing)
    distributed.teardown()
    return timing


@dataclass
class Training:
    """What the loop works on: the model (and its compiled forward), optimizer and schedule, the blocks, the
    step counts, and `state`, the part that a checkpoint saves and a resumed run continues from."""

    args: argparse.Namespace
    plan: dict
    device: torch.device
    dtype: torch.dtype
    model: torch.nn.Module
    forward: torch.nn.Module  # the model, or its compiled form
    amp: torch.autocast
    optimizer: torch.optim.Optimizer
    scheduler: object
    train_blocks: dict
    val_blocks: dict
    boundary: bool  # position ids restart inside blocks
    eval_steps: int
    step_size: int  # blocks per optimizer step, all ranks
    steps_per_epoch: int
    total_steps: int
    save_steps: int
    checkpoint_dir: Path
    state: dict
    adapters: dict  # trainable parameters, adapted module names, warnings about the target list


def setup(args, plan: dict, blocks: dict, device: torch.device) -> Training:
    """The model with its adapter (speed levers applied), optimizer, schedule and the resumed (or fresh) state."""
    from transformers import get_scheduler

    dtype = compute_dtype(device)
    train_blocks, val_blocks = blocks["train"], blocks["validation"]
    if plan["data_on_device"]:
        train_blocks = {key: value.to(device) for key, value in train_blocks.items()}
    model, adapters = build_model(args, plan, device, dtype)
    forward = compile_model(model, plan) if plan["compile"] else model
    step_size = plan["micro_batch"] * plan["grad_accum"] * plan["world_size"]
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
    return Training(
        args=args,
        plan=plan,
        device=device,
        dtype=dtype,
        model=model,
        forward=forward,
        amp=autocast(device, plan),
        optimizer=optimizer,
        scheduler=scheduler,
        train_blocks=train_blocks,
        val_blocks=val_blocks,
        boundary=is_boundary_packed(train_blocks),
        eval_steps=validation_steps(args.eval_steps, val_blocks),
        step_size=step_size,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        save_steps=save_steps,
        checkpoint_dir=checkpoint_dir,
        state=state,
        adapters=adapters,
    )


def train_loop(run: Training) -> tuple[list[float], float]:
    """Optimizer steps until the last one (or early stopping): log every `logging_steps`, evaluate every
    `eval_steps`, checkpoint every `save_steps`. Returns each step's seconds and the seconds spent on data."""
    args, state, device = run.args, run.state, run.device
    labels = run.train_blocks["labels"]
    order = StepOrder(run.steps_per_epoch, run.step_size, len(labels), args.seed, labels.device)
    run.model.train()
    clock, wait_seconds, window_loss = StepClock(device), 0.0, torch.zeros((), device=device)
    run_started = time.perf_counter()
    while state["step"] < run.total_steps and not state["stopped_early"]:
        t0 = time.perf_counter()
        indices = order(state["step"])
        n_items = labelled_tokens(labels[indices])
        mine = distributed.shard(indices)
        step_blocks = {key: value[mine] for key, value in run.train_blocks.items()}
        wait_seconds += time.perf_counter() - t0
        loss, grad_norm = train_step(
            run.forward,
            run.optimizer,
            run.scheduler,
            step_blocks,
            n_items,
            run.plan["micro_batch"],
            args.max_grad_norm,
            run.boundary,
            device,
            run.amp,
        )
        window_loss += loss
        state["step"] += 1
        state["window_steps"] += 1
        record = {}
        if state["step"] % args.logging_steps == 0 or state["step"] == run.total_steps:
            window = (state["window_loss"] + float(window_loss)) / state["window_steps"]  # syncs the device
            norm, learning_rate = float(grad_norm), run.scheduler.get_last_lr()[0]
            ensure_finite(window, norm, state["step"], learning_rate)
            record.update(loss=round(window, 6), learning_rate=learning_rate, grad_norm=round(norm, 6))
            state["window_loss"], state["window_steps"], window_loss = 0.0, 0, torch.zeros((), device=device)
        evaluates = run.eval_steps > 0 and (state["step"] % run.eval_steps == 0 or state["step"] == run.total_steps)
        saves = state["step"] % run.save_steps == 0
        clock.step_done(sync=bool(record) or evaluates or saves)
        if evaluates:
            micro = run.plan["micro_batch"]
            eval_loss = evaluate(run.model, run.val_blocks, micro, args.eval_max_blocks, run.boundary, device, run.amp)
            record["eval_loss"] = round(eval_loss, 6)
            track_best(state, record["eval_loss"], args, run.model)
        elapsed = state["elapsed_seconds"] + time.perf_counter() - run_started
        if record:
            record.update(
                step=state["step"],
                epoch=round(state["step"] / run.steps_per_epoch, 4),
                tokens_per_second=round(run.step_size * args.max_len / clock.seconds[-1], 1),
                elapsed_seconds=round(elapsed, 2),
            )
            state["history"].append(record)
            log.info("%s", record)
        if saves and state["step"] < run.total_steps and distributed.is_main():
            pending = {**state, "window_loss": state["window_loss"] + float(window_loss), "elapsed_seconds": elapsed}
            ensure_finite(pending["window_loss"], float(grad_norm), state["step"], run.scheduler.get_last_lr()[0])
            save_checkpoint(run.model, run.optimizer, run.scheduler, pending, run.checkpoint_dir, args.keep_checkpoints)
        if evaluates or saves:
            clock.restart()
    clock.flush()
    state["elapsed_seconds"] += time.perf_counter() - run_started
    return clock.seconds, wait_seconds


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
