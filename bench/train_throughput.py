"""Training throughput on one GPU: the reference recipe (HF Trainer) against the project's training stage.

Two steps:
  python bench/train_throughput.py prepare      # on any machine: synthetic catalog -> packed token ids
  python bench/train_throughput.py run          # on the GPU: all variants in one invocation

`prepare` runs the project's own prepare -> tokenize -> pack (seed packing, max_len 128) on generated
AmazonTitles-shaped rows with the SmolLM2 tokenizer, maps ids into TinyLlama's 32000-token vocabulary (the
model has random weights, so only the shape matters) and saves them with the tokenizer under bench/work/.
`run` builds a Llama of TinyLlama v1.1's shape (22 layers, hidden 2048) with random weights and measures,
on the same blocks:
  (a) the reference recipe exactly: HF Trainer, micro-batch 8 x accumulation 8, gradient checkpointing,
      prepare_model_for_kbit_training, NF4 double quant, LoRA r16/alpha16/dropout 0.05 on seven projections;
  (b) the project's training stage (scripts/train.py, run_training) with the same effective batch, LoRA and
      quantization settings, lever by lever, and variants with LoRA dropout 0 (fused LoRA); then 200-step
      loss parity of fast variants (`--parity-of`) against the plain path with the same dropout, and a
      low-memory setting. Writes bench/results/train_throughput.json.
A full run takes longer than one 10-minute device call: `--only` picks (b) variants, `--reference-steps 0`
and `--parity-steps 0` skip (a) and the parity runs, `--out` names the JSON (bench/README.md has the calls).
"""

import argparse
import contextlib
import gc
import itertools
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
WORK = ROOT / "bench" / "work"
sys.path.insert(0, str(ROOT / "bench"))
from model_zoo import TINYLLAMA_WIDTHS  # noqa: E402

# TinyLlama v1.1: its widths (model_zoo, shared with the architectures benchmark) and the rest of its config.
TINYLLAMA = dict(vocab_size=32000, **TINYLLAMA_WIDTHS, rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False)
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
MAX_LEN, EPOCH_STEPS = 128, 1603
CUDA = torch.cuda.is_available()  # without a GPU, `run --tiny` is a quick smoke test of this script on the CPU
OFF = {"enabled": False}
LEVERS = {
    "enabled": True,
    "micro_batch": 64,
    "gradient_checkpointing": False,
    "upcast_frozen_fp32": True,
    "dequantize_base": False,
    "mixed_precision": False,
    "compile": False,
    "data_on_device": False,
    "fused_optimizer": False,
    "fused_dropout_lora": False,
    "fp8_base": False,
}
PLAIN = {**LEVERS, "upcast_frozen_fp32": False}  # the loss-parity baseline: big micro-batch, no other lever
# Each (b) variant adds one lever to the one before it; b10 is the training stage's default on GPUs, b11 adds the
# FP8 base (speed.fp8_base, off by default). Variants that name fp8_base: false stay on the bf16 base whatever
# the default is.
BF16 = {"enabled": True, "fp8_base": False}
B5 = {**PLAIN, "dequantize_base": True, "data_on_device": True, "mixed_precision": True}
B8 = {**BF16, "compile_loss": False, "cuda_graphs": False}
NO_DROPOUT = {"dropout": 0.0}
VARIANTS = {
    "b0_stage_recipe_levers_off": (OFF, {}),
    "b1_micro_batch_64_no_checkpointing": (LEVERS, {}),
    "b2_plus_no_fp32_upcast": (PLAIN, {}),
    "b3_plus_dequantized_base": ({**PLAIN, "dequantize_base": True}, {}),
    "b4_plus_data_on_device": ({**PLAIN, "dequantize_base": True, "data_on_device": True}, {}),
    "b5_plus_bf16_autocast": (B5, {}),
    "b6_plus_compile_whole_model": ({**B5, "compile": True, "compile_scope": "model"}, {}),
    "b7_plus_compile_per_layer_instead": ({**B5, "compile": True, "compile_scope": "layers"}, {}),
    "b8_plus_fused_adamw": (B8, {}),
    "b9_plus_compiled_loss": ({**B8, "compile_loss": True}, {}),
    "b10_plus_cuda_graphs_bf16_base": (BF16, {}),
    "b11_plus_fp8_base": ({"enabled": True, "fp8_base": True}, {}),
    "fused_dropout_lora_bf16_base": ({**BF16, "fused_dropout_lora": True}, {}),
    "fused_dropout_lora_without_cuda_graphs": ({**BF16, "fused_dropout_lora": True, "cuda_graphs": False}, {}),
    "default_fast_path_evaluating_every_10_steps": ({"enabled": True}, {"eval_steps": 10}),
    "default_fast_path_micro_16_x_4": ({"enabled": True, "micro_batch": 16}, {}),
    "fast_path_without_autocast": ({**BF16, "mixed_precision": False}, {}),
    "fast_path_cuda_graphs_whole_model": ({**BF16, "compile_scope": "model"}, {}),
    # LoRA dropout 0 (the recipe's is 0.05): the merged LoRA path becomes possible (fused_lora: auto takes it on
    # the bf16 base; beside the FP8 base the LoRA stays apart).
    "lora_dropout_0_unfused": ({**BF16, "fused_lora": False}, NO_DROPOUT),
    "lora_dropout_0_fused_lora_no_cuda_graphs": ({**BF16, "cuda_graphs": False}, NO_DROPOUT),
    "lora_dropout_0_fused_lora_fastest_bf16": (BF16, NO_DROPOUT),
    "lora_dropout_0_fp8_base": ({"enabled": True, "fp8_base": True}, NO_DROPOUT),
    "low_memory_4bit_micro_16": ({"enabled": True, "micro_batch": 16, "dequantize_base": False}, {}),
}
DEFAULT_FAST = "b10_plus_cuda_graphs_bf16_base"  # what the stage runs on a GPU by default
# The summary's "ours": the default if it was measured, else the other recipe-exact fast variants.
SUMMARY_ORDER = (DEFAULT_FAST, "b11_plus_fp8_base", "default_fast_path_evaluating_every_10_steps")


