"""Stage: metrics. Quality of base model vs adapter, measured on held-out data.

- ROUGE-L, chrF, title coverage, distinct bigrams and length ratio of greedy generations against the
  reference descriptions of `num_titles` test titles, a seeded random sample of the test split
  (`sample_seed`; the same titles for every variant and run on the same data), for three variants: the base
  model with the seed notebook's plain prompt (`base_plain`), the base model with the tagged training prompt
  (`base_tagged`) and the adapter merged into the base (`adapter`);
- perplexity of the reference descriptions of `perplexity_rows` validation rows (sampled the same way) given
  each variant's prompt;
- percentile bootstrap 95% intervals over examples, and paired intervals of adapter minus base;
- contamination: scored references found word for word, and their word 8-grams found, in the train split;
- warnings: too few titles for a sound interval (< 30), no validation rows, contamination.
"""

import argparse
import json
import logging
import math
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ftpipe import settings, stage  # noqa: E402
from ftpipe.generation import AUTO_BATCH_CPU, add_generation_args, generate_texts  # noqa: E402
from ftpipe.heldout import MIN_SOUND_TITLES, contamination, sample_rows, sample_summary  # noqa: E402
from ftpipe.io import write_json  # noqa: E402
from ftpipe.modeling import load_for_inference, load_tokenizer, merge_adapter, pick_device  # noqa: E402
from ftpipe.prompts import instruction_text  # noqa: E402
from ftpipe.scoring import (  # noqa: E402
    bootstrap_mean,
    chrf,
    description_nll,
    distinct_2,
    length_ratio,
    paired_difference,
    rouge_l,
    title_coverage,
)

log = logging.getLogger("ftpipe.metrics")

VARIANTS = ("base_plain", "base_tagged", "adapter")
PER_TITLE = ("rouge_l", "chrf", "title_coverage", "distinct_2", "length_ratio")
NLL_BATCH = (
    32  # scoring keeps the logits of every position (rows x length x vocabulary): far fewer rows than generation
)


def variant_prompts(args, titles: list[str]) -> dict[str, list[str]]:
    plain = [args.base_prompt_template.format(title=title) for title in titles]
    tagged = [instruction_text(args.instruction_template, title) for title in titles]
    return {"base_plain": plain, "base_tagged": tagged, "adapter": tagged}


def bootstrap_perplexity(nll_counts: list[tuple], seed: int, samples: int = 1000) -> dict:
    rng, n = random.Random(seed), len(nll_counts)

    def ppl(pairs):
        return math.exp(sum(p[0] for p in pairs) / max(1, sum(p[1] for p in pairs)))

    draws = sorted(ppl([nll_counts[rng.randrange(n)] for _ in range(n)]) for _ in range(samples))
    return {
        "perplexity": round(ppl(nll_counts), 3),
        "low": round(draws[int(0.025 * samples)], 3),
        "high": round(draws[int(0.975 * samples)], 3),
        "n": n,
    }


def per_title_scores(predictions: list[str], tests: list[dict]) -> dict[str, list[float]]:
    """Every per-title metric of one variant, in the order of `tests`."""
    references, titles = [row["content"] for row in tests], [row["title"] for row in tests]
    return {
        "rouge_l": rouge_l(predictions, references),
        "chrf": chrf(predictions, references),
        "title_coverage": title_coverage(predictions, titles),
        "distinct_2": distinct_2(predictions),
        "length_ratio": length_ratio(predictions, references),
    }


def small_data_warnings(n_titles: int, n_validation: int) -> list[str]:
    warnings = []
    if n_titles < MIN_SOUND_TITLES:
        warnings.append(
            f"only {n_titles} scored titles (fewer than {MIN_SOUND_TITLES}): the intervals are wide and unstable; "
            "use more test rows or a larger metrics.num_titles"
        )
    if n_validation == 0:
        warnings.append("no validation rows: perplexity not measured (the validation split is empty)")
    return warnings


def scoring_batch(batch_size, device) -> int:
    """Rows per perplexity batch: the configured batch size, at most NLL_BATCH; `auto` is NLL_BATCH on a GPU."""
    if batch_size in (None, "auto"):
        return NLL_BATCH if device.type == "cuda" else AUTO_BATCH_CPU
    return min(int(batch_size), NLL_BATCH)


