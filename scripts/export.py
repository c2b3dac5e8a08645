"""Stage: export. Merge the LoRA adapter into a 16-bit copy of the base model (not into the 4-bit one),
so the result loads with a plain `AutoModelForCausalLM.from_pretrained(folder)` and needs neither PEFT
nor bitsandbytes. The run's configuration (config.json: its prompt, stop strings and sampling settings) is
copied beside the weights as run_config.json, so the folder says how to ask the model."""

import argparse
import logging
import shutil
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ftpipe import settings, stage  # noqa: E402
from ftpipe.io import atomic_path  # noqa: E402
from ftpipe.modeling import load_base_model, load_tokenizer  # noqa: E402

log = logging.getLogger("ftpipe.export")
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def merged_model(model_dir: str, adapter: str, dtype: torch.dtype):
    from peft import PeftModel

    base = load_base_model(model_dir, {"load_in_4bit": False}, torch.device("cpu"), dtype)
    return PeftModel.from_pretrained(base, adapter, local_files_only=True).merge_and_unload()


def export(args) -> None:
    model = merged_model(args.model_dir, args.adapter, DTYPES[args.dtype])
    with atomic_path(args.merged) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        load_tokenizer(args.adapter).save_pretrained(tmp)
        if args.config:
            shutil.copyfile(args.config, Path(tmp) / "run_config.json")
    log.info("merged %s into %s (%s) -> %s", args.adapter, args.model_dir, args.dtype, args.merged)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="export.py", description=__doc__)
    parser.add_argument("--model-dir", required=True, help="base model folder")
    parser.add_argument("--adapter", required=True, help="adapter folder")
    parser.add_argument("--merged", required=True, help="output: merged model folder")
    parser.add_argument("--config", default=None, help="the run's config.json, copied into the merged folder")
    settings.add_options(parser, "export")
    return parser


if __name__ == "__main__":
    stage.run(export, build_parser(), globals())
