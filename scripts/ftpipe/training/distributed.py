"""Data parallelism across the processes that torchrun starts (one per GPU; gloo on CPUs, for tests).

Each rank holds its own (4-bit) base and LoRA adapter, computes its share of every optimizer step and adds
its LoRA gradients to the others' before the step; rank 0 alone writes logs, checkpoints and outputs.
Without torchrun (WORLD_SIZE unset) every function here is a no-op.
"""

import os
import subprocess
import sys

import torch
import torch.distributed as dist


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def launch(nproc: int, script: str, argv: list[str]) -> None:
    """Run `script` again in `nproc` processes under torchrun on this node (what the train rule does when
    its job has several GPUs); returns when all are done, raises SystemExit if one failed."""
    if torch.cuda.is_available() and torch.cuda.device_count() < nproc:
        raise SystemExit(f"train: {nproc} processes asked for, but this job sees {torch.cuda.device_count()} GPU(s)")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", script]
    code = subprocess.run([*command, *argv]).returncode
    if code:
        raise SystemExit(f"train: torchrun with {nproc} processes failed (exit code {code}); see the log above")


def setup(device: torch.device) -> torch.device:
    """Join the process group; on GPUs each rank takes the GPU of its local rank."""
    if world_size() == 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def shard(indices: torch.Tensor) -> torch.Tensor:
    """This rank's share of a step's block indices."""
    return indices[rank() :: world_size()]


def sum_across_ranks(tensors: list[torch.Tensor]) -> None:
    """Add up tensors (gradients, losses) of all ranks in place, in one collective."""
    if world_size() == 1 or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for tensor in tensors:
        tensor.copy_(flat[offset : offset + tensor.numel()].view_as(tensor))
        offset += tensor.numel()


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
