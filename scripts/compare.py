"""Compare: several runs of one experiment side by side (results/compare.html, compare.json, compare.csv).

One row per run: what differs from the baseline run, final training and validation loss, the adapter's quality
on held-out titles with bootstrap intervals, how many of its generations ended by themselves, the paired
difference against a baseline that scored the same titles, tokens/s, training time and peak memory.

Which baseline a run is paired with: the experiment's baseline where it scored the same titles; otherwise,
for a run on other data (another catalog, another split), the run on that data closest to the experiment's
baseline: the fewest settings other than `data.*` that differ from it, the earlier run on a tie. So an
experiment that runs recipes over several catalogs compares each recipe with the baseline recipe on the
same catalog; the table names each row's partner.
Then the training and validation curves of all runs on one plot, and every run's generations for the same
titles side by side. The page comes from report/templates/compare.html.j2."""

import argparse
import csv
import io
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ftpipe import stage  # noqa: E402
from ftpipe.io import atomic_path, read_json, write_json, write_text  # noqa: E402
from ftpipe.pages import metric_order, provenance, render  # noqa: E402
from ftpipe.scoring import paired_difference  # noqa: E402

log = logging.getLogger("ftpipe.compare")

VARIANT = "adapter"  # the runs' fine-tuned models are compared; the base variants are in each run's report
SHOWN_TITLES = 8


def final_losses(history: dict) -> dict:
    rows = history["history"]
    train = [row["loss"] for row in rows if row.get("loss") is not None]
    evals = [row["eval_loss"] for row in rows if row.get("eval_loss") is not None]
    return {"train_loss": train[-1] if train else None, "validation_loss": evals[-1] if evals else None}


def scored_titles(metrics: dict) -> list[tuple[str, str]]:
    return [(row["title"], row["reference"]) for row in metrics["generations"]]


def paired_against(baseline: dict, metrics: dict, seed: int) -> dict:
    """Run minus baseline per metric over the same titles."""
    first, second = baseline.get("per_example", {}).get(VARIANT, {}), metrics.get("per_example", {}).get(VARIANT, {})
    return {name: paired_difference(first[name], second[name], seed) for name in first if name in second}


def recipe_distance(lineage: dict) -> int:
    """How many settings other than the data differ from the experiment's baseline."""
    return sum(not key.startswith("data.") for key in lineage["differs_from_baseline"])


def pairing(runs: list[str], baseline: str, metrics: dict, lineages: dict) -> dict[str, str]:
    """Each run's partner: the experiment's baseline where it scored the same titles, else the run on the same
    titles with the fewest non-data differences from that baseline (the earlier on a tie); a run that is its
    data's baseline is its own partner."""
    partners = {}
    for run in runs:
        same = [other for other in runs if scored_titles(metrics[other]) == scored_titles(metrics[run])]
        if baseline in same:
            partners[run] = baseline
        else:
            partners[run] = min(same, key=lambda other: (recipe_distance(lineages[other]), runs.index(other)))
    return partners


def peak_memory_gib(timing: dict) -> float | None:
    peak = timing.get("peak_gpu_memory_bytes") or timing.get("peak_rss_bytes")
    return round(peak / 2**30, 2) if peak else None


def run_rows(args) -> list[dict]:
    metrics = {run: read_json(path) for run, path in zip(args.runs, args.metrics, strict=True)}
    seed = metrics[args.baseline]["settings"].get("seed", 0)
    partners = pairing(args.runs, args.baseline, metrics, args.lineages)
    rows = []
    for index, run in enumerate(args.runs):
        timing, history = read_json(args.timings[index]), read_json(args.histories[index])
        partner = partners[run]
        rows.append(
            {
                "run": run,
                "baseline": run == args.baseline,
                "data_baseline": partner == run and run != args.baseline,
                "paired_with": None if partner == run else partner,
                "differs": args.lineages[run]["differs_from_baseline"],
                **final_losses(history),
                "quality": metrics[run]["variants"][VARIANT],
                "endings": metrics[run].get("endings", {}).get(VARIANT),
                "paired": None if partner == run else paired_against(metrics[partner], metrics[run], seed),
                "titles": metrics[run]["settings"]["num_titles"],
                "max_new_tokens": metrics[run]["settings"]["max_new_tokens"],
                "tokens_per_second": timing.get("tokens_per_second"),
                "train_seconds": timing.get("total_seconds"),
                "peak_memory_gib": peak_memory_gib(timing),
                "device": timing.get("device"),
                "report": f"runs/{run}/report.html",
            }
        )
    return rows


