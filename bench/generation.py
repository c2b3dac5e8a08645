"""Generation throughput on one GPU: the reference's one-prompt-at-a-time pipeline loop against the
project's batched generation (left padding, KV cache, stop at the end of the turn), same titles, same model.

    python bench/generation.py --titles 64 --max-new-tokens 128

The model has TinyLlama's layer shapes with random weights and the SmolLM2 tokenizer's 49152-token
vocabulary (from bench/work/tokenizer, made by `bench/train_throughput.py prepare`), loaded in 4-bit NF4
as the reference did. Random weights rarely stop early, so both sides generate about max_new_tokens per
title; new tokens are counted from the outputs. Writes bench/results/generation.json.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "bench"))
from train_throughput import CUDA, TINYLLAMA, WORK  # noqa: E402

from ftpipe.generation import generate_texts  # noqa: E402
from ftpipe.modeling import load_base_model, load_for_inference  # noqa: E402
from ftpipe.prompts import instruction_text  # noqa: E402

SETTINGS = {
    "do_sample": True,
    "temperature": 0.7,
    "top_p": 0.9,
    "repetition_penalty": 1.1,
    "stop_strings": ["<end_of_turn>", "<eos>"],
    "seed": 42,
}


def make_model(out: Path, tokenizer) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        **{**TINYLLAMA, "vocab_size": len(tokenizer)},
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    with torch.device("cuda" if CUDA else "cpu"):
        LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(out)
    tokenizer.save_pretrained(out)


def titles(count: int) -> list[str]:
    from make_catalog import generate_records

    return [record["title"] for record in generate_records(count, seed=5)]


def reference_loop(model, tokenizer, prompts: list[str], max_new_tokens: int) -> tuple[float, int]:
    """The reference notebook: a text-generation pipeline called once per prompt."""
    from transformers import pipeline

    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    new_tokens, start = 0, time.perf_counter()
    for prompt in prompts:
        out = generator(
            prompt,
            max_new_tokens=max_new_tokens,
            do_sample=True,
            temperature=0.7,
            top_p=0.9,
            repetition_penalty=1.1,
            return_full_text=False,
            pad_token_id=tokenizer.pad_token_id,
        )
        new_tokens += len(tokenizer(out[0]["generated_text"], add_special_tokens=False)["input_ids"])
    return time.perf_counter() - start, new_tokens


def project_batched(model, tokenizer, prompts: list[str], max_new_tokens: int, batch: int) -> tuple[float, int]:
    settings = {**SETTINGS, "max_new_tokens": max_new_tokens}
    start = time.perf_counter()
    texts = generate_texts(model, tokenizer, prompts, settings, batch)
    seconds = time.perf_counter() - start
    return seconds, sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--titles", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--tiny", action="store_true", help="2 layers (a CPU smoke test of this script)")
    parser.add_argument("--results-dir", default=str(ROOT / "bench" / "results"), help="where the JSON goes")
    args = parser.parse_args()
    import yaml
    from transformers import AutoTokenizer

    if args.tiny:
        TINYLLAMA.update(
            hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
        )
    tokenizer = AutoTokenizer.from_pretrained(WORK / "tokenizer")
    template = yaml.safe_load((ROOT / "config.yaml").read_text())["prompt"]["instruction"]
    prompts = [instruction_text(template, title) for title in titles(args.titles)]
    device = torch.device("cuda" if CUDA else "cpu")
    quantization = {"load_in_4bit": True, "quant_type": "nf4", "double_quant": True}
    dtype = torch.bfloat16 if CUDA else torch.float32  # what load_for_inference picks too
    with tempfile.TemporaryDirectory() as tmp:
        make_model(Path(tmp), tokenizer)
        # The reference generated with the 4-bit model; the stage loads it the same way, then dequantizes
        # the NF4 weights once (load_for_inference): the same numbers, faster matmuls.
        reference_model = load_base_model(tmp, quantization, device, dtype).eval()
        reference_loop(reference_model, tokenizer, prompts[:1], 8)  # warm-up
        runs = {"reference_pipeline_loop": reference_loop(reference_model, tokenizer, prompts, args.max_new_tokens)}
        del reference_model
        model = load_for_inference(tmp, quantization, device)
        generate_texts(model, tokenizer, prompts[:2], {**SETTINGS, "max_new_tokens": 8}, 2)  # warm-up
        runs["project_batched"] = project_batched(model, tokenizer, prompts, args.max_new_tokens, args.batch_size)
    result = {
        "gpu": torch.cuda.get_device_name(0) if CUDA else "cpu (smoke test)",
        "titles": len(prompts),
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
    }
    for name, (seconds, new_tokens) in runs.items():
        result[name] = {
            "seconds": round(seconds, 2),
            "titles_per_second": round(len(prompts) / seconds, 3),
            "new_tokens": new_tokens,
            "new_tokens_per_second": round(new_tokens / seconds, 1),
        }
    result["ratio_titles_per_second"] = round(
        result["project_batched"]["titles_per_second"] / result["reference_pipeline_loop"]["titles_per_second"], 1
    )
    out = Path(args.results_dir) / ("generation.json" if CUDA else "generation_cpu_smoke.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
