"""Stage: metrics. Quality of base model vs adapter, measured on held-out data.

- ROUGE-L (F1 with its precision and recall), chrF (beta 2, and beta 1 which weighs precision as much as
  recall), title coverage, distinct bigrams and length ratio of greedy generations against the
  reference descriptions of `num_titles` test titles, a seeded random sample of the test split
  (`sample_seed`; the same titles for every variant and run on the same data), for three variants: the base
  model with the seed notebook's plain prompt (`base_plain`), the base model with the tagged training prompt
  (`base_tagged`) and the adapter merged into the base (`adapter`);
- perplexity of the reference descriptions of `perplexity_rows` validation rows (sampled the same way) given
  each variant's prompt;
- the generation budget: `max_new_tokens` as given, or `auto` (the default): the 95th percentile of the
  train references' token lengths, at most the block length `max_len` (ftpipe/budget.py); per variant, how
  many generations ended by themselves and how many ran into the budget;
- percentile bootstrap 95% intervals over examples, and paired intervals of adapter minus base;
- contamination: scored references found word for word, and their word 8-grams found, in the train split;
- warnings: too few titles for a sound interval (< 30), no validation rows, contamination;
- timing: seconds spent loading the model, merging the adapter, generating and scoring perplexity per
  variant, computing the scores and their intervals, and measuring contamination (also in the log).
"""

import argparse
import json
import logging
import math
import random
import sys
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ftpipe import settings, stage  # noqa: E402
from ftpipe.budget import generation_budget  # noqa: E402
from ftpipe.generation import AUTO_BATCH_CPU, add_generation_args, generate_with_endings, prompt_format_of  # noqa: E402
from ftpipe.heldout import MIN_SOUND_TITLES, contamination, sample_rows, sample_summary  # noqa: E402
from ftpipe.io import write_json  # noqa: E402
from ftpipe.modeling import load_for_inference, load_tokenizer, merge_adapter, pick_device  # noqa: E402
from ftpipe.scoring import (  # noqa: E402
    bootstrap_mean,
    description_nll,
    distinct_2,
    length_ratio,
    paired_difference,
    reference_scores_parallel,
    title_coverage,
)

log = logging.getLogger("ftpipe.metrics")

VARIANTS = ("base_plain", "base_tagged", "adapter")
PER_TITLE = (
    "rouge_l",
    "rouge_l_precision",
    "rouge_l_recall",
    "chrf",
    "chrf_beta1",
    "title_coverage",
    "distinct_2",
    "length_ratio",
)
NLL_BATCH = (
    32  # scoring keeps the logits of every position (rows x length x vocabulary): far fewer rows than generation
)


def variant_prompts(args, prompt_format, titles: list[str]) -> dict[str, list[str]]:
    plain = [args.base_prompt_template.format(title=title) for title in titles]
    tagged = [prompt_format.prompt(title) for title in titles]
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


def per_title_scores(generations: dict[str, list[str]], tests: list[dict], processes: int) -> dict[str, dict]:
    """Every per-title metric of every variant, in the order of `tests`: the reference-based ones of all
    variants in one pass over `processes` processes."""
    references, titles = [row["content"] for row in tests], [row["title"] for row in tests]
    predictions = [text for variant in VARIANTS for text in generations[variant]]
    against = reference_scores_parallel(predictions, references * len(VARIANTS), processes)
    scores = {}
    for index, variant in enumerate(VARIANTS):
        part = slice(index * len(tests), (index + 1) * len(tests))
        scores[variant] = {
            **{name: values[part] for name, values in against.items()},
            "title_coverage": title_coverage(generations[variant], titles),
            "distinct_2": distinct_2(generations[variant]),
            "length_ratio": length_ratio(generations[variant], references),
        }
    return scores


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