# ---------------------------------------------------------------- prepare (CPU)


def prepare(rows: int) -> None:

    import datasets
    import yaml
    from base_model import embedded_gguf
    from inprocess import run_data_stages
    from make_catalog import generate_records, write_jsonl
    from transformers import AutoTokenizer

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        folder, filename = embedded_gguf("embedded:smollm2-135m")
        tokenizer_dir = WORK / "tokenizer"
        AutoTokenizer.from_pretrained(folder, gguf_file=filename).save_pretrained(tokenizer_dir)
        write_jsonl(tmp / "trn.json", generate_records(rows, seed=1))
        packed = run_data_stages(
            tmp / "trn.json",
            tmp,
            tokenizer_dir,
            config["prompt"]["instruction"],
            config["prompt"]["response"],
            max_len=MAX_LEN,
            mode="seed",
            completion_only=False,
            overlong="seed",
            validation_fraction=0.01,
            test_fraction=0.0,
        )
        ids = datasets.load_from_disk(str(packed))["train"].with_format("torch")[:]["input_ids"]
    ids = (ids % TINYLLAMA["vocab_size"]).to(torch.int16)  # < 32000 fits in int16; keeps the carried file small
    torch.save(ids, WORK / "blocks.pt")
    print(f"{len(ids)} blocks of {MAX_LEN} tokens -> {WORK / 'blocks.pt'}")


# ---------------------------------------------------------------- run (GPU)


def truncated_tokenizer(source: Path, out: Path, vocab_size: int) -> Path:
    """A byte-level BPE tokenizer (tokenizer.json) restricted to its first `vocab_size` ids: the vocabulary
    entries below it and the merges whose parts and result are among them. BPE merges build each token from
    two earlier ones, so every kept token can still be made and every text still encodes. With the SmolLM2
    tokenizer and 32,000 ids: a tokenizer of TinyLlama's vocabulary size, consistent with the model's shapes."""
    data = json.loads((source / "tokenizer.json").read_text())
    model = data["model"]
    if model["type"] != "BPE":
        raise SystemExit(f"{source} is a {model['type']} tokenizer, not BPE")
    vocab = {token: index for token, index in model["vocab"].items() if index < vocab_size}
    merges = []
    for merge in model["merges"]:
        left, right = merge if isinstance(merge, list) else merge.split(" ", 1)
        if left in vocab and right in vocab and left + right in vocab:
            merges.append(merge)
    above = [token["content"] for token in data["added_tokens"] if token["id"] >= vocab_size]
    if above:
        raise SystemExit(f"{source}: special tokens at or above id {vocab_size}: {above}")
    model["vocab"], model["merges"] = vocab, merges
    out.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.name != "tokenizer.json" and path.is_file():
            shutil.copy(path, out / path.name)
    (out / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False))
    return out


