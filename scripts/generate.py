"""Stage 6, generate: descriptions for held-out test titles from the base model and from base + adapter.

Three variants for the same titles: the base model with the seed notebook's plain prompt, the base model with
the tagged training prompt, and the adapter (merged into the base) with the tagged prompt. The titles are a
seeded random sample of the test split (`sample_seed`; the first titles of the metrics stage's sample).
Sampling settings default to the seed notebook's (temperature 0.7, top_p 0.9, repetition penalty 1.1);
generation stops at the end of the turn.
"""

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ftpipe import settings, stage  # noqa: E402
from ftpipe.generation import add_generation_args, generate_texts, prompt_format_of  # noqa: E402
from ftpipe.heldout import sample_rows, sample_summary  # noqa: E402
from ftpipe.io import write_json  # noqa: E402
from ftpipe.modeling import load_for_inference, load_tokenizer, merge_adapter, pick_device  # noqa: E402
from ftpipe.timing import Stopwatch  # noqa: E402

log = logging.getLogger("ftpipe.generate")


def generate(args) -> dict:
    clock, started = Stopwatch(), time.perf_counter()
    device = pick_device()
    log.info("device %s, %d CPU threads", device, stage.use_threads(args.threads))
    rows = sample_rows(args.test, args.num_titles, args.sample_seed)
    if not rows:
        raise SystemExit(f"generate: {args.test} has no rows: the test split is empty (too few rows or groups)")
    titles = [row["title"] for row in rows]
    tokenizer = load_tokenizer(args.adapter)
    prompt_format = prompt_format_of(args, tokenizer)
    sampling = {
        key: getattr(args, key) for key in ("max_new_tokens", "do_sample", "temperature", "top_p", "repetition_penalty")
    }
    sampling.update(stop_strings=prompt_format.stop_strings, seed=args.seed, cache_implementation=args.cache)
    with clock.part("load_model"):
        model = load_for_inference(args.model_dir, args.quantization, device)
    plain = [args.base_prompt_template.format(title=title) for title in titles]
    tagged = [prompt_format.prompt(title) for title in titles]
    outputs = {}
    for name, prompts in (("base_plain", plain), ("base_tagged", tagged), ("adapter", tagged)):
        if name == "adapter":
            with clock.part("merge_adapter"):  # after the base variants: merging changes the weights
                model = merge_adapter(model, args.adapter)
        with clock.part(f"generate_{name}"):
            outputs[name] = generate_texts(model, tokenizer, prompts, sampling, args.batch_size)
    samples = [
        {"title": row["title"], "reference": row["content"], **{name: outputs[name][i] for name in outputs}}
        for i, row in enumerate(rows)
    ]
    result = {
        "settings": sampling,
        "device": str(device),
        "sample": sample_summary(rows, args.sample_seed),
        "samples": samples,
        "timing": {**clock.seconds, "total": round(time.perf_counter() - started, 3)},
    }
    write_json(args.samples, result)
    log.info("%d titles; timing (s): %s", len(samples), result["timing"])
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="generate.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--test", required=True, help="prepared test split (JSON Lines)")
    add("--samples", required=True, help="output: samples JSON")
    add_generation_args(parser)
    settings.add_options(parser, "generate")
    return parser


if __name__ == "__main__":
    stage.run(generate, build_parser(), globals())