class Stopwatch:
    """Seconds per named part of the stage, in the order they ran; each part is logged as it ends."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def part(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 3)
            log.info("timing: %s %.2f s", name, self.seconds[name])


def run_variants(args, tests: list[dict], validation: list[dict], decoding: dict, device, clock: Stopwatch):
    """Greedy generations (with whether each ended by itself) for the test titles and (nll, tokens) of the
    validation descriptions, per variant: the dequantized base for the base variants, then the adapter merged
    into it."""
    nll_batch = scoring_batch(args.batch_size, device)
    with clock.part("load_model"):
        tokenizer = load_tokenizer(args.adapter)
        model = load_for_inference(args.model_dir, args.quantization, device)
    prompt_format = prompt_format_of(args, tokenizer)
    decoding["stop_strings"] = prompt_format.stop_strings  # resolved here, with the tokenizer; metrics.json shows it
    test_prompts = variant_prompts(args, prompt_format, [row["title"] for row in tests])
    val_prompts = variant_prompts(args, prompt_format, [row["title"] for row in validation])
    tagged_responses = [prompt_format.response(row["content"]) for row in validation]
    val_responses = {"base_plain": [row["content"] for row in validation], "base_tagged": tagged_responses}
    val_responses["adapter"] = tagged_responses
    generations, ended, nll = {}, {}, {}
    for variant in VARIANTS:
        if variant == "adapter":
            with clock.part("merge_adapter"):
                model = merge_adapter(model, args.adapter)
        with clock.part(f"generate_{variant}"):
            generations[variant], ended[variant] = generate_with_endings(
                model, tokenizer, test_prompts[variant], decoding, args.batch_size
            )
        with clock.part(f"perplexity_{variant}"):
            nll[variant] = description_nll(model, tokenizer, val_prompts[variant], val_responses[variant], nll_batch)
    return generations, ended, nll


def endings(ended: list[bool], budget: int) -> dict:
    """How many generations ended by themselves and how many ran into the budget."""
    by_itself = sum(ended)
    return {"ended": by_itself, "hit_cap": len(ended) - by_itself, "n": len(ended), "max_new_tokens": budget}


def metrics(args) -> dict:
    clock = Stopwatch()
    started = time.perf_counter()
    device = pick_device()
    threads = stage.use_threads(args.threads)
    log.info("device %s, %d CPU threads", device, threads)
    tests = sample_rows(args.test, args.num_titles, args.sample_seed)
    validation = sample_rows(args.validation, args.perplexity_rows, args.sample_seed)
    if not tests:
        raise SystemExit(f"metrics: {args.test} has no rows: the test split is empty (too few rows or groups)")
    warnings = small_data_warnings(len(tests), len(validation))
    with clock.part("budget"):
        budget, budget_record = generation_budget(
            args.max_new_tokens,
            args.train,
            load_tokenizer(args.adapter),
            args.response_template,
            args.max_len,
            args.sample_seed,
        )
    log.info("generation budget: %d new tokens (%s)", budget, json.dumps(budget_record))
    decoding = {
        "max_new_tokens": budget,
        "do_sample": False,
        "temperature": 1.0,
        "top_p": 1.0,
        "repetition_penalty": args.repetition_penalty,
        "no_repeat_ngram_size": args.no_repeat_ngram_size,
        "num_beams": args.num_beams,
        "stop_strings": args.stop_strings,
        "seed": args.seed,
        "cache_implementation": args.cache,
    }
    generations, ended, nll = run_variants(args, tests, validation, decoding, device, clock)
    with clock.part("scoring"):
        scores = per_title_scores(generations, tests, threads)
        summaries = {
            v: {
                **{metric: bootstrap_mean(scores[v][metric], args.seed) for metric in PER_TITLE},
                "perplexity": bootstrap_perplexity(nll[v], args.seed) if validation else None,
            }
            for v in VARIANTS
        }
        paired = {m: paired_difference(scores["base_tagged"][m], scores["adapter"][m], args.seed) for m in PER_TITLE}
    with clock.part("contamination"):
        leak = contamination([row["content"] for row in tests], args.train, args.seed)
    if leak["warning"]:
        warnings.append(f"contamination: {leak['warning']}")
    for variant in VARIANTS:
        log.info("%s: %s", variant, json.dumps(endings(ended[variant], budget)))
    result = {
        "settings": {**decoding, "num_titles": len(tests), "perplexity_rows": len(validation)},
        "budget": budget_record,
        "device": str(device),
        "sample": sample_summary(tests, args.sample_seed),
        "variants": summaries,
        "endings": {v: endings(ended[v], budget) for v in VARIANTS},
        "adapter_minus_base_tagged": paired,
        "per_example": {
            v: {metric: [round(x, 4) for x in scores[v][metric]] for metric in PER_TITLE} for v in VARIANTS
        },
        "contamination": leak,
        "warnings": warnings,
        "generations": [
            {
                "title": row["title"],
                "reference": row["content"],
                **{v: generations[v][i] for v in VARIANTS},
                "hit_cap": [v for v in VARIANTS if not ended[v][i]],
            }
            for i, row in enumerate(tests)
        ],
        "timing": {**clock.seconds, "total": round(time.perf_counter() - started, 3)},
    }
    write_json(args.metrics, result)
    for warning in warnings:
        log.warning("%s", warning)
    log.info("metrics: %s", json.dumps(result["variants"]))
    log.info("timing (s): %s", json.dumps(result["timing"]))
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