def make_model(out: Path) -> None:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer_dir = truncated_tokenizer(WORK / "tokenizer", out.with_name("tokenizer"), TINYLLAMA["vocab_size"])
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    # No pad token: with one, its embedding row is initialized to zeros, and a block that starts with it (the
    # EOS, id 2, starts 136 blocks) keeps an all-zero hidden state at position 0 through every layer, where
    # each RMSNorm multiplies the gradient by 1/sqrt(eps) ~ 316: after 22 layers it overflows to inf and the
    # gradients turn NaN. A trained model has no all-zero embedding rows.
    config = LlamaConfig(**TINYLLAMA, bos_token_id=1, eos_token_id=2, pad_token_id=None)
    torch.manual_seed(0)
    with torch.device("cuda" if CUDA else "cpu"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    del model
    fresh_gpu()


def block_tensors(n_validation: int = 64) -> dict:
    ids = torch.load(WORK / "blocks.pt", weights_only=True).to(torch.int32)
    positions = torch.arange(MAX_LEN, dtype=torch.int32).expand_as(ids)
    train = {"input_ids": ids[n_validation:], "labels": ids[n_validation:], "position_ids": positions[n_validation:]}
    val = {"input_ids": ids[:n_validation], "labels": ids[:n_validation], "position_ids": positions[:n_validation]}
    return {"train": train, "validation": val}


def fresh_gpu() -> None:
    gc.collect()
    torch._dynamo.reset()
    if CUDA:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_bytes() -> int:
    return torch.cuda.max_memory_allocated() if CUDA else 0


def summary(step_seconds: list[float], peak: int, warmup: int = 3) -> dict:
    warmup = min(warmup, len(step_seconds) - 1)
    median = statistics.median(step_seconds[warmup:])
    warm = sum(step_seconds[:warmup])
    return {
        "steps": len(step_seconds),
        "warmup_seconds": round(warm, 2),
        "median_step_seconds": round(median, 4),
        "tokens_per_second": round(64 * MAX_LEN / median, 1),
        "peak_gpu_memory_gib": round(peak / 2**30, 2),
        "epoch_estimate_minutes": round((warm + (EPOCH_STEPS - warmup) * median) / 60, 1),
    }


def nf4():
    """The recipe's quantization: 4-bit NF4, double quant, bf16 compute."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def step_timer():
    """A Trainer callback that times each optimizer step (synchronized) into `.times`."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times = []

        def on_step_begin(self, args, state, control, **kwargs):
            if CUDA:
                torch.cuda.synchronize()
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if CUDA:
                torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self.start)

    return StepTimer()