def metric_names(rows: list[dict]) -> list[str]:
    names = []
    for row in rows:
        names += [name for name in row["quality"] if name not in names]
    return metric_order(names)


def side_by_side(args) -> list[dict]:
    """The first titles scored by each set of runs that scored the same titles (one set per data set), with
    each of those runs' generation."""
    generations = {run: read_json(path)["generations"] for run, path in zip(args.runs, args.metrics, strict=True)}
    groups: dict[tuple, list[str]] = {}
    for run in args.runs:
        groups.setdefault(tuple((row["title"], row["reference"]) for row in generations[run]), []).append(run)
    return [
        {
            "title": row["title"],
            "reference": row["reference"],
            "outputs": {run: generations[run][index][VARIANT] for run in runs},
        }
        for runs in groups.values()
        for index, row in enumerate(generations[runs[0]][:SHOWN_TITLES])
    ]


def curves_png(args, out_png: Path) -> None:
    """Training loss (smoothed) and validation loss of every run on one plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    fig, (train_ax, eval_ax) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    colours = plt.get_cmap("tab20" if len(args.runs) > 10 else "tab10")
    for index, (run, path) in enumerate(zip(args.runs, args.train_logs, strict=True)):
        frame = pd.read_csv(path)
        losses, evals, colour = frame.dropna(subset=["loss"]), frame.dropna(subset=["eval_loss"]), colours(index)
        train_ax.plot(losses["step"], losses["loss"].ewm(alpha=0.3).mean(), color=colour, lw=1.6, label=run)
        if not evals.empty:
            eval_ax.plot(evals["step"], evals["eval_loss"], "o-", color=colour, lw=1.4, ms=3, label=run)
    for ax, title in ((train_ax, "training loss (EMA 0.7)"), (eval_ax, "validation loss")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    train_ax.set_ylabel("loss per labelled token")
    train_ax.legend(fontsize=7, ncol=2 if len(args.runs) > 6 else 1)
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def csv_text(rows: list[dict], names: list[str]) -> str:
    columns = ["run", "baseline", "paired_with", "differs", "train_loss", "validation_loss", "titles"]
    columns += ["max_new_tokens", "ended", "hit_cap"]
    columns += [f"{name}{part}" for name in names for part in ("", "_low", "_high")]
    columns += [f"{name}_minus_baseline{part}" for name in names for part in ("", "_low", "_high")]
    columns += ["tokens_per_second", "train_seconds", "peak_memory_gib"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        flat = {**row, "differs": "; ".join(f"{key}={value}" for key, value in row["differs"].items())}
        flat.update({key: (row["endings"] or {}).get(key) for key in ("ended", "hit_cap")})
        for name in names:
            value = row["quality"].get(name) or {}
            flat[name] = value.get("mean", value.get("perplexity"))
            flat[f"{name}_low"], flat[f"{name}_high"] = value.get("low"), value.get("high")
            paired = (row["paired"] or {}).get(name, {})
            flat[f"{name}_minus_baseline"] = paired.get("mean")
            flat[f"{name}_minus_baseline_low"], flat[f"{name}_minus_baseline_high"] = (
                paired.get("low"),
                paired.get("high"),
            )
        writer.writerow(flat)
    return buffer.getvalue()


def compare(args) -> dict:
    from ftpipe.pages import png_data_uri

    rows = run_rows(args)
    names = metric_names(rows)
    table = {"baseline": args.baseline, "variant": VARIANT, "metrics": names, "runs": rows}
    write_json(args.table, table)
    write_text(args.csv, csv_text(rows, names))
    curves = Path(args.page).with_name(".compare_curves.png")
    curves_png(args, curves)
    page = render(
        "compare.html.j2",
        table=table,
        curves_png=png_data_uri(curves),
        examples=side_by_side(args),
        lineages=args.lineages,
        provenance=provenance(),
    )
    curves.unlink()
    write_text(args.page, page)
    log.info("compared %d runs: %s", len(rows), args.page)
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="compare.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--runs", nargs="+", required=True, help="run names, in the order of the per-run files below")
    add("--baseline", required=True, help="the run the others are compared against")
    for name in ("metrics", "samples", "timings", "train-logs", "histories", "reports"):
        add(f"--{name}", nargs="+", required=True, help=f"one {name.replace('-', ' ')} file per run")
    add("--lineages", type=stage.json_arg, required=True, help="JSON: run -> lineage (differs_from_baseline, stages)")
    add("--page", required=True, help="output: compare.html")
    add("--table", required=True, help="output: compare.json")
    add("--csv", required=True, help="output: compare.csv")
    return parser


if __name__ == "__main__":
    stage.run(compare, build_parser(), globals())
