"""Run a stage script the same way from a Snakemake `script:` directive and from the command line.

A stage script builds an `argparse` parser whose option names equal the rule's named `input:`, `output:`
and `params:` keys, and a `main(args)` function. Under Snakemake the values come from the rule (and
the script's output goes to the rule's log); on the command line they come from `--options`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from contextlib import contextmanager

log = logging.getLogger("ftpipe")


def json_arg(text: str):
    """argparse type for structured options (dicts and lists) given as JSON on the command line."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err}): {text!r}") from None


def run(main, parser: argparse.ArgumentParser, script_globals: dict) -> None:
    """Call `main(args)` with arguments from Snakemake (if the script runs under it) or the command line."""
    for variable in ("TQDM_DISABLE", "HF_DATASETS_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS"):
        os.environ.setdefault(variable, "1")  # progress bars make unreadable logs
    smk = script_globals.get("snakemake")
    if smk is None:
        _setup_logging()
        main(parser.parse_args())
        return
    args = args_from_snakemake(smk, parser)
    with redirect_output(smk.log[0] if smk.log else None):
        _setup_logging()
        main(args)


def args_from_snakemake(smk, parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Map a rule's named input/output/params (and threads) onto the parser's options."""
    values = {}
    for section in (smk.input, smk.output, smk.params):
        values.update(dict(section.items()))
    values.pop("shared_code", None)  # an input only so that Snakemake reruns stages when the package changes
    if any(action.dest == "processes" for action in parser._actions):
        gpus = dict(smk.resources.items()).get("gpu")
        # A GPU rule: one data-parallel process per GPU; a CPU rule (prepare): one worker per thread it is given.
        values["processes"] = int(gpus or 1) if gpus is not None else int(smk.threads)
    return namespace(parser, threads=smk.threads, **values)


def namespace(parser: argparse.ArgumentParser, **values) -> argparse.Namespace:
    """The parser's defaults overridden by `values`, checked as the command line would be: how a rule, a
    test or a benchmark calls a stage from Python."""
    known = {action.dest: action.default for action in parser._actions if action.dest != "help"}
    unknown = sorted(set(values) - set(known) - {"threads"})
    if unknown:
        raise SystemExit(f"{parser.prog}: given names the script does not take: {unknown}")
    missing = sorted({action.dest for action in parser._actions if action.required} - set(values))
    if missing:
        raise SystemExit(f"{parser.prog}: missing required values: {missing}")
    return argparse.Namespace(**{**known, **values})


def to_argv(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """The command line that parses back to `args` (to start a stage again, e.g. under torchrun)."""
    argv = []
    for action in parser._actions:
        value = getattr(args, action.dest, None)
        if not action.option_strings or action.dest == "help" or value is None:
            continue
        option = action.option_strings[0]
        if isinstance(action, argparse.BooleanOptionalAction):
            argv.append(option if value else option.replace("--", "--no-", 1))
        elif action.type is json_arg:
            argv += [option, json.dumps(value)]
        else:
            argv += [option, str(value)]
    return argv


@contextmanager
def redirect_output(log_path: str | None):
    """Send everything the process prints (Python and C level) to the rule's log file."""
    if log_path is None:
        yield
        return
    os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(log_fd)


def _setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
