"""The recipe comparison on real catalogs: the seed notebook's recipe against the project's, and candidate
defaults against the project's, on every catalog given, with several training seeds; paired intervals per
catalog and the spread across seeds.

    python bench/quality.py run bench/work/catalogs/magento.jsonl shop=path/to/shop.csv ... \\
        --seeds 1 2 --cores 16 [--recipes FILE] [--only-recipes NAME ...] [--metrics-only] \\
        [--model-source FOLDER] [--steps N] [--titles N] [--extra-config YAML] [--job-threads N]

A catalog is a file the workflow's prepare stage reads (named by its file stem, or NAME=PATH). The recipes are
the runs of bench/quality_recipes.yaml (--recipes): `seed` (the seed notebook's: one token stream cut into
blocks, loss on the prompt too), `project` (this project's default) and candidates, each one change against
`project` (--only-recipes picks some; seed and project always run), with presets/ablation.yaml's shared
settings (test split, scored titles). One Snakemake experiment holds every run, `<catalog>.<recipe>.s<seed>`:
the data is prepared once per catalog, the base model once, and a candidate that changes only metrics.*
settings reuses project's adapter. Per catalog and training seed this script pairs, on the same titles
(paired bootstrap), project minus seed recipe and each candidate minus project; over the seeds it reports
each pair's mean, min and max and how many seeds' intervals lie above or below 0; over all catalogs and seeds,
a verdict per candidate (docs/quality.md says the rule).

Writes bench/results/quality.json and bench/results/quality.md (the table). `table` rewrites both from a
finished work folder without training (give it the same recipe options). --metrics-only asks the workflow
for every run's metrics.json only (no generate, plots or comparison page). On the GPU machine give
--model-source the folder that `bench/model_parts.py join` writes (docs/quality.md has the device commands).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from ftpipe.scoring import paired_difference  # noqa: E402
from ftpipe.workflow.experiments import deep_merge  # noqa: E402

RECIPES = ("seed", "project")  # the headline pair, always run: the seed recipe first
VERDICT_MEASURES = ("rouge_l", "chrf_beta1")  # a candidate's verdict counts their paired intervals
MEASURES = (
    "rouge_l",
    "rouge_l_precision",
    "rouge_l_recall",
    "chrf",
    "chrf_beta1",
    "distinct_2",
    "length_ratio",
    "title_coverage",
)
DEFAULT_WORK = ROOT / "bench" / "work" / "quality"
DEFAULT_RESULTS = ROOT / "bench" / "results"
DEFAULT_RECIPES = ROOT / "bench" / "quality_recipes.yaml"


def catalog_arg(text: str) -> tuple[str, Path]:
    """NAME=PATH or PATH (named by its stem)."""
    name, _, path = text.rpartition("=") if "=" in text else ("", "", text)
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no catalog file at {path}")
    name = name or path.name.split(".")[0]
    return name.replace("_", "-"), path


def run_name(catalog: str, recipe: str, seed: int) -> str:
    return f"{catalog}.{recipe}.s{seed}"


def load_recipes(path: Path, only: list[str] | None = None) -> dict[str, dict]:
    """Recipe name -> its overrides of config.yaml, from a recipes file's `runs`: seed, project, then the
    candidates (those in `only`, or all), each with its overrides applied over project's."""
    runs = (yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}).get("runs") or {}
    missing = [name for name in RECIPES if name not in runs]
    if missing:
        raise SystemExit(f"quality: {path}: `runs` has no {missing} (the headline pair always runs)")
    unknown = sorted(set(only or ()) - set(runs))
    if unknown:
        raise SystemExit(f"quality: {path}: no recipes named {unknown}; it has {sorted(runs)}")
    project = runs["project"] or {}
    recipes = {"seed": runs["seed"] or {}, "project": project}
    for name, overrides in runs.items():
        if name not in RECIPES and (not only or name in only):
            recipes[name] = deep_merge(project, overrides or {})
    return recipes


