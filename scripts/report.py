"""Stage 8, report: one self-contained HTML page (images embedded, no network) for the configured run:
summary, data accounting, training curves and timing, the generated samples side by side, the
configuration and provenance."""

import argparse
import base64
import html
import importlib.metadata
import json
import logging
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ftpipe import stage  # noqa: E402
from ftpipe.io import read_json, write_text  # noqa: E402

log = logging.getLogger("ftpipe.report")

PACKAGES = ("torch", "transformers", "peft", "bitsandbytes", "datasets", "snakemake", "pandas", "matplotlib")
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#1d2733;line-height:1.45}
h1{margin-bottom:.2em} h2{border-bottom:2px solid #dfe6ee;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;width:100%;margin:.5em 0;font-size:.92em}
th,td{border:1px solid #dfe6ee;padding:.35em .5em;text-align:left;vertical-align:top}
th{background:#f3f6f9} td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%} .muted{color:#6b7785} pre{background:#f3f6f9;padding:1em;overflow:auto;font-size:.85em}
.cards{display:flex;gap:1em;flex-wrap:wrap} .card{background:#f3f6f9;border-radius:8px;padding:.6em 1em}
.card b{display:block;font-size:1.3em}
"""


def esc(value) -> str:
    return html.escape(str(value))


def table(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(row.get(c, "")) for c in columns) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f'<td class="num">{value:,}</td>' if isinstance(value, int) else f'<td class="num">{value:.4g}</td>'
    return f"<td>{esc(value)}</td>"


def image(path: str, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


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


def summary_cards(config: dict, timing: dict, history: dict, counts: dict) -> str:
    losses = [row["loss"] for row in history["history"] if row.get("loss") not in (None, "")]
    cards = {
        "run": config.get("run_name"),
        "base model": config.get("model", {}).get("source"),
        "device": timing.get("device"),
        "steps": history.get("step"),
        "training time": f"{timing.get('total_seconds', 0):.0f} s",
        "first → last loss": f"{losses[0]:.3f} → {losses[-1]:.3f}" if losses else "n/a",
        "rows used": counts["sampling"]["sampled"],
    }
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><span class="muted">{esc(k)}</span><b>{esc(v)}</b></div>' for k, v in cards.items()
        )
        + "</div>"
    )


def data_section(counts: dict, token_stats: dict, pack_stats: dict, lengths_png: str) -> str:
    outcomes = [{"outcome": k, "lines": v} for k, v in counts["outcomes"].items()]
    outcomes.append({"outcome": "total input lines", "lines": counts["input_lines"]})
    reasons = [{"reason": k, "lines": v} for k, v in counts["rejected_reasons"].items()]
    repairs = [{"repair": k, "lines": v} for k, v in counts["repairs"].items()]
    splits = [
        {
            "split": name,
            "rows": counts["splits"][name],
            **{k: token_stats[name][k] for k in ("truncated", "dropped", "tokens")},
            "packed blocks": pack_stats.get(name, {}).get("blocks", ""),
        }
        for name in counts["splits"]
    ]
    return (
        f"<h2>Data</h2><p class='muted'>Source: {esc(counts['source'])} "
        f"(sha256 {esc(counts.get('source_sha256', '?'))})</p>"
        + table(outcomes, ["outcome", "lines"])
        + ("<h3>Rejected, by reason</h3>" + table(reasons, ["reason", "lines"]) if reasons else "")
        + ("<h3>Repairs</h3>" + table(repairs, ["repair", "lines"]) if repairs else "")
        + "<h3>Splits</h3>"
        + table(splits, ["split", "rows", "truncated", "dropped", "tokens", "packed blocks"])
        + f"<p>Packing mode <b>{esc(pack_stats['mode'])}</b>, block length {pack_stats['max_len']}, "
        f"labelled share of train tokens {pack_stats['train']['label_fraction']:.1%}.</p>"
        + image(lengths_png, "token length histogram")
    )


def samples_section(samples: dict) -> str:
    rows = samples["samples"]
    columns = ["title", "reference", "base_plain", "base_tagged", "adapter"]
    settings = ", ".join(f"{k}={v}" for k, v in samples["settings"].items())
    return (
        "<h2>Samples (held-out test titles)</h2>"
        f"<p class='muted'>base_plain: base model, plain prompt; base_tagged: base model, training prompt; "
        f"adapter: base + adapter, training prompt. Settings: {esc(settings)}</p>" + table(rows, columns)
    )


def metrics_section(metrics: dict) -> str:
    rows = []
    for variant, values in metrics["variants"].items():
        row = {"variant": variant}
        for name in ("rouge_l", "chrf"):
            v = values[name]
            row[name] = f"{v['mean']:.1f} [{v['low']:.1f}, {v['high']:.1f}]"
        ppl = values.get("perplexity")
        row["perplexity"] = f"{ppl['perplexity']:.2f} [{ppl['low']:.2f}, {ppl['high']:.2f}]" if ppl else "n/a"
        rows.append(row)
    gain = metrics["adapter_minus_base_tagged"]
    gains = ", ".join(f"{name} {v['mean']:+.1f} [{v['low']:+.1f}, {v['high']:+.1f}]" for name, v in gain.items())
    settings = metrics["settings"]
    return (
        "<h2>Quality on held-out data</h2>"
        f"<p class='muted'>Greedy generations for {settings['num_titles']} test titles scored against their reference "
        f"descriptions (ROUGE-L F1 and chrF, 0–100); perplexity of {settings['perplexity_rows']} validation "
        "descriptions given each variant's prompt. Brackets: bootstrap 95% intervals.</p>"
        + table(rows, ["variant", "rouge_l", "chrf", "perplexity"])
        + f"<p>Adapter minus base model with the same prompt (paired bootstrap): {esc(gains)}.</p>"
    )


def build_report(args) -> str:
    config = args.config
    counts, timing, history = read_json(args.counts), read_json(args.timing), read_json(args.history)
    token_stats, pack_stats, samples = read_json(args.token_stats), read_json(args.pack_stats), read_json(args.samples)
    metrics = read_json(args.metrics)
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    timing_rows = [{"measure": k, "value": v} for k, v in timing.items() if v is not None]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>QLoRA run {esc(config.get("run_name"))}</title>
<style>{STYLE}</style></head><body>
<h1>QLoRA fine-tuning report: {esc(config.get("run_name"))}</h1>
<p class="muted">Product title → description. Created {created}.</p>
{summary_cards(config, timing, history, counts)}
{data_section(counts, token_stats, pack_stats, args.lengths_png)}
<h2>Training</h2>{image(args.curve_png, "training curve")}
{table(timing_rows, ["measure", "value"])}
{metrics_section(metrics)}
{samples_section(samples)}
<h2>Configuration</h2><pre>{esc(json.dumps(config, indent=2, ensure_ascii=False))}</pre>
<h2>Provenance</h2>{table([{"item": k, "value": v} for k, v in provenance().items()], ["item", "value"])}
</body></html>
"""


def report(args) -> None:
    write_text(args.report, build_report(args))
    log.info("wrote %s", args.report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="report.py", description=__doc__)
    for name in (
        "counts",
        "token-stats",
        "pack-stats",
        "timing",
        "history",
        "samples",
        "metrics",
        "curve-png",
        "lengths-png",
    ):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--report", required=True, help="output: report.html")
    parser.add_argument("--config", type=stage.json_arg, default={}, help="the run's configuration (JSON)")
    return parser


if __name__ == "__main__":
    stage.run(report, build_parser(), globals())
