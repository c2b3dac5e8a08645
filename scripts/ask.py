"""Ask a trained adapter for product descriptions.

    python scripts/ask.py --run demo "Girls Ballet Tutu Neon Pink" "Stainless Steel French Press 34 oz"
    python scripts/ask.py --run demo --file titles.txt --greedy

Uses a finished run's outputs: the base model and adapter named in results/runs/<run>/lineage.json, and the
prompt, stop strings and sampling settings of results/runs/<run>/config.json (the run's whole configuration,
as the workflow resolved it: an experiment's run is asked with its own overrides, no config file needed),
with the same prompt and stopping logic as the generation stage.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ftpipe.generation import generate_texts  # noqa: E402
from ftpipe.io import read_json  # noqa: E402
from ftpipe.modeling import load_for_inference, load_tokenizer, merge_adapter, pick_device  # noqa: E402
from ftpipe.prompts import PromptFormat, PromptFormatError  # noqa: E402


def titles_from(args) -> list[str]:
    titles = list(args.titles)
    if args.file:
        titles += [line.strip() for line in Path(args.file).read_text(encoding="utf-8").splitlines() if line.strip()]
    if not titles:
        raise SystemExit("ask: give titles on the command line or with --file")
    return titles


def finished_run(results: Path, run: str | None) -> str:
    """The run to ask: `run`, or the only finished run under results/runs/."""
    finished = sorted(path.parent.name for path in (results / "runs").glob("*/config.json"))
    if run is None:
        if len(finished) != 1:
            runs = ", ".join(finished) or "none"
            raise SystemExit(f"ask: name the run with --run (finished runs in {results / 'runs'}: {runs})")
        return finished[0]
    if run not in finished:
        raise SystemExit(
            f"ask: no finished run {run!r} ({results / 'runs' / run / 'config.json'} is missing; finished runs: "
            f"{', '.join(finished) or 'none'}); run the workflow first"
        )
    return run


def run_folders(results: Path, run: str) -> tuple[Path, Path]:
    """The base model and adapter folders a finished run used, from its lineage file."""
    lineage_file = results / "runs" / run / "lineage.json"
    if not lineage_file.exists():
        raise SystemExit(f"ask: no finished run {run!r} ({lineage_file} is missing); run the workflow first")
    stages = read_json(lineage_file)["stages"]
    root = results.parent
    return root / stages["base_model"]["folder"] / "model", root / stages["train"]["folder"] / "adapter"


def ask(titles: list[str], config: dict, results: Path, run: str, greedy: bool) -> list[str]:
    base_model, adapter = run_folders(results, run)
    device = pick_device()
    generation = config["generate"]
    settings = {
        key: generation[key]
        for key in ("max_new_tokens", "do_sample", "temperature", "top_p", "repetition_penalty", "seed")
    }
    tokenizer = load_tokenizer(str(adapter))
    try:
        prompt_format = PromptFormat.from_settings(config["prompt"], tokenizer)
    except PromptFormatError as err:
        raise SystemExit(f"ask: {err}") from None
    settings["stop_strings"] = prompt_format.stop_strings
    if greedy:
        settings["do_sample"] = False
    model = load_for_inference(str(base_model), config["train"]["quantization"], device)
    model = merge_adapter(model, str(adapter))
    prompts = [prompt_format.prompt(title) for title in titles]
    return generate_texts(model, tokenizer, prompts, settings, generation.get("batch_size", "auto"))


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="ask.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("titles", nargs="*", help="product titles")
    parser.add_argument("--file", help="a text file with one title per line")
    parser.add_argument("--run", help="run name (default: the only finished run)")
    parser.add_argument("--results", default="results", help="the workflow's results folder")
    parser.add_argument("--greedy", action="store_true", help="greedy decoding instead of sampling")
    args = parser.parse_args()
    results = Path(args.results)
    run = finished_run(results, args.run)
    titles = titles_from(args)
    answers = ask(titles, read_json(results / "runs" / run / "config.json"), results, run, args.greedy)
    for title, answer in zip(titles, answers, strict=True):
        print(f"## {title}\n{answer}\n")


if __name__ == "__main__":
    main()
