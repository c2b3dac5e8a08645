"""What the training stage writes besides checkpoints: the final adapter, the log CSV, the history and the
timing summary (throughput, warm-up, MFU, memory)."""

from __future__ import annotations

import csv
import io
import statistics
import time
from pathlib import Path

import torch

from ftpipe.io import atomic_path, write_json, write_text
from ftpipe.modeling import load_tokenizer
from ftpipe.training.checkpoints import load_adapter_weights

# Dense bf16 peak of known GPUs, for the MFU estimate (vendor datasheets).
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def write_outputs(args, model, state: dict, checkpoint_dir: Path) -> None:
    """Write the final adapter (the best one if asked) with the tokenizer, the log CSV and the history JSON."""
    if args.load_best and (checkpoint_dir / "best").exists():
        load_adapter_weights(model, checkpoint_dir / "best")
    with atomic_path(args.adapter) as tmp:
        model.save_pretrained(tmp)
        load_tokenizer(args.model_dir).save_pretrained(tmp)
    write_train_log(args.train_log, state["history"])
    keys = ("history", "step", "best_eval_loss", "best_step", "stopped_early", "elapsed_seconds")
    write_json(args.history, {key: state[key] for key in keys})


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
    """Training FLOPs per token with a frozen base: forward 2N, backward 2N (activations only), +2N recompute.

    N counts the weights that multiply activations: an input embedding table is a lookup, counted only when it
    is tied to the output layer (Llama-3.2, Qwen, Gemma), else architectures with and without tied embeddings
    would not compare."""
    _, n_params = model.get_nb_trainable_parameters()  # counts 4-bit packed weights at their real size
    embedding, head = model.get_input_embeddings(), model.get_output_embeddings()
    if head is None or embedding.weight is not head.weight:
        n_params -= embedding.weight.numel()
    return float((6 if gradient_checkpointing else 4) * n_params)


WARMUP_STEPS = 3  # the first steps allocate and compile: timed one by one, reported apart


class StepClock:
    """Seconds of each optimizer step without a sync per step (the host queues steps ahead of the GPU): the
    steps between two syncs share the time between them; the first WARMUP_STEPS are synced one by one."""

    def __init__(self, device):
        self.device, self.seconds, self.pending, self.since = device, [], 0, time.perf_counter()

    def step_done(self, sync: bool) -> None:
        """One more step queued; `sync`: the loop reads a result now (logs, evaluates, saves), so time the window."""
        self.pending += 1
        if sync or len(self.seconds) + self.pending <= WARMUP_STEPS:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            window = time.perf_counter() - self.since
            self.seconds.extend([window / self.pending] * self.pending)
            self.pending = 0
        self.restart()

    def restart(self) -> None:
        """After work that is not a step (evaluation, checkpoint): the next window starts now."""
        self.since = time.perf_counter()


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
    warmup = min(WARMUP_STEPS, max(len(step_seconds) - 1, 0))
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