def reference_trainer(model_dir: Path, blocks: dict, steps: int) -> dict:
    """(a) The reference notebook's recipe through transformers.Trainer."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments, default_data_collator

    fresh_gpu()
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, quantization_config=nf4(), dtype=torch.bfloat16, device_map={"": 0 if CUDA else "cpu"}
    )
    model = prepare_model_for_kbit_training(
        model, use_gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": False}
    )
    model = get_peft_model(
        model,
        LoraConfig(r=16, lora_alpha=16, lora_dropout=0.05, target_modules=TARGETS, bias="none", task_type="CAUSAL_LM"),
    )
    ids = blocks["train"]["input_ids"][: steps * 64].long()

    class Blocks(torch.utils.data.Dataset):
        def __len__(self):
            return len(ids)

        def __getitem__(self, i):
            return {"input_ids": ids[i], "attention_mask": torch.ones_like(ids[i]), "labels": ids[i]}

    timer = step_timer()
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=8,
            gradient_accumulation_steps=8,
            gradient_checkpointing=True,
            gradient_checkpointing_kwargs={"use_reentrant": False},
            bf16=CUDA,
            tf32=CUDA,
            use_cpu=not CUDA,
            learning_rate=2e-4,
            lr_scheduler_type="linear",
            max_steps=steps,
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            optim="adamw_torch",
            seed=42,
            dataloader_num_workers=2,
        )
        Trainer(
            model=model, args=args, train_dataset=Blocks(), data_collator=default_data_collator, callbacks=[timer]
        ).train()
    result = summary(timer.times, peak_bytes())
    del model
    return result


# ---------------------------------------------------------------- peers: off-the-shelf ways to train the recipe

PEERS = ("trl_sft_padding_free", "trl_sft_blocks", "unsloth")
LORA = dict(r=16, lora_alpha=16, lora_dropout=0.05, target_modules=TARGETS, bias="none")


def sft_config(out: str, steps: int, padding_free: bool):
    """TRL's SFTConfig for the recipe: effective batch 64 as one micro-batch of 64 (what fits an 80+ GB card
    without checkpointing, as the stage's default), lr 2e-4 linear, bf16, blocks of 128 tokens. Padding-free
    packing (BFD, the sequences of a micro-batch flattened into one with restarting position ids) or the
    blocks as they are (each already 128 tokens: no padding either way)."""
    from trl import SFTConfig

    return SFTConfig(
        output_dir=out,
        per_device_train_batch_size=64,
        gradient_accumulation_steps=1,
        gradient_checkpointing=False,
        bf16=CUDA,
        tf32=CUDA,
        use_cpu=not CUDA,
        learning_rate=2e-4,
        lr_scheduler_type="linear",
        max_steps=steps,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        optim="adamw_torch",
        seed=42,
        max_length=MAX_LEN,
        packing=padding_free,
        padding_free=padding_free,
        completion_only_loss=False,  # the recipe's loss is on every token (seed packing)
    )


def sft_dataset(blocks: dict, steps: int):
    import datasets

    ids = blocks["train"]["input_ids"][: steps * 64].long()
    return datasets.Dataset.from_dict({"input_ids": ids.tolist()})  # tokenized: TRL skips its tokenization


def sft_run(trainer) -> dict:
    timer = step_timer()
    trainer.add_callback(timer)
    trainer.train()
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    return {**summary(timer.times, peak_bytes()), "loss": losses}


def trl_peer(model_dir: Path, blocks: dict, steps: int, padding_free: bool) -> dict:
    """TRL's SFTTrainer on the same blocks: the 4-bit NF4 model, the recipe's LoRA as a peft_config (TRL
    prepares the 4-bit model for k-bit training, as the reference does)."""
    import trl
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    fresh_gpu()
    model = AutoModelForCausalLM.from_pretrained(
        model_dir,
        quantization_config=nf4(),
        dtype=torch.bfloat16,
        device_map={"": 0 if CUDA else "cpu"},
        attn_implementation="sdpa",
    )
    with tempfile.TemporaryDirectory() as out:
        trainer = trl.SFTTrainer(
            model=model,
            args=sft_config(out, steps, padding_free),
            train_dataset=sft_dataset(blocks, steps),
            peft_config=LoraConfig(**LORA, task_type="CAUSAL_LM"),
            processing_class=AutoTokenizer.from_pretrained(model_dir),
        )
        result = {**sft_run(trainer), "trl": trl.__version__, "padding_free": padding_free}
    del model, trainer
    return result


def unsloth_peer(model_dir: Path, blocks: dict, steps: int) -> dict:
    """Unsloth: FastLanguageModel from the local folder in 4 bits (NF4, double quant), the recipe's LoRA
    (dropout 0.05 included) through get_peft_model, trained by TRL's SFTTrainer as Unsloth patches it, on
    the blocks as they are. Runs in its own process (`peer unsloth`): importing unsloth patches transformers,
    PEFT and TRL for the whole process."""
    import unsloth  # first: it patches what is imported after it

    # isort: split
    import trl
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=str(model_dir),
        max_seq_length=MAX_LEN,
        dtype=torch.bfloat16,
        load_in_4bit=True,
        local_files_only=True,
        use_exact_model_name=True,
    )
    model = FastLanguageModel.get_peft_model(model, **LORA, use_gradient_checkpointing=False, random_state=42)
    with tempfile.TemporaryDirectory() as out:
        trainer = trl.SFTTrainer(
            model=model,
            args=sft_config(out, steps, padding_free=False),
            train_dataset=sft_dataset(blocks, steps),
            processing_class=tokenizer,
        )
        result = sft_run(trainer)
    quant = getattr(model.config, "quantization_config", None)
    return {**result, "unsloth": unsloth.__version__, "trl": trl.__version__, "quantization": str(quant)}


def peer_in_process(name: str, model_dir: Path, blocks: dict, steps: int) -> dict:
    if name == "unsloth":
        return unsloth_peer(model_dir, blocks, steps)
    return trl_peer(model_dir, blocks, steps, padding_free=name == "trl_sft_padding_free")


def peer_in_subprocess(name: str, model_dir: Path, steps: int, site: str | None, timeout: float) -> dict:
    """A peer in a process of its own (with `site` first on PYTHONPATH, offline): its result, or why it failed
    (the exception or the process's last output)."""
    import subprocess

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env["UNSLOTH_DISABLE_STATISTICS"] = "1"
    if site:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [site, env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, __file__, "peer", name, "--model-dir", str(model_dir), "--steps", str(steps)]
        command += ["--json", str(out)]
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as err:
            return {"error": f"timed out after {timeout} s", "output_tail": str(err.stdout or "")[-3000:]}
        if out.exists():
            return json.loads(out.read_text())
        return {"error": f"exit {done.returncode}", "output_tail": (done.stdout + done.stderr)[-4000:]}


def peer_main(args) -> None:
    """`peer NAME`: run one peer in this process and write its result (or its exception) to --json."""
    import traceback

    try:
        result = peer_in_process(args.name, Path(args.model_dir), block_tensors(), args.steps)
    except BaseException as err:  # noqa: BLE001  (recorded, the parent run goes on)
        result = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-4000:]}
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


def median_cuda_ms(fn, repeats: int) -> float | None:
    """Median milliseconds of `fn` on the GPU over `repeats` calls after 3 warm-up calls (None on a CPU)."""
    if not CUDA:
        return None
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return round(statistics.median(times), 4)