def experiment_config(catalogs: dict[str, Path], seeds: list[int], args) -> dict:
    """The configuration merged over config.yaml: the ablation's shared settings, the options, and one run per
    catalog, recipe and seed."""
    ablation = yaml.safe_load((ROOT / "presets" / "ablation.yaml").read_text(encoding="utf-8"))
    recipes = load_recipes(args.recipes, args.only_recipes)
    shared = {key: value for key, value in ablation.items() if key != "experiment"}
    if args.model_source:
        folder = Path(args.model_source).expanduser()  # Snakemake runs in the work folder: a folder goes absolute
        source = str(folder.resolve()) if folder.is_dir() else args.model_source
        shared = deep_merge(shared, {"model": {"source": source}})
    if args.steps:
        shared = deep_merge(shared, {"train": {"max_steps": args.steps}})
    if args.titles:
        shared = deep_merge(shared, {"metrics": {"num_titles": args.titles}})
    if args.extra_config:
        shared = deep_merge(shared, yaml.safe_load(args.extra_config) or {})
    runs = {}
    for catalog, path in catalogs.items():
        for seed in seeds:
            for recipe, overrides in recipes.items():
                where = {"data": {"raw": str(path)}, "train": {"seed": seed}}
                runs[run_name(catalog, recipe, seed)] = deep_merge(overrides, where)
    first = next(iter(catalogs))
    return {**shared, "experiment": {"baseline": run_name(first, RECIPES[0], seeds[0]), "runs": runs}}


def metrics_targets(config: dict) -> list[str]:
    """Every run's metrics.json: the workflow's targets with --metrics-only."""
    return [f"results/runs/{name}/metrics.json" for name in config["experiment"]["runs"]]


def run_workflow(
    work: Path, config: dict, cores: int, timeout: int, job_threads: int | None = None, targets: list[str] | None = None
) -> dict:
    """`snakemake results/compare.html` (or the given targets) over the experiment in `work`; returns the
    return code and seconds. With `job_threads`, the torch rules take that many threads instead of every core,
    so several runs' jobs share one GPU side by side (small models leave most of it idle)."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "quality.yaml").write_text(json.dumps(config, indent=1) + "\n")  # JSON is YAML
    shutil.copy(ROOT / "config.yaml", work / "config.yaml")  # the Snakefile's `configfile:` is read from there
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work)]
    command += ["--cores", str(cores), "--configfile", str(work / "config.yaml"), str(work / "quality.yaml")]
    # --keep-going: one failing run leaves the others to finish; the table lists it as missing.
    command += ["--nocolor", "--rerun-incomplete", "--keep-going", *(targets or ["results/compare.html"])]
    if job_threads:
        rules = ("tokenize", "train", "generate", "base_samples", "base_eval", "metrics")
        command += ["--set-threads", *(f"{rule}={job_threads}" for rule in rules)]
    # A run stopped at a time limit leaves its lock: the next call goes on from the finished jobs.
    subprocess.run([*command, "--unlock"], capture_output=True, check=False)
    started = time.perf_counter()
    with open(work / "snakemake.log", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGTERM)  # Snakemake and its jobs (its own process group)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            code = None
    return {"command": " ".join(command), "returncode": code, "seconds": round(time.perf_counter() - started, 1)}


def spread(values: list[float]) -> dict:
    """Mean, min and max over seeds (and the sample standard deviation from two seeds on)."""
    out = {"mean": round(statistics.fmean(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}
    out["sd"] = round(statistics.stdev(values), 3) if len(values) > 1 else None
    return out


def summarize(work: Path, catalogs: list[str], seeds: list[int], recipes: list[str] = RECIPES) -> dict:
    """Per catalog: per seed, each recipe's scores, the paired difference project minus seed recipe and each
    candidate's minus project; over the seeds, the spread of each and the count of seeds whose paired interval
    lies above or below 0. `recipes`: seed, project, then the candidates."""
    candidates = [recipe for recipe in recipes if recipe not in RECIPES]
    table = {}
    for catalog in catalogs:
        per_seed = {}
        for seed in seeds:
            paths = {r: work / "results" / "runs" / run_name(catalog, r, seed) / "metrics.json" for r in recipes}
            if not all(paths[recipe].exists() for recipe in RECIPES):
                per_seed[seed] = {"missing": [str(path) for path in paths.values() if not path.exists()]}
                continue
            metrics = {recipe: json.loads(path.read_text()) for recipe, path in paths.items() if path.exists()}
            project = metrics["project"]
            for recipe, run in metrics.items():
                if run["sample"]["titles_sha256"] != project["sample"]["titles_sha256"]:
                    raise SystemExit(f"quality: {catalog} seed {seed}: {recipe} and project scored different titles")
            scored = list(metrics)
            per_seed[seed] = {
                "titles": project["sample"]["n"],
                "max_new_tokens": project["settings"]["max_new_tokens"],
                "scores": {r: {m: metrics[r]["variants"]["adapter"][m] for m in MEASURES} for r in scored},
                "hit_cap": {r: metrics[r]["endings"]["adapter"]["hit_cap"] for r in scored},
                "project_minus_seed": paired(metrics["seed"], project),
                "candidate_minus_project": {c: paired(project, metrics[c]) for c in candidates if c in metrics},
                "missing": [str(paths[c]) for c in candidates if c not in metrics],
                "contamination_ngram_overlap": (project["contamination"].get("ngram_overlap") or {}).get("mean"),
            }
        done = [entry for entry in per_seed.values() if "scores" in entry]
        over_seeds = None
        if done:
            headline = over_pairs([entry["project_minus_seed"] for entry in done])
            candidate_pairs = {
                c: [e["candidate_minus_project"][c] for e in done if c in e["candidate_minus_project"]]
                for c in candidates
            }
            over_seeds = {
                "scores": {
                    r: {m: spread([entry["scores"][r][m]["mean"] for entry in done]) for m in MEASURES} for r in RECIPES
                },
                "project_minus_seed": headline["minus"],
                "intervals_above_zero": headline["intervals_above_zero"],
                "intervals_below_zero": headline["intervals_below_zero"],
                "candidate_minus_project": {c: over_pairs(pairs) for c, pairs in candidate_pairs.items() if pairs},
                "seeds": len(done),
            }
        table[catalog] = {"per_seed": per_seed, "over_seeds": over_seeds}
    return table


def paired(reference: dict, other: dict) -> dict:
    """Per measure, the paired bootstrap interval of `other` minus `reference` (two metrics.json on the same
    titles), with the bootstrap's seed of the metrics stage."""
    return {
        m: paired_difference(
            reference["per_example"]["adapter"][m], other["per_example"]["adapter"][m], other["settings"]["seed"]
        )
        for m in MEASURES
    }


