"""Where a decoding step of the evaluation's generation goes, on a GPU: TinyLlama's shape with random bf16
weights, the SmolLM2 tokenizer (bench/work/tokenizer, from `python bench/generation.py prepare`), 1000 prompts
in one batch, exactly N new tokens (default 32), dynamic KV cache, through ftpipe.generation.generate_new_ids.
Prints milliseconds per step with and without the repetition penalty and the stop strings, at 1000 rows and at
20 (the generate stage's titles), then the profiler's tables of an 8-token run (by GPU time, by CPU time).

Caveat, as run on 2026-12-05: each timing is preceded only by a 4-token call on its first 64 rows, so the first
timing at 1000 rows (`default`) also pays first-call costs of the 1000-row shapes.

    python bench/generation_profile.py [N] > generation_profile.txt
"""

import json
import random
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "bench"))
from train_throughput import TINYLLAMA, WORK  # noqa: E402

from ftpipe.generation import generate_new_ids  # noqa: E402

WORDS = "steel bottle insulated water kids lunch box travel mug leakproof bamboo lid hiking camping".split()
TURN = "<start_of_turn>user\nWrite a product description for: {title}<end_of_turn>\n<start_of_turn>model\n"


def random_model(tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        **{**TINYLLAMA, "vocab_size": len(tokenizer)},
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    with torch.device("cuda"):
        return LlamaForCausalLM(config).to(torch.bfloat16).eval()


def main(new_tokens: int) -> None:
    from torch.profiler import ProfilerActivity, profile
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(WORK / "tokenizer")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = random_model(tokenizer)
    rng = random.Random(0)
    titles = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 25))) for _ in range(1000)]
    prompts = [TURN.format(title=title) for title in titles]
    greedy = {
        "max_new_tokens": new_tokens,
        "min_new_tokens": new_tokens,
        "do_sample": False,
        "temperature": 1.0,
        "top_p": 1.0,
        "repetition_penalty": 1.1,
        "seed": 0,
        "stop_strings": ["<end_of_turn>"],
    }

    def timed(name: str, rows: list[str], **changes) -> None:
        warm = {**greedy, **changes, "max_new_tokens": 4, "min_new_tokens": 4}
        generate_new_ids(model, tokenizer, rows[:64], warm, 64)  # the timed rows' first 64, 4 tokens
        torch.cuda.synchronize()
        started = time.perf_counter()
        generate_new_ids(model, tokenizer, rows, {**greedy, **changes}, 1024)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        print(name, json.dumps({"seconds": round(seconds, 3), "ms_per_step": round(1000 * seconds / new_tokens, 2)}))

    print(torch.cuda.get_device_name())
    timed("default", prompts)
    timed("no_rep_penalty", prompts, repetition_penalty=1.0)
    timed("no_stops", prompts, stop_strings=[])
    timed("neither", prompts, repetition_penalty=1.0, stop_strings=[])
    timed("batch20_sampled", prompts[:20], do_sample=True, temperature=0.7, top_p=0.9)
    timed("batch20_greedy", prompts[:20])
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        generate_new_ids(model, tokenizer, prompts, {**greedy, "max_new_tokens": 8, "min_new_tokens": 8}, 1024)
        torch.cuda.synchronize()
    averages = prof.key_averages()
    print(averages.table(sort_by="self_cuda_time_total", row_limit=25, max_name_column_width=60))
    print(averages.table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=60))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 32)
