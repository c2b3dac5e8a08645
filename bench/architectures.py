"""Training throughput per architecture on one GPU: the plain path and the default fast path of the stage.

    python bench/architectures.py run [--steps 100] [--only qwen3 ...] [--results-dir DIR]   # one GPU
    python bench/architectures.py merge A.json B.json [--results-dir DIR]   # invocations -> architectures.json
    python bench/architectures.py run --smoke        # CPU: tiny shapes, 3 steps (a test of the script)

For each architecture of bench/model_zoo.py (Llama untied = TinyLlama, Llama tied, Qwen2, Qwen3, Mistral,
Gemma-2, Phi-3) a random-weight model of about 1B parameters (TinyLlama's widths, the architecture's own
features) is trained by the stage's `run_training` at the recipe (effective batch 64 x 128 tokens, NF4 base,
LoRA r16/alpha16/dropout 0.05 on `all-linear`): the plain path (one big micro-batch, no other lever) and the
default fast path, `--steps` steps each, on the same blocks and seed. Per architecture: tokens/s, peak GPU
memory, warm-up, the plan the fast path took, loss parity (largest relative difference of the per-step loss
over the finite steps), MFU (model FLOPs per second over the GPU's dense bf16 peak) and that MFU relative to
TinyLlama's (llama) in the same invocation, so llama always runs first. Writes architectures.json after each
architecture (the seven take about as long as one 10-minute device call: split them with --only and `merge`
the files); an architecture that fails is recorded with its error and the run goes on. Data:
bench/work/blocks.pt (from `train_throughput.py prepare`) when there, else seeded random token ids; the model
folder gets a stand-in word-level tokenizer of the right size (weights are random, only the shapes matter).
"""

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from model_zoo import ARCHITECTURES, TINY_WIDTHS, TINYLLAMA_WIDTHS, model_config  # noqa: E402
from train_throughput import CUDA, MAX_LEN, PLAIN, WORK, fresh_gpu, stage_args, variant_summary  # noqa: E402

VOCAB = 32000  # TinyLlama's
FAST = {"enabled": True}  # the stage's default on a GPU


def stand_in_tokenizer(out: Path, vocab_size: int) -> None:
    """A word-level tokenizer with `vocab_size` tokens <0>..<n-1> (bos <1>, eos <2>): what the stage saves
    beside the adapter; no text is tokenized here."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel({f"<{i}>": i for i in range(vocab_size)}, unk_token="<0>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<0>", bos_token="<1>", eos_token="<2>")
    fast.save_pretrained(out)


def make_model(name: str, out: Path, widths: dict) -> int:
    """A random-weight model of architecture `name` saved (bf16) to `out`; returns its parameter count."""
    from transformers import AutoModelForCausalLM

    # No pad token: a zero-initialized pad embedding at position 0 overflows RMSNorm gradients in random
    # models (see train_throughput.make_model).
    config = model_config(name, VOCAB, bos=1, eos=2, pad=None, **widths)
    torch.manual_seed(0)
    with torch.device("cuda" if CUDA else "cpu"):
        model = AutoModelForCausalLM.from_config(config).to(torch.bfloat16)
    n_params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(out)
    stand_in_tokenizer(out, VOCAB)
    del model
    fresh_gpu()
    return n_params


def blocks(n_train: int, n_validation: int = 64) -> tuple[dict, str]:
    """Training blocks of MAX_LEN tokens: the prepared benchmark blocks when there, else random ids."""
    path = WORK / "blocks.pt"
    if path.exists():
        ids, source = torch.load(path, weights_only=True).to(torch.int32), str(path.relative_to(BENCH.parent))
    else:
        generator = torch.Generator().manual_seed(0)
        ids = torch.randint(3, VOCAB, (n_train + n_validation, MAX_LEN), generator=generator, dtype=torch.int32)
        source = "random token ids (seed 0)"
    positions = torch.arange(MAX_LEN, dtype=torch.int32).expand_as(ids)
    split = {"input_ids": ids, "labels": ids, "position_ids": positions}
    return {
        "train": {key: value[n_validation:] for key, value in split.items()},
        "validation": {key: value[:n_validation] for key, value in split.items()},
    }, source


def train_variant(model_dir: Path, data: dict, steps: int, speed: dict, micro_batch: int, grad_accum: int) -> dict:
    """The stage's run_training at the recipe with `all-linear` LoRA targets and the given levers."""
    from train import run_training

    fresh_gpu()
    with tempfile.TemporaryDirectory() as out_name:
        out = Path(out_name)
        args = stage_args(model_dir, out, steps, speed, micro_batch=micro_batch, grad_accum=grad_accum, logging_steps=1)
        args.lora["target_modules"] = "all-linear"
        timing = run_training(args, data)
        history = json.loads((out / "history.json").read_text())["history"]
    return {
        **variant_summary(timing),
        "adapters": timing["adapters"],
        "loss": [row["loss"] for row in history if "loss" in row],
    }