def run_variants(args, tests: list[dict], validation: list[dict], settings: dict, device) -> tuple[dict, dict]:
    """Greedy generations for the test titles and (nll, tokens) of the validation descriptions, per variant:
    the dequantized base for the base variants, then the adapter merged into it."""
    nll_batch = scoring_batch(args.batch_size, device)
    tokenizer = load_tokenizer(args.adapter)
    model = load_for_inference(args.model_dir, args.quantization, device)
    test_prompts = variant_prompts(args, [row["title"] for row in tests])
    val_prompts = variant_prompts(args, [row["title"] for row in validation])
    tagged_responses = [args.response_template.format(content=row["content"]) for row in validation]
    val_responses = {"base_plain": [row["content"] for row in validation], "base_tagged": tagged_responses}
    val_responses["adapter"] = tagged_responses
    generations, nll = {}, {}
    for variant in VARIANTS:
        if variant == "adapter":
            model = merge_adapter(model, args.adapter)
        generations[variant] = generate_texts(model, tokenizer, test_prompts[variant], settings, args.batch_size)
        nll[variant] = description_nll(model, tokenizer, val_prompts[variant], val_responses[variant], nll_batch)
        log.info("%s done", variant)
    return generations, nll


def metrics(args) -> dict:
    device = pick_device()
    log.info("device %s, %d CPU threads", device, stage.use_threads(args.threads))
    tests = sample_rows(args.test, args.num_titles, args.sample_seed)
    validation = sample_rows(args.validation, args.perplexity_rows, args.sample_seed)
    if not tests:
        raise SystemExit(f"metrics: {args.test} has no rows: the test split is empty (too few rows or groups)")
    warnings = small_data_warnings(len(tests), len(validation))
    settings = {
        "max_new_tokens": args.max_new_tokens,
        "do_sample": False,
        "temperature": 1.0,
        "top_p": 1.0,
        "repetition_penalty": args.repetition_penalty,
        "stop_strings": args.stop_strings,
        "seed": args.seed,
        "cache_implementation": args.cache,
    }
    generations, nll = run_variants(args, tests, validation, settings, device)
    scores = {v: per_title_scores(generations[v], tests) for v in VARIANTS}
    leak = contamination([row["content"] for row in tests], args.train, args.seed)
    if leak["warning"]:
        warnings.append(f"contamination: {leak['warning']}")
    result = {
        "settings": {**settings, "num_titles": len(tests), "perplexity_rows": len(validation)},
        "device": str(device),
        "sample": sample_summary(tests, args.sample_seed),
        "variants": {
            v: {
                **{metric: bootstrap_mean(scores[v][metric], args.seed) for metric in PER_TITLE},
                "perplexity": bootstrap_perplexity(nll[v], args.seed) if validation else None,
            }
            for v in VARIANTS
        },
        "adapter_minus_base_tagged": {
            m: paired_difference(scores["base_tagged"][m], scores["adapter"][m], args.seed) for m in PER_TITLE
        },
        "per_example": {
            v: {metric: [round(x, 4) for x in scores[v][metric]] for metric in PER_TITLE} for v in VARIANTS
        },
        "contamination": leak,
        "warnings": warnings,
        "generations": [
            {"title": row["title"], "reference": row["content"], **{v: generations[v][i] for v in VARIANTS}}
            for i, row in enumerate(tests)
        ],
    }
    write_json(args.metrics, result)
    for warning in warnings:
        log.warning("%s", warning)
    log.info("metrics: %s", json.dumps(result["variants"]))
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metrics.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--test", required=True, help="prepared test split (JSON Lines)")
    add("--validation", required=True, help="prepared validation split (JSON Lines), for perplexity")
    add("--train", default=None, help="prepared train split (JSON Lines), for contamination; unmeasured without")
    add("--metrics", required=True, help="output: metrics JSON")
    add_generation_args(parser)
    settings.add_options(parser, "metrics")
    return parser


if __name__ == "__main__":
    stage.run(metrics, build_parser(), globals())
