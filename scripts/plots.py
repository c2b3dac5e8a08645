"""Stage 7, plots: the training curve (raw and smoothed loss, validation loss, learning rate on a second
axis, throughput below) and a histogram of example lengths in tokens, as PNG files."""

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ftpipe import settings, stage  # noqa: E402
from ftpipe.io import atomic_path  # noqa: E402

log = logging.getLogger("ftpipe.plots")


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_training_curve(train_log: str, out: str, smoothing: float) -> None:
    import pandas as pd

    plt = _figure()
    frame = pd.read_csv(train_log)
    losses = frame.dropna(subset=["loss"])
    fig, (ax, speed_ax) = plt.subplots(2, 1, figsize=(8, 6), dpi=110, sharex=True, height_ratios=[3, 1])
    ax.plot(losses["step"], losses["loss"], color="#9ab", lw=1, label="training loss")
    ax.plot(
        losses["step"],
        losses["loss"].ewm(alpha=1 - smoothing).mean(),
        color="#146",
        lw=2,
        label=f"training loss (EMA {smoothing})",
    )
    evals = frame.dropna(subset=["eval_loss"])
    if not evals.empty:
        ax.plot(evals["step"], evals["eval_loss"], "o-", color="#c50", lw=1.5, label="validation loss")
    ax.set_ylabel("loss per labelled token")
    lr_axis = ax.twinx()
    lr_axis.plot(losses["step"], losses["learning_rate"], color="#8a4", ls="--", lw=1, label="learning rate")
    lr_axis.set_ylabel("learning rate")
    handles = ax.get_legend_handles_labels()[0] + lr_axis.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    speed_ax.plot(losses["step"], losses["tokens_per_second"], color="#146", lw=1)
    speed_ax.set_ylabel("tokens / s")
    speed_ax.set_xlabel("optimizer step")
    speed_ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, out)


def plot_lengths(tokenized: str, out: str, max_len: int) -> None:
    import datasets

    plt = _figure()
    lengths = datasets.load_from_disk(tokenized)["train"]["length"]
    fig, ax = plt.subplots(figsize=(8, 3.5), dpi=110)
    ax.hist(list(lengths), bins=40, color="#146")
    ax.axvline(max_len, color="#c50", ls="--", label=f"max_len = {max_len}")
    ax.set_xlabel("tokens per training example")
    ax.set_ylabel("examples")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, out)


def _save(fig, out: str) -> None:
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    _figure().close(fig)


def plots(args) -> None:
    plot_training_curve(args.train_log, args.curve, args.smoothing)
    plot_lengths(args.tokenized, args.lengths, args.max_len)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plots.py", description=__doc__)
    parser.add_argument("--train-log", required=True, help="train_log.csv")
    parser.add_argument("--tokenized", required=True, help="tokenized DatasetDict folder")
    parser.add_argument("--curve", required=True, help="output: training curve PNG")
    parser.add_argument("--lengths", required=True, help="output: length histogram PNG")
    settings.add_options(parser, "plots")
    return parser


if __name__ == "__main__":
    stage.run(plots, build_parser(), globals())
