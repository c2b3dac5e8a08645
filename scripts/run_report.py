"""Stage 8, run_report: one self-contained HTML page (images embedded, no network) for one run: summary, data
accounting, training curves and timing, quality on held-out data, the generated samples side by side, the
lineage (which stage outputs the run used), the configuration and provenance. Also writes the lineage as
JSON. The page comes from report/templates/run.html.j2."""

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ftpipe import stage  # noqa: E402
from ftpipe.io import read_json, write_json, write_text  # noqa: E402
from ftpipe.pages import METRIC_HELP, metric_order, png_data_uri, provenance, render  # noqa: E402

log = logging.getLogger("ftpipe.report")

SAMPLE_COLUMNS = ["title", "reference", "base_plain", "base_tagged", "adapter"]


def summary_cards(run: str, config: dict, timing: dict, history: dict, counts: dict) -> dict:
    losses = [row["loss"] for row in history["history"] if row.get("loss") not in (None, "")]
    trainable = timing.get("adapters", {}).get("trainable_parameters")
    return {
        "run": run,
        "base model": config.get("model", {}).get("source"),
        "device": timing.get("device"),
        "steps": history.get("step"),
        "training time": f"{timing.get('total_seconds', 0):.0f} s",
        "trainable parameters": f"{trainable:,}" if trainable is not None else "n/a",
        "first → last loss": f"{losses[0]:.3f} → {losses[-1]:.3f}" if losses else "n/a",
        "rows used": counts["sampling"]["sampled"],
    }


def split_rows(counts: dict, token_stats: dict, pack_stats: dict) -> list[dict]:
    return [
        {
            "name": name,
            "rows": rows,
            **{key: token_stats[name][key] for key in ("truncated", "dropped", "tokens")},
            "blocks": pack_stats.get(name, {}).get("blocks"),
        }
        for name, rows in counts["splits"].items()
    ]


def build_report(args) -> str:
    config, lineage = read_json(args.config), args.lineage_record
    counts, timing, history = read_json(args.counts), read_json(args.timing), read_json(args.history)
    token_stats, pack_stats = read_json(args.token_stats), read_json(args.pack_stats)
    run = lineage.get("run") or config.get("run_name")
    metrics = read_json(args.metrics)
    return render(
        "run.html.j2",
        run=run,
        source_name=Path(counts["source"]).name,
        cards=summary_cards(run, config, timing, history, counts),
        counts=counts,
        splits=split_rows(counts, token_stats, pack_stats),
        pack_stats=pack_stats,
        lengths_png=png_data_uri(args.lengths_png),
        curve_png=png_data_uri(args.curve_png),
        timing={key: value for key, value in timing.items() if not isinstance(value, dict)},
        adapters=timing.get("adapters"),
        metrics=metrics,
        metric_names=metric_order(next(iter(metrics["variants"].values()))),
        metric_help=METRIC_HELP,
        samples=read_json(args.samples),
        sample_columns=SAMPLE_COLUMNS,
        lineage=lineage,
        lineage_file=args.lineage or "",
        config_json=json.dumps(config, indent=2, ensure_ascii=False),
        provenance=provenance(),
    )


def report(args) -> None:
    if args.lineage:
        write_json(args.lineage, args.lineage_record)
    write_text(args.report, build_report(args))
    log.info("wrote %s", args.report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run_report.py", description=__doc__)
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
    parser.add_argument("--lineage", default=None, help="output: lineage.json (the run's stage outputs)")
    parser.add_argument("--config", required=True, help="the run's configuration (config.json)")
    parser.add_argument(
        "--lineage-record", type=stage.json_arg, default={}, help="the run's lineage (JSON), as the workflow gives it"
    )
    return parser


if __name__ == "__main__":
    stage.run(report, build_parser(), globals())
