"""Stage: metrics. Quality of base model vs adapter, measured on held-out data.

- ROUGE-L (F1 with its precision and recall), chrF (beta 2, and beta 1 which weighs precision as much as
  recall), title coverage, distinct bigrams and length ratio of greedy generations against the
  reference descriptions of `num_titles` test titles, a seeded random sample of the test split
  (`sample_seed`; the same titles for every variant and run on the same data), for three variants: the base
  model with the seed notebook's plain prompt (`base_plain`), the base model with the tagged training prompt
  (`base_tagged`) and the adapter merged into the base (`adapter`); the base variants' generations, their
  per-title scores and perplexity come from the base_eval stage (`--base-eval`, shared by every run on the
  same base model, data, prompt and decoding settings): this stage loads the model and scores for the
  adapter only;
- perplexity of the reference descriptions of `perplexity_rows` validation rows (sampled the same way) given
  each variant's prompt;
- the generation budget as base_eval chose it: `max_new_tokens` as given, or `auto` (the default): the 95th
  percentile of the train references' token lengths, at most the block length `max_len` (ftpipe/budget.py);
  per variant, how many generations ended by themselves and how many ran into the budget;
- percentile bootstrap 95% intervals over examples, and paired intervals of adapter minus base;
- contamination: scored references found word for word, and their word 8-grams found, in the train split
  (measured by base_eval: it does not depend on the adapter);
- warnings: too few titles for a sound interval (< 30), no validation rows, contamination;
- timing: seconds spent loading the model, merging the adapter, generating and scoring perplexity per
  variant, computing the scores and their intervals (the base variants' parts, their scores and
  contamination as base_eval measured them; also in the log).
"""

import argparse
import json
import logging
import math
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ftpipe import settings, stage  # noqa: E402
from ftpipe.generation import add_generation_args, prompt_format_of  # noqa: E402
from ftpipe.heldout import MIN_SOUND_TITLES, sample_summary  # noqa: E402
from ftpipe.io import read_json, write_json  # noqa: E402
from ftpipe.modeling import load_for_inference, load_tokenizer, merge_adapter, pick_device  # noqa: E402
from ftpipe.scoring import bootstrap_mean, paired_difference  # noqa: E402
from ftpipe.timing import Stopwatch  # noqa: E402
from ftpipe.variants import (  # noqa: E402
    BASE_VARIANTS,
    PER_TITLE,
    VARIANTS,
    VariantRunner,
    add_heldout_args,
    decoding_settings,
    refuse_other_rows,
    refuse_other_settings,
    sampled_rows,
)

log = logging.getLogger("ftpipe.metrics")


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


def base_variants(path: str, tests: list[dict], validation: list[dict], sample_seed: int) -> dict:
    """base_eval's record, refused where it scored other rows than these (another sample or split)."""
    record = read_json(path)
    for name, rows in (("sample", tests), ("validation_sample", validation)):
        makes = "run base_eval on the same splits and metrics settings"
        refuse_other_rows("metrics", path, name, record[name], sample_summary(rows, sample_seed), makes)
    return record


def run_adapter(args, tokenizer, prompt_format, tests, validation, decoding: dict, device, clock: Stopwatch, threads):
    """The adapter variant: greedy generations (with whether each ended by itself) of the test titles, their
    per-title scores and (nll, tokens) of the validation descriptions, the adapter merged into the
    dequantized base."""
    with clock.part("load_model"):
        model = load_for_inference(args.model_dir, args.quantization, device)
    runner = VariantRunner(args, tokenizer, prompt_format, tests, validation, decoding, device, clock, threads)
    with clock.part("merge_adapter"):
        model = merge_adapter(model, args.adapter)
    return runner.run(model, "adapter")


def base_eval_timing(seconds: dict) -> dict:
    """base_eval's parts (the budget, its model load, the base variants, their scores, contamination) for the
    evaluation's timing: measured in base_eval's own job, so not part of this stage's total."""
    names = {"load_model": "load_base_model", "total": None}
    return {names.get(part, part): value for part, value in seconds.items() if names.get(part, part)}


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
    tests, validation = sampled_rows(args, "metrics")
    warnings = small_data_warnings(len(tests), len(validation))
    with clock.part("read_base_eval"):
        base = base_variants(args.base_eval, tests, validation, args.sample_seed)
    budget_record, budget = base["budget"], base["budget"]["max_new_tokens"]
    log.info("generation budget: %d new tokens, as base_eval chose it (%s)", budget, json.dumps(budget_record))
    with clock.part("load_tokenizer"):  # mostly transformers' first imports
        tokenizer = load_tokenizer(args.adapter)
    prompt_format = prompt_format_of(args, tokenizer)
    # stop_strings resolved with the tokenizer (metrics.json shows them), as base_eval resolved them
    decoding = {**decoding_settings(args, budget), "stop_strings": prompt_format.stop_strings}
    refuse_other_settings("metrics", args.base_eval, base["decoding"], decoding, "decoding settings")
    generations = {v: base["variants"][v]["generations"] for v in BASE_VARIANTS}
    ended = {v: base["variants"][v]["ended"] for v in BASE_VARIANTS}
    nll = {v: base["variants"][v]["nll"] for v in BASE_VARIANTS}
    scores = {v: base["variants"][v]["scores"] for v in BASE_VARIANTS}
    generations["adapter"], ended["adapter"], nll["adapter"], scores["adapter"] = run_adapter(
        args, tokenizer, prompt_format, tests, validation, decoding, device, clock, threads
    )
    with clock.part("intervals"):
        summaries = {
            v: {
                **{metric: bootstrap_mean(scores[v][metric], args.seed) for metric in PER_TITLE},
                "perplexity": bootstrap_perplexity(nll[v], args.seed) if validation else None,
            }
            for v in VARIANTS
        }
        paired = {m: paired_difference(scores["base_tagged"][m], scores["adapter"][m], args.seed) for m in PER_TITLE}
    leak = base["contamination"]
    if leak["warning"]:
        warnings.append(f"contamination: {leak['warning']}")
    for variant in VARIANTS:
        log.info("%s: %s", variant, json.dumps(endings(ended[variant], budget)))
    result = {
        "settings": {**decoding, "num_titles": len(tests), "perplexity_rows": len(validation)},
        "budget": budget_record,
        "device": str(device),
        "base_variants_from": {"path": args.base_eval, "device": base["device"]},
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
        "timing": {**base_eval_timing(base["timing"]), **clock.seconds},
    }
    result["timing"]["total"] = round(time.perf_counter() - started, 3)  # this stage's parts only
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
    add_heldout_args(parser)
    add = parser.add_argument
    add("--base-eval", required=True, help="the base variants' generations and perplexity (base_eval's JSON)")
    add("--metrics", required=True, help="output: metrics JSON")
    add_generation_args(parser)
    settings.add_options(parser, "metrics")
    return parser


if __name__ == "__main__":
    stage.run(metrics, build_parser(), globals())
