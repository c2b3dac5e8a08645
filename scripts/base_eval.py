"""Stage: base_eval. The evaluation's two base-model variants, run once per base model, data and prompt.

The base model with the seed notebook's plain prompt (`base_plain`) and with the tagged training prompt
(`base_tagged`) do not depend on the adapter: every run of an experiment that shares the base model, the
prepared splits, the prompt and the evaluation's decoding settings shares this stage's output (its key covers
them), and Snakemake can run it beside training. For each base variant it holds the greedy generations of the
sampled test titles with whether each ended by itself, their per-title scores against the references, and
the (nll, tokens) of the sampled validation descriptions for perplexity; with them the generation budget (from
the train references: ftpipe/budget.py), the resolved decoding settings (stop strings included), which rows
were sampled and the contamination of the scored references by the train split. The metrics stage reads
these beside the adapter's without loading or scoring the base model for them (docs/evaluation.md).
"""

import argparse
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ftpipe import settings, stage  # noqa: E402
from ftpipe.budget import generation_budget  # noqa: E402
from ftpipe.generation import add_generation_args, prompt_format_of  # noqa: E402
from ftpipe.heldout import contamination, sample_summary  # noqa: E402
from ftpipe.io import write_json  # noqa: E402
from ftpipe.modeling import load_for_inference, load_tokenizer, pick_device  # noqa: E402
from ftpipe.timing import Stopwatch  # noqa: E402
from ftpipe.variants import (  # noqa: E402
    BASE_VARIANTS,
    VariantRunner,
    add_heldout_args,
    decoding_settings,
    sampled_rows,
)

log = logging.getLogger("ftpipe.base_eval")


def resolved_budget(args, tokenizer, clock: Stopwatch) -> tuple[int, dict]:
    with clock.part("budget"):
        budget, record = generation_budget(
            args.max_new_tokens, args.train, tokenizer, args.response_template, args.max_len, args.sample_seed
        )
    log.info("generation budget: %d new tokens (%s)", budget, json.dumps(record))
    return budget, record


def base_eval(args) -> dict:
    clock = Stopwatch()
    started = time.perf_counter()
    device = pick_device()
    threads = stage.use_threads(args.threads)
    log.info("device %s, %d CPU threads", device, threads)
    tests, validation = sampled_rows(args, "base_eval")
    tokenizer = load_tokenizer(args.model_dir)  # the base model's (train copies it beside the adapter)
    budget, budget_record = resolved_budget(args, tokenizer, clock)
    prompt_format = prompt_format_of(args, tokenizer)
    decoding = {**decoding_settings(args, budget), "stop_strings": prompt_format.stop_strings}
    runner = VariantRunner(args, tokenizer, prompt_format, tests, validation, decoding, device, clock, threads)
    with clock.part("load_model"):
        model = load_for_inference(args.model_dir, args.quantization, device)
    variants = {}
    for variant in BASE_VARIANTS:
        generations, ended, nll, scores = runner.run(model, variant)
        variants[variant] = {
            "generations": generations,
            "ended": ended,
            "nll": [list(pair) for pair in nll],
            "scores": scores,
        }
        log.info("%s: %d of %d generations ended by themselves", variant, sum(ended), len(ended))
    with clock.part("contamination"):
        leak = contamination([row["content"] for row in tests], args.train, args.seed)
    result = {
        "decoding": decoding,
        "budget": budget_record,
        "device": str(device),
        "sample": sample_summary(tests, args.sample_seed),
        "validation_sample": sample_summary(validation, args.sample_seed),
        "variants": variants,
        "contamination": leak,
        "timing": {**clock.seconds, "total": round(time.perf_counter() - started, 3)},
    }
    write_json(args.base_eval, result)
    log.info("timing (s): %s", json.dumps(result["timing"]))
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="base_eval.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_heldout_args(parser, "for the auto budget (max_len without) and contamination (unmeasured without)")
    parser.add_argument("--base-eval", required=True, help="output: the base variants' JSON")
    add_generation_args(parser, adapter=False)
    settings.add_options(parser, "base_eval")
    return parser


if __name__ == "__main__":
    stage.run(base_eval, build_parser(), globals())
