"""The data stages called in-process, with the same argument checks as from a rule: for tests and benchmarks.

It imports the stage scripts, so it lives beside them and not in the shared package (ftpipe), which the
stages import: dependencies point one way."""

from collections.abc import Callable
from functools import partial
from pathlib import Path

from ftpipe.stage import namespace

SPLITS = ("train", "validation", "test")


def data_stage_calls(
    raw,
    out,
    model_dir,
    instruction: str,
    response: str,
    *,
    max_len: int | None = None,
    mode: str | None = None,
    completion_only: bool | None = None,
    overlong: str | None = None,
    prompt_format: str | None = None,
    **prepare_values,
) -> dict[str, Callable[[], dict]]:
    """prepare, tokenize and pack as calls without arguments, in order, writing into `out` (splits,
    tokenized/, packed/ and their stats); each one reads what the one before it wrote. A setting not given
    (None) takes its default from config.yaml, as on the command line."""
    import pack as pack_stage
    import prepare as prepare_stage
    import tokenize_data as tokenize_stage

    out = Path(out)
    splits = {name: str(out / f"{name}.jsonl") for name in SPLITS}
    arguments = {
        prepare_stage: dict(
            raw=str(raw),
            **splits,
            counts=str(out / "counts.json"),
            rejects=str(out / "rejects.jsonl"),
            **prepare_values,
        ),
        tokenize_stage: dict(
            **splits,
            model_dir=str(model_dir),
            dataset=str(out / "tokenized"),
            stats=str(out / "tokenize_stats.json"),
            instruction_template=instruction,
            response_template=response,
            **given(max_len=max_len, completion_only=completion_only, overlong=overlong, prompt_format=prompt_format),
        ),
        pack_stage: dict(
            tokenized=str(out / "tokenized"),
            tokenize_stats=str(out / "tokenize_stats.json"),
            dataset=str(out / "packed"),
            stats=str(out / "pack_stats.json"),
            **given(mode=mode, max_len=max_len),
        ),
    }
    functions = {"prepare": prepare_stage.prepare, "tokenize": tokenize_stage.tokenize, "pack": pack_stage.pack}
    modules = (prepare_stage, tokenize_stage, pack_stage)
    return {
        name: partial(function, namespace(module.build_parser(), **arguments[module]))
        for (name, function), module in zip(functions.items(), modules, strict=True)
    }


def given(**values) -> dict:
    return {name: value for name, value in values.items() if value is not None}


def run_data_stages(raw, out, model_dir, instruction: str, response: str, **values) -> Path:
    """prepare -> tokenize -> pack into `out` (see data_stage_calls); returns packed/."""
    for call in data_stage_calls(raw, out, model_dir, instruction, response, **values).values():
        call()
    return Path(out) / "packed"