def over_pairs(pairs: list[dict]) -> dict:
    """One pair's paired intervals over the seeds: the spread of the differences and how many seeds' intervals
    lie above 0 and below 0, per measure."""
    return {
        "minus": {m: spread([pair[m]["mean"] for pair in pairs]) for m in MEASURES},
        "intervals_above_zero": {m: sum(pair[m]["low"] > 0 for pair in pairs) for m in MEASURES},
        "intervals_below_zero": {m: sum(pair[m]["high"] < 0 for pair in pairs) for m in MEASURES},
        "seeds": len(pairs),
    }


def verdicts(table: dict, unjudged: tuple[str, ...] = ()) -> dict:
    """Per candidate over every catalog and seed: how many paired intervals (candidate minus project) of each
    verdict measure lie above 0 and below 0, of how many; and the verdict: `change` only where some interval
    lies above 0 on every catalog and none below 0 anywhere, else `keep` project's default. Catalogs in
    `unjudged` (the synthetic demo) are shown in the table but count for no verdict."""
    out = {}
    table = {catalog: entry for catalog, entry in table.items() if catalog not in unjudged}
    for catalog, entry in table.items():
        for row in entry["per_seed"].values():
            for candidate, pair in row.get("candidate_minus_project", {}).items():
                record = out.setdefault(
                    candidate,
                    {"measures": {m: {"above": 0, "below": 0, "pairs": 0} for m in VERDICT_MEASURES}, "won_on": set()},
                )
                for m in VERDICT_MEASURES:
                    counts = record["measures"][m]
                    counts["above"] += pair[m]["low"] > 0
                    counts["below"] += pair[m]["high"] < 0
                    counts["pairs"] += 1
                    if pair[m]["low"] > 0:
                        record["won_on"].add(catalog)
    catalogs = [catalog for catalog, entry in table.items() if entry["over_seeds"]]
    for record in out.values():
        won_on = record.pop("won_on")
        below = sum(counts["below"] for counts in record["measures"].values())
        record["catalogs_above_zero"] = sorted(won_on)
        record["verdict"] = "change" if not below and set(catalogs) <= won_on else "keep"
    return out


