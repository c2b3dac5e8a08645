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
import traceback
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
    log_path = smk.log[0] if smk.log else None
    use_threads(smk.threads)
    with redirect_output(log_path):
        _setup_logging()
        failure = _run_logged(main, lambda: args_from_snakemake(smk, parser), parser.prog.removesuffix(".py"))
        if failure is None:
            write_stage_record(smk)
    if failure is not None:
        # The console gets one line, written at once so that jobs running side by side do not split it; the
        # log Snakemake points to holds the traceback.
        where = f" (details and traceback in {log_path})" if log_path else ""
        sys.stderr.write(f"{failure}{where}\n")
        sys.stderr.flush()
        raise SystemExit(1)


def use_threads(threads: int | None) -> int:
    """Compute libraries use `threads` threads (the rule's; None: every core, as from the command line), at most
    the machine's cores: two torch jobs that each take every core of a small machine slow each other down many
    times over. Returns the count. The Rust tokenizer's pool (rayon) is sized once, at the first parallel encode,
    from RAYON_NUM_THREADS (RAYON_RS_NUM_CPUS, its old name, counts only without it), and
    TOKENIZERS_PARALLELISM=false, which some environments set, makes encode_batch serial: both are set here."""
    cores = os.cpu_count() or 1
    count = max(1, min(int(threads or cores), cores))
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS", "RAYON_RS_NUM_CPUS"):
        os.environ[variable] = str(count)
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if count > 1 else "false"
    if "torch" in sys.modules:  # imported by the script already: its thread pool exists
        sys.modules["torch"].set_num_threads(count)
    return count


def _run_logged(main, get_args, name: str) -> str | None:
    """Call `main(get_args())`; on failure write the traceback to stderr (the rule's log) and return a
    one-line message for the console, or None on success."""
    try:
        main(get_args())
    except SystemExit as stop:
        if stop.code in (None, 0):
            return None
        traceback.print_exc()
        return stop.code if isinstance(stop.code, str) else f"{name}: stopped with exit code {stop.code}"
    except Exception as err:
        traceback.print_exc()
        return f"{name}: {type(err).__name__}: {err}".splitlines()[0]
    return None


def args_from_snakemake(smk, parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Map a rule's named input/output/params (and threads) onto the parser's options."""
    values = {}
    for section in (smk.input, smk.output, smk.params):
        values.update(dict(section.items()))
    values.pop("code", None)  # an input only so that Snakemake reruns a stage when a module it imports changes
    values.pop("params_json", None)  # written by write_stage_record, not by the stage
    values.pop("stage_record", None)
    if any(action.dest == "processes" for action in parser._actions):
        gpus = dict(smk.resources.items()).get("gpu")
        # A GPU rule: one data-parallel process per GPU; a CPU rule (prepare): one worker per thread it is given.
        values["processes"] = int(gpus or 1) if gpus is not None else int(smk.threads)
    return namespace(parser, threads=smk.threads, **values)


def write_stage_record(smk) -> None:
    """A keyed stage's params.json: what its output folder's key stands for (params, upstream keys, source)."""
    outputs = dict(smk.output.items())
    if "params_json" in outputs:
        from ftpipe.io import write_json

        write_json(outputs["params_json"], dict(smk.params.items())["stage_record"])


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
        elif isinstance(value, list) and action.nargs == "*":
            argv += [option, *map(str, value)]
        elif isinstance(value, dict | list):
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