def dropout_lora_kernel_check(repeats: int = 50) -> dict:
    """The fused dropout LoRA operator at the recipe's shapes (8192 tokens, bf16, r 16, p 0.05): its output and
    gradients against dropout-then-matmul with the same mask (relative error), and the median milliseconds of
    forward + backward against PEFT's way (nn.Dropout, then a bf16 matmul), eager and compiled."""
    from ftpipe.training.dropout_lora import dropout_lora_down, dropout_mask, use_triton

    device = torch.device("cuda" if CUDA else "cpu")
    tokens = 64 * MAX_LEN if CUDA else 256
    p, result = 0.05, {"path": "triton" if use_triton(torch.empty(1, device=device)) else "plain"}

    for columns in (TINYLLAMA["hidden_size"], TINYLLAMA["intermediate_size"]):
        x = torch.randn(tokens, columns, device=device, dtype=torch.bfloat16, requires_grad=True)
        weight = (torch.randn(16, columns, device=device) / columns**0.5).requires_grad_()
        grad = torch.randn(tokens, 16, device=device, dtype=torch.bfloat16)
        seed = torch.tensor([1234], device=device, dtype=torch.int64)
        keep = dropout_mask(x.detach(), seed, p)
        h = dropout_lora_down(x, weight, seed, p)
        dx, dw = torch.autograd.grad(h, (x, weight), grad)
        x64, w64 = x.detach().double().requires_grad_(), weight.detach().double().requires_grad_()
        ref = (x64 * keep / (1 - p)) @ w64.t()
        rdx, rdw = torch.autograd.grad(ref, (x64, w64), grad.double())

        def error(a, b):
            return float((a.double() - b).norm() / b.norm())

        dropout = torch.nn.Dropout(p)

        def peft_way(x=x, weight=weight, grad=grad, dropout=dropout):
            out = torch.nn.functional.linear(dropout(x), weight.to(torch.bfloat16))
            torch.autograd.grad(out, (x, weight), grad)

        def fused_way(x=x, weight=weight, grad=grad):
            out = dropout_lora_down(x, weight, torch.randint(0, 2**31 - 1, (1,), device=device), p)
            torch.autograd.grad(out, (x, weight), grad)

        compiled_peft = torch.compile(peft_way) if CUDA else None
        result[f"in_{columns}"] = {
            "keep_fraction": round(float(keep.float().mean()), 5),
            "relative_error_h": error(h, ref),
            "relative_error_dx": error(dx, rdx),
            "relative_error_dA": error(dw, rdw),
            "ms_peft_eager": median_cuda_ms(peft_way, repeats),
            "ms_peft_compiled": median_cuda_ms(compiled_peft, repeats) if compiled_peft else None,
            "ms_fused": median_cuda_ms(fused_way, repeats),
        }
    return result


def fp8_matmul_check(repeats: int = 50) -> dict:
    """The FP8 base's matmul at the recipe's shapes (8192 tokens; gate/up 2048 -> 5632, down 5632 -> 2048, q/o
    2048 -> 2048, k/v 2048 -> 256): its output and input gradient against float32 from the same dequantized
    e4m3 operands (the CPU path the tests check: only rounding of the output may differ), against the bf16
    product (what FP8 costs in precision), and median milliseconds of forward + input gradient, FP8 and bf16,
    both compiled."""
    from ftpipe.training.fp8_base import Fp8Linear, dequantize_rows, quantize_rows

    device = torch.device("cuda" if CUDA else "cpu")
    tokens = 64 * MAX_LEN if CUDA else 256
    result = {}

    def error(a, b):
        return float((a.float() - b.float()).norm() / b.float().norm())

    for inputs, outputs in ((2048, 5632), (5632, 2048), (2048, 2048), (2048, 256)):
        linear = torch.nn.Linear(inputs, outputs, bias=False, device=device, dtype=torch.bfloat16)
        fp8 = Fp8Linear(linear, torch.bfloat16)
        x = torch.randn(tokens, inputs, device=device, dtype=torch.bfloat16, requires_grad=True)
        grad = torch.randn(tokens, outputs, device=device, dtype=torch.bfloat16)
        y = fp8(x)
        (dx,) = torch.autograd.grad(y, x, grad)
        xq, xs = quantize_rows(x.detach())
        gq, gs = quantize_rows(grad)
        y_same = dequantize_rows(xq, xs) @ dequantize_rows(fp8.weight, fp8.weight_scale).t()
        dx_same = dequantize_rows(gq, gs) @ dequantize_rows(fp8.weight_t, fp8.weight_t_scale).t()
        y_bf16 = linear(x)
        (dx_bf16,) = torch.autograd.grad(y_bf16, x, grad)

        def fp8_way(x=x, grad=grad, fp8=fp8):
            torch.autograd.grad(fp8(x), x, grad)

        def bf16_way(x=x, grad=grad, linear=linear):
            torch.autograd.grad(linear(x), x, grad)

        result[f"{inputs}_to_{outputs}"] = {
            "relative_error_y_vs_same_operands_fp32": error(y, y_same),
            "relative_error_dx_vs_same_operands_fp32": error(dx, dx_same),
            "relative_error_y_vs_bf16": error(y, y_bf16),
            "relative_error_dx_vs_bf16": error(dx, dx_bf16),
            "ms_fp8_compiled": median_cuda_ms(torch.compile(fp8_way), repeats) if CUDA else None,
            "ms_bf16_compiled": median_cuda_ms(torch.compile(bf16_way), repeats) if CUDA else None,
        }
    return result


