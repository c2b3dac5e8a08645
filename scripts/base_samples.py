"""Stage: base_samples. The sampled descriptions of generate's two base-model variants, once per key.

The base model with the seed notebook's plain prompt (`base_plain`) and with the tagged training prompt
(`base_tagged`) do not depend on the adapter: every run of an experiment that shares the base model, the
prepared test split, the prompt and generate's settings shares this stage's output (its key covers them), and
Snakemake can run it beside training. It holds, for the seeded sample of test titles generate describes, each
base variant's sampled descriptions in the rows' order, with the sampling settings (stop strings resolved),
the device, which rows were sampled and the timing. The generate stage reads them beside the adapter's
without loading the base model for them (docs/evaluation.md).
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
from ftpipe.io import write_json  # noqa: E402
from ftpipe.modeling import load_for_inference, load_tokenizer, pick_device  # noqa: E402
from ftpipe.timing import Stopwatch  # noqa: E402
from ftpipe.variants import BASE_VARIANTS, sampled_tests, sampling_settings, variant_prompts  # noqa: E402

log = logging.getLogger("ftpipe.base_samples")


def base_samples(args) -> dict:
    clock, started = Stopwatch(), time.perf_counter()
    device = pick_device()
    log.info("device %s, %d CPU threads", device, stage.use_threads(args.threads))
    rows = sampled_tests(args, "base_samples")
    tokenizer = load_tokenizer(args.model_dir)  # the base model's (train copies it beside the adapter)
    prompt_format = prompt_format_of(args, tokenizer)
    sampling = sampling_settings(args, prompt_format.stop_strings)
    prompts = variant_prompts(args.base_prompt_template, prompt_format, [row["title"] for row in rows])
    with clock.part("load_model"):
        model = load_for_inference(args.model_dir, args.quantization, device)
    texts = {}
    for variant in BASE_VARIANTS:
        with clock.part(f"generate_{variant}"):  # generate_texts seeds torch itself: as generate did per variant
            texts[variant] = generate_texts(model, tokenizer, prompts[variant], sampling, args.batch_size)
    result = {
        "settings": sampling,
        "device": str(device),
        "sample": sample_summary(rows, args.sample_seed),
        "variants": texts,
        "timing": {**clock.seconds, "total": round(time.perf_counter() - started, 3)},
    }
    write_json(args.base_samples, result)
    log.info("%d titles; timing (s): %s", len(rows), json.dumps(result["timing"]))
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="base_samples.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--test", required=True, help="prepared test split (JSON Lines)")
    parser.add_argument("--base-samples", required=True, help="output: the base variants' samples JSON")
    add_generation_args(parser, adapter=False)
    settings.add_options(parser, "base_samples")
    return parser


if __name__ == "__main__":
    stage.run(base_samples, build_parser(), globals())
