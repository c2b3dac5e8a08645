"""The data stages called in-process, with the same argument checks as from a rule: for tests and benchmarks."""

from pathlib import Path

from .stage import namespace

SPLITS = ("train", "validation", "test")


def run_data_stages(
    raw,
    out,
    model_dir,
    instruction: str,
    response: str,
    *,
    max_len: int = 128,
    mode: str = "boundary",
    completion_only: bool = True,
    overlong: str = "truncate",
    **prepare_values,
) -> Path:
    """prepare -> tokenize -> pack into `out` (splits, tokenized/, packed/ and their stats); returns packed/."""
    import pack as pack_stage
    import prepare as prepare_stage
    import tokenize_data as tokenize_stage

    out = Path(out)
    splits = {name: str(out / f"{name}.jsonl") for name in SPLITS}
    prepare_stage.prepare(
        namespace(
            prepare_stage.build_parser(),
            raw=str(raw),
            **splits,
            counts=str(out / "counts.json"),
            rejects=str(out / "rejects.jsonl"),
            instruction_template=instruction,
            response_template=response,
            **prepare_values,
        )
    )
    tokenize_stage.tokenize(
        namespace(
            tokenize_stage.build_parser(),
            **splits,
            model_dir=str(model_dir),
            dataset=str(out / "tokenized"),
            stats=str(out / "tokenize_stats.json"),
            max_len=max_len,
            completion_only=completion_only,
            overlong=overlong,
        )
    )
    pack_stage.pack(
        namespace(
            pack_stage.build_parser(),
            tokenized=str(out / "tokenized"),
            tokenize_stats=str(out / "tokenize_stats.json"),
            dataset=str(out / "packed"),
            stats=str(out / "pack_stats.json"),
            mode=mode,
            max_len=max_len,
        )
    )
    return out / "packed"