def stage_args(
    model_dir: Path,
    out: Path,
    steps: int,
    speed: dict,
    dropout: float = 0.05,
    micro_batch: int = 8,
    grad_accum: int = 8,
    logging_steps: int = 10,
    eval_steps: int = 0,
    learning_rate: float = 2e-4,
):
    """The training stage's arguments for the reference recipe with the given speed levers, outputs in `out`."""
    from train import build_parser

    lora = {"r": 16, "alpha": 16, "dropout": dropout, "target_modules": TARGETS}
    outputs = {"adapter": "adapter", "train-log": "log.csv", "history": "history.json", "timing": "timing.json"}
    argv = ["--packed", str(out / "none"), "--model-dir", str(model_dir), "--checkpoint-dir", str(out / "ckpt")]
    argv += [item for name, file in outputs.items() for item in (f"--{name}", str(out / file))]
    argv += ["--lora", json.dumps(lora), "--speed", json.dumps(speed), "--save-steps", "100000"]
    argv += ["--micro-batch", str(micro_batch), "--grad-accum", str(grad_accum)]
    # The seed recipe's (presets/tinyllama.yaml) where it differs from config.yaml's defaults (and its learning
    # rate 2e-4, the default of `learning_rate` here).
    argv += ["--gradient-checkpointing", "--upcast-frozen-fp32"]
    argv += ["--max-steps", str(steps), "--logging-steps", str(logging_steps), "--eval-steps", str(eval_steps)]
    argv += ["--learning-rate", str(learning_rate)]
    return build_parser().parse_args(argv)


def stage_variant(
    model_dir: Path, blocks: dict, steps: int, speed: dict, logging_steps: int = 10, **recipe
) -> tuple[dict, list[float]]:
    """(b) The project's training stage function with the reference recipe and the given speed levers."""
    from train import run_training

    fresh_gpu()
    with tempfile.TemporaryDirectory() as out_name:
        out = Path(out_name)
        timing = run_training(stage_args(model_dir, out, steps, speed, logging_steps=logging_steps, **recipe), blocks)
        history = json.loads((out / "history.json").read_text())["history"]
    logged = [row for row in history if "loss" in row]
    return {**variant_summary(timing), "loss": [row["loss"] for row in logged]}, logged


def variant_summary(timing: dict) -> dict:
    keys = ("median_step_seconds", "tokens_per_second", "warmup_seconds", "total_seconds", "mfu", "plan")
    result = {key: timing[key] for key in keys}
    result["peak_gpu_memory_gib"] = round((timing["peak_gpu_memory_bytes"] or 0) / 2**30, 2)
    result["epoch_estimate_minutes"] = round(
        (timing["warmup_seconds"] + (EPOCH_STEPS - timing["warmup_steps"]) * timing["median_step_seconds"]) / 60, 1
    )
    return result


def loss_parity(model_dir: Path, blocks: dict, steps: int, fast_variant: str, baseline: str = "plain") -> dict:
    """A fast variant's per-step loss against a baseline's (the plain path, or another variant such as the bf16
    base; same LoRA dropout), on the same data and seed, up to the first non-finite loss of either (random
    weights can diverge; the comparison stops there)."""
    fast_speed, recipe = VARIANTS[fast_variant]
    base_speed = PLAIN if baseline == "plain" else VARIANTS[baseline][0]
    plain, plain_rows = stage_variant(model_dir, blocks, steps, base_speed, logging_steps=1, **recipe)
    fast, fast_rows = stage_variant(model_dir, blocks, steps, fast_speed, logging_steps=1, **recipe)
    pairs = [(p["loss"], f["loss"]) for p, f in zip(plain_rows, fast_rows, strict=True)]
    finite = [(p, f) for p, f in itertools.takewhile(lambda pair: all(map(math.isfinite, pair)), pairs)]
    differences = [abs(f - p) / p for p, f in finite]
    return {
        "fast_variant": fast_variant,
        "baseline": baseline,
        "steps": steps,
        "finite_steps_compared": len(finite),
        "max_relative_difference": round(max(differences), 6) if finite else None,
        "step_of_max_difference": differences.index(max(differences)) + 1 if finite else None,
        "final_relative_difference": round(differences[-1], 6) if finite else None,
        "plain_loss": [p for p, _ in pairs],
        "fast_loss": [f for _, f in pairs],
        "plain_grad_norm": [row["grad_norm"] for row in plain_rows],
        "plain_run": plain,
        "fast_run": fast,
    }


def parity_key(spec: str) -> tuple[str, str, str]:
    """`VARIANT` (against the plain path) or `VARIANT:BASELINE`: the result's key, the variant, the baseline."""
    fast, _, baseline = spec.partition(":")
    baseline = baseline or "plain"
    if fast == DEFAULT_FAST and baseline == "plain":
        return "loss_parity", fast, baseline
    return f"loss_parity_{fast}" + ("" if baseline == "plain" else f"_vs_{baseline}"), fast, baseline


