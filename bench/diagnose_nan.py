"""Where does training the random-weight TinyLlama go NaN on the GPU? One forward/backward on 8 blocks in
several configurations; prints the loss and whether all gradients are finite."""

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from train_throughput import TARGETS, block_tensors, make_model  # noqa: E402


def check(name: str, model, ids: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    loss = model(input_ids=ids, labels=ids, use_cache=False).loss
    loss.backward()
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    n_grads = sum(p.grad is not None for p in model.parameters())
    print(f"{name}: loss {loss.item():.4f}, {n_grads} grads, non-finite in {len(bad)}: {bad[:3]}", flush=True)


def main() -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    model_dir = Path(tempfile.mkdtemp()) / "m"
    make_model(model_dir)
    ids = block_tensors()["train"]["input_ids"][:8].long().cuda()
    lora = LoraConfig(r=16, lora_alpha=16, lora_dropout=0.0, target_modules=TARGETS, task_type="CAUSAL_LM")
    for attn in ("sdpa", "eager"):
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, attn_implementation=attn).cuda()
        check(f"bf16 full model, {attn}", model, ids)
        check(f"bf16 + LoRA, {attn}", get_peft_model(model, lora), ids)
        del model
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).cuda()
    check("fp32 full model, sdpa", model, ids)
    del model
    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, quantization_config=quant, dtype=torch.bfloat16, device_map={"": 0}
    )
    check("4-bit + LoRA, sdpa", get_peft_model(model, lora), ids)


def stage_steps() -> None:
    """The training stage itself for 2 steps, varying one setting at a time."""
    from train_throughput import LEVERS, stage_variant

    model_dir = Path(tempfile.mkdtemp()) / "m"
    make_model(model_dir)
    blocks = block_tensors()
    plain = {**LEVERS, "upcast_frozen_fp32": False}
    for name, speed, extra in [
        ("micro 64, dropout .05", plain, {}),
        ("micro 8 (accumulate 8)", {**plain, "micro_batch": 8}, {}),
        ("dropout 0", plain, {"dropout": 0.0}),
        ("upcast fp32", {**plain, "upcast_frozen_fp32": True}, {}),
    ]:
        _, rows = stage_variant(model_dir, blocks, 2, speed, logging_steps=1, **extra)
        print(name, [(row["loss"], row["grad_norm"]) for row in rows], flush=True)


def isolate() -> None:
    """Our model setup on the first step's blocks: with and without num_items_in_batch, and the first 8 blocks."""
    import json

    from train import build_model, build_parser, resolve_plan, step_indices

    model_dir = Path(tempfile.mkdtemp()) / "m"
    make_model(model_dir)
    train = block_tensors()["train"]
    lora = {"r": 16, "alpha": 16, "dropout": 0.0, "target_modules": TARGETS}
    args = build_parser().parse_args(
        [
            "--packed",
            "x",
            "--model-dir",
            str(model_dir),
            "--adapter",
            "x",
            "--train-log",
            "x",
            "--history",
            "x",
            "--timing",
            "x",
            "--checkpoint-dir",
            "x",
            "--lora",
            json.dumps(lora),
            "--speed",
            json.dumps({"enabled": True, "compile": False, "dequantize_base": False}),
        ]
    )
    device = torch.device("cuda")
    model = build_model(args, resolve_plan(args, device), device, torch.bfloat16)
    first_step = step_indices(0, len(train["input_ids"]) // 64, 64, len(train["input_ids"]), 42)
    for name, rows in [
        ("first 8 blocks", torch.arange(8)),
        ("step-0 blocks[:8]", first_step[:8]),
        ("step-0 blocks (64)", first_step),
    ]:
        ids = train["input_ids"][rows].long().to(device)
        for n_items in (None, (ids[:, 1:] != -100).sum()):
            model.zero_grad(set_to_none=True)
            loss = model(input_ids=ids, labels=ids, num_items_in_batch=n_items, use_cache=False).loss
            loss.backward()
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            finite = all(torch.isfinite(g).all() for g in grads)
            print(f"{name}, num_items={n_items is not None}: loss {loss.item():.4f}, grads finite {finite}", flush=True)
        print("max id", int(ids.max()), "min id", int(ids.min()), flush=True)


if __name__ == "__main__":
    if "--isolate" in sys.argv:
        isolate()
        sys.exit()
    stage_steps() if "--stage" in sys.argv else main()