def parity(plain: list[float], fast: list[float]) -> dict:
    """Largest relative difference of the per-step loss, up to the first non-finite loss of either."""
    finite = []
    for p, f in zip(plain, fast, strict=True):
        if not (math.isfinite(p) and math.isfinite(f)):
            break
        finite.append(abs(f - p) / p)
    return {"finite_steps_compared": len(finite), "max_relative_difference": round(max(finite), 6) if finite else None}


def measure(name: str, workdir: Path, data: dict, args) -> dict:
    """Both paths on one architecture."""
    model_dir = workdir / name
    started = time.perf_counter()
    n_params = make_model(name, model_dir, TINY_WIDTHS if args.smoke else TINYLLAMA_WIDTHS)
    result = {"parameters": n_params, "model_build_seconds": round(time.perf_counter() - started, 1)}
    recipe = dict(micro_batch=2, grad_accum=2) if args.smoke else dict(micro_batch=8, grad_accum=8)
    for path, speed in (("plain", PLAIN), ("fast", FAST)):
        result[path] = train_variant(model_dir, data, args.steps, speed, **recipe)
    result["loss_parity"] = parity(result["plain"]["loss"], result["fast"]["loss"])
    shutil.rmtree(model_dir, ignore_errors=True)
    return result


def relative_mfu(entries: dict) -> None:
    """Each architecture's fast-path MFU over llama's (TinyLlama) of the same invocation, kept in the entry."""
    baseline = entries.get("llama", {}).get("fast", {}).get("mfu")
    for entry in entries.values():
        mfu = entry.get("fast", {}).get("mfu")
        entry["tinyllama_mfu_same_run"] = baseline
        entry["mfu_relative_to_tinyllama"] = round(mfu / baseline, 3) if mfu and baseline else None


def run(args) -> None:
    if args.smoke:
        args.steps = 3
    out_path = Path(args.results_dir) / ("architectures_cpu_smoke.json" if args.smoke else "architectures.json")
    names = ["llama", *[name for name in (args.only or ARCHITECTURES) if name != "llama"]]
    step_blocks = 64 * (args.steps + 1) if not args.smoke else 4 * (args.steps + 1)
    data, source = blocks(step_blocks)
    results = {
        "gpu": torch.cuda.get_device_name(0) if CUDA else "cpu (smoke test)",
        "torch": torch.__version__,
        "steps": args.steps,
        "data": source,
        "recipe": "NF4 base, LoRA r16 alpha16 dropout 0.05 on all-linear, effective batch 64 x 128 tokens",
        "architectures": {},
    }
    workdir = Path(tempfile.mkdtemp())

    def save():
        relative_mfu(results["architectures"])
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(results, indent=2) + "\n")

    for name in names:
        started = time.perf_counter()
        try:
            entry = measure(name, workdir, data, args)
        except Exception as err:  # noqa: BLE001  (a failing architecture is a result too)
            entry = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-4000:]}
            print(f"{name} failed: {entry['error']}", flush=True)
        entry["wall_seconds"] = round(time.perf_counter() - started, 1)
        results["architectures"][name] = entry
        fresh_gpu()
        save()
        print(json.dumps({name: {k: v for k, v in entry.items() if k not in ("plain", "fast")}}), flush=True)
    shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(table(results), indent=2), flush=True)


def table(results: dict) -> list[dict]:
    """The summary rows: one per architecture."""
    rows = []
    for name, entry in results["architectures"].items():
        plain, fast = entry.get("plain", {}), entry.get("fast", {})
        rows.append(
            {
                "architecture": name,
                "parameters": entry.get("parameters"),
                "plain_tokens_per_second": plain.get("tokens_per_second"),
                "fast_tokens_per_second": fast.get("tokens_per_second"),
                "fast_peak_gpu_memory_gib": fast.get("peak_gpu_memory_gib"),
                "fast_warmup_seconds": fast.get("warmup_seconds"),
                "loss_parity": entry.get("loss_parity", {}).get("max_relative_difference"),
                "mfu": fast.get("mfu"),
                "mfu_relative_to_tinyllama": entry.get("mfu_relative_to_tinyllama"),
                "error": entry.get("error"),
            }
        )
    return rows


def merge(args) -> None:
    """One architectures.json from those of several invocations (each entry keeps the MFU ratio to the llama
    of its own invocation); the later file wins for an architecture in both."""
    results = {}
    for path in args.files:
        part = json.loads(Path(path).read_text())
        results = {**part, "architectures": {**results.get("architectures", {}), **part["architectures"]}}
    out_path = Path(args.results_dir) / "architectures.json"
    out_path.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(table(results), indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["run", "merge"])
    parser.add_argument("files", nargs="*", help="merge: the architectures.json files of several invocations")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--only", nargs="+", choices=list(ARCHITECTURES), help="architectures (llama always runs)")
    parser.add_argument("--results-dir", default=str(BENCH / "results"))
    parser.add_argument("--smoke", action="store_true", help="CPU smoke test: tiny shapes, 3 steps")
    args = parser.parse_args()
    run(args) if args.command == "run" else merge(args)


if __name__ == "__main__":
    main()
