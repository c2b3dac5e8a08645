"""HTML pages from Jinja2 templates (report/templates/): the run report and the comparison of runs.

Pages are self-contained: images are embedded as data URIs, nothing is fetched."""

from __future__ import annotations

import base64
import importlib.metadata
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parents[2] / "report" / "templates"
PACKAGES = ("torch", "transformers", "peft", "bitsandbytes", "datasets", "snakemake", "pandas", "matplotlib")

METRIC_HELP = {
    "rouge_l": "longest common word subsequence with the reference, F1 (0-100)",
    "rouge_l_precision": "share of the description's words on that subsequence: low when it rambles past the reference",
    "rouge_l_recall": "share of the reference's words on that subsequence: low when the description is cut short",
    "chrf": "character n-gram F-score against the reference, beta 2: recall weighs twice as much as precision (0-100)",
    "chrf_beta1": "the same with beta 1: precision and recall weigh the same, so an overlong answer gains nothing",
    "title_coverage": "share of the title's content words the description mentions (%)",
    "distinct_2": "distinct word pairs over all word pairs (%): low means repetition",
    "length_ratio": "words of the description over words of the reference",
    "perplexity": "of the reference descriptions given the prompt: lower is better",
}


def measure(value: dict | None, name: str, signed: bool = False) -> str:
    """A quality measure with its interval, to the digits that its scale needs (perplexity is its own key)."""
    digits = 2 if name in ("perplexity", "length_ratio") else 1
    return interval(value, digits, signed, key="perplexity" if name == "perplexity" else "mean")


def metric_order(names) -> list[str]:
    """Quality measures in a fixed order: the known ones first, perplexity last."""
    found = list(names)
    known = [name for name in METRIC_HELP if name in found and name != "perplexity"]
    return known + [name for name in found if name not in METRIC_HELP] + ["perplexity"] * ("perplexity" in found)


def render(template: str, **context) -> str:
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(interval=interval, measure=measure, number=number)
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return environment.get_template(template).render(created=created, **context)


def png_data_uri(path: str | Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def interval(value: dict | None, digits: int = 1, signed: bool = False, key: str = "mean") -> str:
    """`12.3 [10.1, 14.5]` from {mean, low, high}; n/a for a missing value."""
    if not value or value.get(key) is None:
        return "n/a"
    sign = "+" if signed else ""
    return f"{value[key]:{sign}.{digits}f} [{value['low']:{sign}.{digits}f}, {value['high']:{sign}.{digits}f}]"


def number(value, digits: int = 4) -> str:
    """Integers with thousands separators, floats to `digits` significant digits, anything else as text."""
    if isinstance(value, bool) or value is None:
        return "n/a" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def provenance() -> dict:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "unknown (not a git checkout)"
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {"git_commit": commit, "python": sys.version.split()[0], **versions}
