"""Stage 6, generate: descriptions for held-out test titles from the base model and from base + adapter.

Three variants for the same titles: the base model with the seed notebook's plain prompt, the base model with
the tagged training prompt, and the adapter (merged into the base) with the tagged prompt. The titles are a
seeded random sample of the test split (`sample_seed`; the first titles of the metrics stage's sample).
Sampling settings default to the seed notebook's (temperature 0.7, top_p 0.9, repetition penalty 1.1);
generation stops at the end of the turn. The two base variants come from the base_samples stage's file
(`--base-samples`, made once per base model, data, prompt and these settings); this stage samples the adapter
only, and refuses a file made for other titles or settings.
"""

import argparse
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ftpipe import settings, stage  # noqa: E402
from ftpipe.generation import add_generation_args, generate_texts, prompt_format_of  # noqa: E402
from ftpipe.heldout import sample_summary  # noqa: E402
from ftpipe.io import read_json, write_json  # noqa: E402
from ftpipe.modeling import load_for_inference, load_tokenizer, merge_adapter, pick_device  # noqa: E402
from ftpipe.timing import Stopwatch  # noqa: E402
from ftpipe.variants import (  # noqa: E402
    BASE_VARIANTS,
    VARIANTS,
    refuse_other_rows,
    refuse_other_settings,
    sampled_tests,
    sampling_settings,
    variant_prompts,
)

log = logging.getLogger("ftpipe.generate")


def base_samples_for(path: str, sample: dict, sampling: dict) -> dict:
    """base_samples' record, refused where it was made for other titles or with other sampling settings."""
    record = read_json(path)
    makes = "run base_samples on the same test split and generate settings"
    refuse_other_rows("generate", path, "sample", record["sample"], sample, makes)
    refuse_other_settings("generate", path, record["settings"], sampling, "sampling settings")
    return record


def base_samples_timing(seconds: dict) -> dict:
    """base_samples' parts (its model load, the base variants, its total), named for the stage they were
    measured in: its own job, so not part of this stage's total."""
    return {f"base_samples_{part}": value for part, value in seconds.items()}


def generate(args) -> dict:
    clock, started = Stopwatch(), time.perf_counter()
    device = pick_device()
    log.info("device %s, %d CPU threads", device, stage.use_threads(args.threads))
    rows = sampled_tests(args, "generate")
    tokenizer = load_tokenizer(args.adapter)
    prompt_format = prompt_format_of(args, tokenizer)
    sampling = sampling_settings(args, prompt_format.stop_strings)
    sample = sample_summary(rows, args.sample_seed)
    base = base_samples_for(args.base_samples, sample, sampling)
    prompts = variant_prompts(args.base_prompt_template, prompt_format, [row["title"] for row in rows])
    with clock.part("load_model"):
        model = load_for_inference(args.model_dir, args.quantization, device)
    with clock.part("merge_adapter"):
        model = merge_adapter(model, args.adapter)
    with clock.part("generate_adapter"):
        adapter = generate_texts(model, tokenizer, prompts["adapter"], sampling, args.batch_size)
    outputs = {**{variant: base["variants"][variant] for variant in BASE_VARIANTS}, "adapter": adapter}
    samples = [
        {"title": row["title"], "reference": row["content"], **{name: outputs[name][i] for name in VARIANTS}}
        for i, row in enumerate(rows)
    ]
    result = {
        "settings": sampling,
        "device": str(device),
        "sample": sample,
        "samples": samples,
        "timing": {**base_samples_timing(base["timing"]), **clock.seconds},
    }
    result["timing"]["total"] = round(time.perf_counter() - started, 3)  # this stage's parts only
    write_json(args.samples, result)
    log.info("%d titles; timing (s): %s", len(samples), json.dumps(result["timing"]))
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="generate.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--test", required=True, help="prepared test split (JSON Lines)")
    add("--base-samples", required=True, help="the base variants' samples (base_samples' JSON)")
    add("--samples", required=True, help="output: samples JSON")
    add_generation_args(parser)
    settings.add_options(parser, "generate")
    return parser


if __name__ == "__main__":
    stage.run(generate, build_parser(), globals())