def markdown(table: dict, unjudged: tuple[str, ...] = ()) -> str:
    """One row per catalog and seed (paired intervals), then one per catalog over the seeds (mean [min, max])."""

    def interval(value: dict) -> str:
        return f"{value['mean']:+.1f} [{value['low']:+.1f}, {value['high']:+.1f}]"

    def ranged(value: dict, signed: bool = False) -> str:
        sign = "+" if signed else ""
        return f"{value['mean']:{sign}.1f} ({value['min']:{sign}.1f} to {value['max']:{sign}.1f})"

    shown = ("rouge_l", "rouge_l_precision", "rouge_l_recall", "chrf", "chrf_beta1")
    lines = [
        "Project recipe minus seed recipe (paired bootstrap 95% intervals on the same titles), SmolLM2-135M adapters.",
        "",
        "| catalog | seed | titles | budget | hit cap seed / project | ROUGE-L seed → project | "
        + " | ".join(f"{m} (paired)" for m in shown)
        + " | length ratio seed → project |",
        "| --- | --- | --- | --- | --- | --- | " + " | ".join("---" for _ in shown) + " | --- |",
    ]
    for catalog, entry in table.items():
        for seed, row in entry["per_seed"].items():
            if "scores" not in row:
                lines.append(f"| {catalog} | {seed} | missing | | | | " + " | ".join("" for _ in shown) + " | |")
                continue
            scores, diff = row["scores"], row["project_minus_seed"]
            lengths = (scores[recipe]["length_ratio"]["mean"] for recipe in RECIPES)
            lines.append(
                f"| {catalog} | {seed} | {row['titles']} | {row['max_new_tokens']} | "
                f"{row['hit_cap']['seed']} / {row['hit_cap']['project']} | "
                f"{scores['seed']['rouge_l']['mean']:.1f} → {scores['project']['rouge_l']['mean']:.1f} | "
                + " | ".join(interval(diff[m]) for m in shown)
                + " | {:.2f} → {:.2f} |".format(*lengths)
            )
        over = entry["over_seeds"]
        if over:
            lines.append(
                f"| **{catalog}** | **{over['seeds']} seeds: mean (min to max)** | | | | "
                f"{ranged(over['scores']['seed']['rouge_l'])} → {ranged(over['scores']['project']['rouge_l'])} | "
                + " | ".join(ranged(over["project_minus_seed"][m], True) for m in shown)
                + " | |"
            )
    return "\n".join(lines + candidate_lines(table, unjudged)) + "\n"


def candidate_lines(table: dict, unjudged: tuple[str, ...] = ()) -> list[str]:
    """The second section: per candidate and catalog, candidate minus project over the seeds (mean (min to
    max) of the paired differences; seeds whose interval lies above / below 0), then a verdict per candidate."""
    judged = verdicts(table, unjudged)
    if not judged:
        return []
    ratio, signed = "length_ratio", lambda v, f: f"{v['mean']:+{f}} ({v['min']:+{f}} to {v['max']:+{f}})"
    lines = [
        "",
        "## Candidate defaults: candidate minus project",
        "",
        "Paired on the same titles per catalog and seed; over the seeds: mean (min to max) of the paired "
        "differences, and how many seeds' 95% intervals lie above / below 0.",
        "",
        "| candidate | catalog | seeds | ROUGE-L (paired) | chrF β=1 (paired) | length ratio (paired) | "
        "ROUGE-L above / below 0 | chrF β=1 above / below 0 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for candidate in judged:
        for catalog, entry in table.items():
            pair = ((entry["over_seeds"] or {}).get("candidate_minus_project") or {}).get(candidate)
            if not pair:
                continue
            above, below = pair["intervals_above_zero"], pair["intervals_below_zero"]
            shown_as = f"{catalog} (not judged)" if catalog in unjudged else catalog
            lines.append(
                f"| {candidate} | {shown_as} | {pair['seeds']} | {signed(pair['minus']['rouge_l'], '.1f')} | "
                f"{signed(pair['minus']['chrf_beta1'], '.1f')} | {signed(pair['minus'][ratio], '.2f')} | "
                f"{above['rouge_l']} / {below['rouge_l']} | {above['chrf_beta1']} / {below['chrf_beta1']} |"
            )
    lines.append("")
    for candidate, record in judged.items():
        pairs = max(c["pairs"] for c in record["measures"].values())
        counts = "; ".join(
            f"{measure} above 0 in {c['above']}, below 0 in {c['below']}" for measure, c in record["measures"].items()
        )
        action = "change the default" if record["verdict"] == "change" else "keep project's default"
        lines.append(f"- **{candidate}** ({pairs} catalog × seed pairs): {counts}: {action}.")
    return lines


def write_results(results_dir: Path, record: dict) -> None:
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "quality.json").write_text(json.dumps(record, indent=1) + "\n")
    (results_dir / "quality.md").write_text(markdown(record["table"], tuple(record["unjudged"])))


