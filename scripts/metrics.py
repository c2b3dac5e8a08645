"""Stage: metrics. Quality of base model vs adapter, measured on held-out data.

- ROUGE-L and chrF of greedy generations against the reference descriptions of the first `num_titles`
  test titles, for three variants: the base model with the reference's plain prompt (`base_plain`), the
  base model with the tagged training prompt (`base_tagged`) and base + adapter (`adapter`);
- perplexity of the reference descriptions of validation rows given each variant's prompt;
- percentile bootstrap 95% intervals over examples, and paired intervals of adapter minus base.
"""

import argparse
import json
import logging
import math
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ftpipe import stage  # noqa: E402
from ftpipe.generation import add_generation_args, generate_texts  # noqa: E402
from ftpipe.io import read_jsonl, write_json  # noqa: E402
from ftpipe.modeling import load_for_inference, load_tokenizer, pick_device  # noqa: E402
from ftpipe.prompts import instruction_text  # noqa: E402
from ftpipe.scoring import bootstrap_mean, chrf, description_nll, paired_difference, rouge_l  # noqa: E402

log = logging.getLogger("ftpipe.metrics")

VARIANTS = ("base_plain", "base_tagged", "adapter")


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


def metrics(args) -> dict:
    from peft import PeftModel

    device = pick_device()
    tests = read_jsonl(args.test, args.num_titles)
    validation = read_jsonl(args.validation, args.perplexity_rows)
    if not tests:
        raise SystemExit(f"metrics: {args.test} has no rows")
    settings = {
        "max_new_tokens": args.max_new_tokens,
        "do_sample": False,
        "temperature": 1.0,
        "top_p": 1.0,
        "repetition_penalty": args.repetition_penalty,
        "stop_strings": args.stop_strings,
        "seed": args.seed,
    }
    tokenizer = load_tokenizer(args.adapter)
    model = load_for_inference(args.model_dir, args.quantization, device)
    test_prompts = variant_prompts(args, [row["title"] for row in tests])
    val_prompts = variant_prompts(args, [row["title"] for row in validation])
    val_responses = {
        "base_plain": [row["content"] for row in validation],
        **dict.fromkeys(
            ("base_tagged", "adapter"), [args.response_template.format(content=row["content"]) for row in validation]
        ),
    }
    generations, nll = {}, {}
    for variant in VARIANTS:
        if variant == "adapter":
            model = PeftModel.from_pretrained(model, args.adapter).eval()
        generations[variant] = generate_texts(model, tokenizer, test_prompts[variant], settings, args.batch_size)
        nll[variant] = description_nll(model, tokenizer, val_prompts[variant], val_responses[variant], args.batch_size)
        log.info("%s done", variant)
    references = [row["content"] for row in tests]
    scores = {
        v: {"rouge_l": rouge_l(generations[v], references), "chrf": chrf(generations[v], references)} for v in VARIANTS
    }
    result = {
        "settings": {**settings, "num_titles": len(tests), "perplexity_rows": len(validation)},
        "device": str(device),
        "variants": {
            v: {
                "rouge_l": bootstrap_mean(scores[v]["rouge_l"], args.seed),
                "chrf": bootstrap_mean(scores[v]["chrf"], args.seed),
                "perplexity": bootstrap_perplexity(nll[v], args.seed) if validation else None,
            }
            for v in VARIANTS
        },
        "adapter_minus_base_tagged": {
            m: paired_difference(scores["base_tagged"][m], scores["adapter"][m], args.seed) for m in ("rouge_l", "chrf")
        },
        "per_example": scores,
        "generations": [
            {"title": row["title"], "reference": row["content"], **{v: generations[v][i] for v in VARIANTS}}
            for i, row in enumerate(tests)
        ],
    }
    write_json(args.metrics, result)
    log.info("metrics: %s", json.dumps(result["variants"]))
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metrics.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--test", required=True, help="prepared test split (JSON Lines)")
    add("--validation", required=True, help="prepared validation split (JSON Lines), for perplexity")
    add("--metrics", required=True, help="output: metrics JSON")
    add("--num-titles", type=int, default=50)
    add("--perplexity-rows", type=int, default=200)
    add("--response-template", required=True, help="response text with {content}")
    add_generation_args(parser)
    return parser


if __name__ == "__main__":
    stage.run(metrics, build_parser(), globals())
