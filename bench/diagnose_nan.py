"""Where does training the random-weight TinyLlama go NaN? Checks the created weights for non-finite or
large values, then runs the plain path (4-bit base) and the dequantized path step by step."""

import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import LEVERS, block_tensors, make_model, stage_variant  # noqa: E402

model_dir = Path(tempfile.mkdtemp()) / "m"
make_model(model_dir)
weights = {k: v.float() for k, v in load_file(str(model_dir / "model.safetensors")).items()}
print("non-finite:", [k for k, v in weights.items() if not torch.isfinite(v).all()], flush=True)
print("max |w| > 1:", {k: round(float(v.abs().max()), 3) for k, v in weights.items() if v.abs().max() > 1})
print("std:", {k: round(float(v.std()), 4) for k, v in list(weights.items())[:4]}, flush=True)
blocks = block_tensors()
for name, extra in [("4-bit", {}), ("dequantized", {"dequantize_base": True})]:
    _, rows = stage_variant(model_dir, blocks, 30, {**LEVERS, "upcast_frozen_fp32": False, **extra}, logging_steps=1)
    print(name, [(row["step"], row["loss"], row["grad_norm"]) for row in rows], flush=True)