def earlier_run(path: Path, catalogs: dict) -> dict:
    """What `run` recorded of the workflow (command, seconds, settings, device), kept by `table` when it
    re-summarizes the same catalogs."""
    if not path.exists():
        return {}
    earlier = json.loads(path.read_text())
    if earlier.get("catalogs") != catalogs:
        return {}
    return {key: earlier[key] for key in ("workflow", "settings", "device") if key in earlier}


def device_name() -> str:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "table"):
        sub = commands.add_parser(name, help="train and score every run" if name == "run" else "re-summarize")
        sub.add_argument("catalogs", nargs="+", type=catalog_arg, help="catalog files (PATH or NAME=PATH)")
        sub.add_argument("--seeds", type=int, nargs="+", default=[1, 2], help="training seeds (two or more)")
        sub.add_argument("--work", type=Path, default=DEFAULT_WORK, help="the experiment's work folder")
        sub.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS)
        sub.add_argument("--recipes", type=Path, default=DEFAULT_RECIPES, help="the recipes file (its `runs`)")
        sub.add_argument(
            "--only-recipes", nargs="+", metavar="NAME", help="these candidates only (seed and project always run)"
        )
        sub.add_argument(
            "--unjudged",
            nargs="+",
            default=[],
            metavar="NAME",
            help="catalogs shown in the table but counted in no verdict (a synthetic one, e.g. the demo)",
        )
    run = commands.choices["run"]
    run.add_argument("--cores", type=int, default=os.cpu_count())
    run.add_argument("--model-source", help="model.source: a local model folder (default: config.yaml's)")
    run.add_argument("--steps", type=int, help="train.max_steps (default: config.yaml's)")
    run.add_argument("--titles", type=int, help="metrics.num_titles (default: presets/ablation.yaml's 60)")
    run.add_argument("--extra-config", help="YAML merged into every run, e.g. '{metrics: {batch_size: 64}}'")
    run.add_argument("--timeout", type=int, default=None, help="seconds before the workflow is stopped")
    run.add_argument(
        "--metrics-only",
        action="store_true",
        help="target every run's metrics.json, not results/compare.html (no generate, plots or report jobs)",
    )
    run.add_argument(
        "--job-threads", type=int, help="threads of each torch job (default: every core, one job at a time)"
    )
    args = parser.parse_args()
    catalogs = dict(args.catalogs)
    if len(catalogs) != len(args.catalogs):
        parser.error("two catalogs share a name: name them NAME=PATH")
    recipes = load_recipes(args.recipes, args.only_recipes)
    record = {"catalogs": {name: str(path) for name, path in catalogs.items()}, "seeds": args.seeds}
    record["recipes"] = recipes
    record["unjudged"] = [name for name in args.unjudged if name in catalogs]
    if len(record["unjudged"]) != len(args.unjudged):
        parser.error(f"--unjudged names a catalog that is not given: {args.unjudged}")
    if args.command == "run":
        if len(args.seeds) < 2:
            print("quality: one training seed shows no spread; give --seeds with two or more", file=sys.stderr)
        config = experiment_config(catalogs, args.seeds, args)
        targets = metrics_targets(config) if args.metrics_only else None
        record["workflow"] = run_workflow(args.work, config, args.cores, args.timeout, args.job_threads, targets)
        record["settings"] = {key: value for key, value in config.items() if key != "experiment"}
        record["device"] = device_name()
        if record["workflow"]["returncode"] != 0:
            tail = (args.work / "snakemake.log").read_text(errors="replace")[-3000:]
            print(f"quality: the workflow failed ({record['workflow']['returncode']}); log tail:\n{tail}")
    record["table"] = summarize(args.work, list(catalogs), args.seeds, list(recipes))
    if args.command == "table":
        record.update(earlier_run(args.results_dir / "quality.json", record["catalogs"]))
    record["verdicts"] = verdicts(record["table"], tuple(record["unjudged"]))
    write_results(args.results_dir, record)
    print((args.results_dir / "quality.md").read_text())


if __name__ == "__main__":
    main()
