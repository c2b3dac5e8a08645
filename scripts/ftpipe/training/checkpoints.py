"""Resumable training checkpoints: adapter, optimizer, scheduler, RNG state and the loop's own state.

Each checkpoint is written atomically (a folder renamed into place when complete), so a job killed while
saving leaves the previous checkpoint as the last complete one. A checkpoint carries the fingerprint of the
run that made it (configuration, data and code) and is resumed only by a run with the same fingerprint.
"""

import logging
import shutil
from pathlib import Path

import torch

from ftpipe.io import atomic_path, read_json, write_json

log = logging.getLogger("ftpipe.training.checkpoints")


def save_checkpoint(model, optimizer, scheduler, state: dict, checkpoint_dir: Path, keep: int) -> None:
    """Everything needed to continue exactly; only the last `keep` checkpoints are kept."""
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
    for old in sorted(checkpoint_dir.glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def load_adapter_weights(model, folder: Path) -> None:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(folder / "adapter_model.safetensors")))


def load_checkpoint(model, optimizer, scheduler, checkpoint_dir: Path, fingerprint: str) -> dict | None:
    """Restore the last complete checkpoint made with the same fingerprint; None to start fresh."""
    for candidate in sorted(checkpoint_dir.glob("step-*"), reverse=True):
        state_file = candidate / "state.json"
        if not state_file.exists():
            continue
        state = read_json(state_file)
        if state.get("fingerprint") != fingerprint:
            log.info("ignoring %s: made with another configuration, data or code", candidate)
            continue
        load_adapter_weights(model, candidate)
        optimizer.load_state_dict(torch.load(candidate / "optimizer.pt", weights_only=True))
        scheduler.load_state_dict(torch.load(candidate / "scheduler.pt", weights_only=True))
        rng = torch.load(candidate / "rng.pt", weights_only=True)
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        log.info("resumed from %s (step %d)", candidate, state["step"])
        return state
    return None