@contextlib.contextmanager
def kernel_profile(enabled: bool, out: Path, steps: int):
    """Operators and GPU kernels of two steady-state steps (after 5 steps), largest GPU time first, and the
    Python stacks of the fills and copies among them."""
    if not (enabled and CUDA):
        yield
        return
    import train
    from torch.profiler import ProfilerActivity, profile, schedule

    plain_step = train.train_step
    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA]
    with profile(
        activities=activities,
        schedule=schedule(wait=5, warmup=1, active=2, repeat=1),  # once: repeating, the last window held the save
        record_shapes=True,
        with_stack=True,
    ) as prof:

        def profiled_step(*args, **kwargs):
            result = plain_step(*args, **kwargs)
            prof.step()
            return result

        train.train_step = profiled_step
        try:
            yield
        finally:
            train.train_step = plain_step
    by_shape = prof.key_averages(group_by_input_shape=True)
    tables = [
        by_shape.table(sort_by="self_device_time_total", row_limit=50, max_name_column_width=70),
        "\n".join(
            f"{event.key} x{event.count} {event.self_device_time_total / 1e3:.2f} ms\n  " + "\n  ".join(event.stack)
            for event in prof.key_averages(group_by_stack_n=12)
            if any(word in event.key for word in ("fill", "zero", "copy_", "full"))
            and event.self_device_time_total > 1e3
        ),
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"steps 7-8 of {steps}\n" + "\n\n".join(tables) + "\n")
    print(tables[0], flush=True)


def compile_cache_runs(model_dir: Path, steps: int, variant: str, timeout: float = 300) -> dict:
    """Cold and warm compile cache: the variant in two fresh processes sharing one empty Inductor cache folder
    (what ftpipe.compile_cache points jobs at): the first compiles everything (cold); the second changes a
    training setting that leaves the graphs as they are (the learning rate), as a second job or a second run of
    the workflow with another setting would, and finds every graph compiled (warm). Dynamo's tracing and the
    CUDA graphs' capture are paid in each process; Inductor's code generation, autotuning and Triton builds
    only once."""
    import subprocess

    cache = Path(tempfile.mkdtemp(prefix="inductor_cache_"))
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache)}
    env.pop("TRITON_CACHE_DIR", None)  # inside the Inductor folder, as in the stage
    result = {"variant": variant, "steps": steps}
    for name, learning_rate in (("cold", 2e-4), ("warm_other_learning_rate", 1e-4)):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "result.json"
            command = [sys.executable, __file__, "variant", variant, "--model-dir", str(model_dir)]
            command += ["--steps", str(steps), "--learning-rate", str(learning_rate), "--json", str(out)]
            started = time.perf_counter()
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
            wall = round(time.perf_counter() - started, 1)
            run_result = json.loads(out.read_text()) if out.exists() else {"error": f"exit {done.returncode}"}
            if "error" in run_result:
                run_result["output_tail"] = (done.stdout + done.stderr)[-3000:]
            result[name] = {**run_result, "process_wall_seconds": wall}
    result["cache_mib"] = round(sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) / 2**20, 1)
    shutil.rmtree(cache, ignore_errors=True)
    return result


def variant_main(args) -> None:
    """`variant NAME`: one (b) variant in this process (what compile_cache_runs starts); writes its timing."""
    import traceback

    speed, extra = VARIANTS[args.name]
    try:
        model_dir, blocks = Path(args.model_dir), block_tensors()
        result = stage_variant(model_dir, blocks, args.steps, speed, learning_rate=args.learning_rate, **extra)[0]
    except BaseException as err:  # noqa: BLE001  (recorded, the parent run goes on)
        result = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-4000:]}
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


def throughput_summary(results: dict) -> dict:
    """Ours against the reference (a) and the peers: ours is the first of SUMMARY_ORDER this run measured."""
    ours_name = next((name for name in SUMMARY_ORDER if results.get(name, {}).get("tokens_per_second")), None)
    ours = results[ours_name]["tokens_per_second"] if ours_name else None
    peers = {name: results[name].get("tokens_per_second") for name in PEERS if name in results}
    a = results.get("a_reference_trainer", {}).get("tokens_per_second")
    return {
        "summary_variant": ours_name,
        "ours_over_peers": {name: round(ours / value, 2) if ours and value else None for name, value in peers.items()},
        "ratio_b_over_a": round(ours / a, 1) if a and ours else None,
    }


def run(args) -> None:
    if args.tiny:
        TINYLLAMA.update(
            hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
        )
    gpu = torch.cuda.get_device_name(0) if CUDA else "cpu (smoke test)"
    results = {"gpu": gpu, "torch": torch.__version__, "tokens_per_step": 64 * MAX_LEN}
    out_path = Path(args.results_dir) / (args.out if CUDA else "train_throughput_cpu_smoke.json")

    def save():
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps(results, indent=2), flush=True)

    model_dir = Path(tempfile.mkdtemp()) / "tinyllama-random"
    # The stage's compile cache goes to a fresh folder: every warm-up below starts cold (in this process, the
    # graphs an earlier variant compiled are found again; compile_cache_runs measures that in fresh processes).
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(model_dir.parent / "inductor_cache"))
    make_model(model_dir)
    blocks = block_tensors()

    def attempt(key: str, measure) -> None:
        """Record a measurement, or the error that stopped it (the run goes on with the next one)."""
        import traceback

        started = time.perf_counter()
        try:
            results[key] = measure()
        except BaseException as err:  # noqa: BLE001  (a variant that fails is a result too)
            if isinstance(err, KeyboardInterrupt):
                raise
            results[key] = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-4000:]}
            print(f"{key} failed: {results[key]['error']}", flush=True)
        results[key]["wall_seconds"] = round(time.perf_counter() - started, 1)
        fresh_gpu()
        save()

    if args.kernel_check:
        attempt("fused_dropout_lora_kernel", dropout_lora_kernel_check)
    if args.fp8_check:
        attempt("fp8_matmul", fp8_matmul_check)
    if args.reference_steps:
        attempt("a_reference_trainer", lambda: reference_trainer(model_dir, blocks, args.reference_steps))
    names = [*VARIANTS, *PEERS] if args.only is None else args.only
    unknown = sorted(set(names) - set(VARIANTS) - set(PEERS))
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {[*VARIANTS, *PEERS]}")
    for name in names:
        if name in PEERS:
            steps = args.peer_steps
            site = args.unsloth_site if name == "unsloth" else None
            attempt(name, lambda n=name, k=steps, p=site: peer_in_subprocess(n, model_dir, k, p, args.peer_timeout))
            continue
        speed, extra = VARIANTS[name]
        steps = args.reference_steps if name.startswith("b0") else args.steps

        def measure(name=name, speed=speed, extra=extra, steps=steps):
            with kernel_profile(args.profile, Path(args.results_dir) / f"profile_{name}.txt", steps):
                return stage_variant(model_dir, blocks, steps, speed, **extra)[0]

        attempt(name, measure)
    for spec in args.parity_of if args.parity_steps else []:
        key, fast, baseline = parity_key(spec)
        steps = args.parity_steps
        attempt(key, lambda fast=fast, baseline=baseline, k=steps: loss_parity(model_dir, blocks, k, fast, baseline))
    if args.compile_cache_steps:
        attempt(
            "compile_cache",
            lambda: compile_cache_runs(model_dir, args.compile_cache_steps, args.compile_cache_variant),
        )
    results.update(throughput_summary(results))
    save()
    shutil.rmtree(model_dir.parent, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="make bench/work/blocks.pt and the tokenizer (CPU)")
    prep.add_argument("--rows", type=int, default=20000)
    go = sub.add_parser("run", help="measure on the GPU")
    go.add_argument("--reference-steps", type=int, default=8)
    go.add_argument("--steps", type=int, default=30)
    go.add_argument("--parity-steps", type=int, default=200)
    go.add_argument("--only", nargs="*", help="run only these (b) variants")
    go.add_argument(
        "--parity-of",
        nargs="*",
        default=[DEFAULT_FAST, f"b11_plus_fp8_base:{DEFAULT_FAST}"],
        help="(b) variants to compare with the plain path, or VARIANT:BASELINE to compare with another variant",
    )
    go.add_argument("--out", default="train_throughput.json", help="file name of the results JSON")
    go.add_argument("--results-dir", default=str(ROOT / "bench" / "results"), help="where the JSON goes")
    go.add_argument("--profile", action="store_true", help="write each variant's GPU kernel table")
    go.add_argument("--tiny", action="store_true", help="a 2-layer model instead of TinyLlama's shape (smoke test)")
    go.add_argument(
        "--kernel-check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="check and time the fused dropout LoRA",
    )
    go.add_argument(
        "--compile-cache-steps", type=int, default=0, help="steps of each cold/warm compile-cache process; 0: skip"
    )
    go.add_argument("--compile-cache-variant", default=DEFAULT_FAST, help="the (b) variant those processes run")
    go.add_argument(
        "--fp8-check", action=argparse.BooleanOptionalAction, default=True, help="check and time the FP8 matmul"
    )
    go.add_argument("--peer-steps", type=int, default=10, help="steps of each peer (TRL, Unsloth)")
    go.add_argument("--peer-timeout", type=float, default=420, help="seconds before a peer's process is stopped")
    go.add_argument("--unsloth-site", help="a folder put first on PYTHONPATH for the Unsloth peer's process")
    peer = sub.add_parser("peer", help="one peer in this process (what `run` starts for each)")
    peer.add_argument("name", choices=PEERS)
    peer.add_argument("--model-dir", required=True)
    peer.add_argument("--steps", type=int, required=True)
    peer.add_argument("--json", required=True, help="where the result goes")
    one = sub.add_parser("variant", help="one (b) variant in this process (what the compile-cache runs start)")
    one.add_argument("name", choices=VARIANTS)
    one.add_argument("--model-dir", required=True)
    one.add_argument("--steps", type=int, required=True)
    one.add_argument("--learning-rate", type=float, default=2e-4)
    one.add_argument("--json", required=True, help="where the result goes")
    args = parser.parse_args()
    commands = {"prepare": lambda: prepare(args.rows), "run": lambda: run(args), "peer": lambda: peer_main(args)}
    commands["variant"] = lambda: variant_main(args)
    commands[args.command]()


if __name__ == "__main__":
    main()
