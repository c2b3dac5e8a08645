"""Experiments: named runs as overrides of the base configuration, a grid of them, and the stage keys that
let runs share every output they agree on.

A stage's output folder is named by a key: a short hash of the values that determine the output (the
rule's params, the keys of the stages it reads, and for prepare the raw file's path and content hash).
Runs that agree on a stage's inputs get the same key and share its files; runs that differ get their own.
Used by the workflow (rules/common.smk) and by the tests; it never imports a stage.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
from pathlib import Path

from ftpipe.settings import rule_params

RUN_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._~-]*"
KEY_PATTERN = r"[0-9a-f]{10}"

# The keyed stages in dependency order, each with the stages it reads.
# A stage's key covers its params and its upstream keys, so a change upstream gives every later stage a new key.
STAGE_UPSTREAM = {
    "prepare": (),
    "base_model": (),
    "tokenize": ("prepare", "base_model"),
    "pack": ("tokenize",),
    "train": ("pack", "base_model"),
    "base_eval": ("prepare", "base_model"),  # the evaluation's base-model variants: no adapter, so beside train
    "base_samples": ("prepare", "base_model"),  # generate's base-model variants: likewise
}
STAGE_FOLDERS = {
    "prepare": "results/data/prepared",
    "base_model": "results/base_model",
    "tokenize": "results/data/tokenized",
    "pack": "results/data/packed",
    "train": "results/train",
    "base_eval": "results/base_eval",
    "base_samples": "results/base_samples",
}


def stage_params(stage: str, config: dict) -> dict:
    """The params of a keyed stage's rule: every value that changes the stage's output (ftpipe.settings
    declares which config values feed which rule)."""
    if stage not in STAGE_UPSTREAM:
        raise KeyError(stage)
    return rule_params(stage, config)


# ---------------------------------------------------------------- runs


def deep_merge(base: dict, overrides: dict) -> dict:
    """`base` with `overrides` applied: mappings merge key by key, anything else (lists too) is replaced."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def nested(dotted: str, value) -> dict:
    """{"train": {"lora": {"r": 8}}} from ("train.lora.r", 8)."""
    out = value
    for part in reversed(dotted.split(".")):
        out = {part: out}
    return out


def grid_runs(grid: dict) -> dict[str, dict]:
    """Named runs of a grid: every combination of the axes' values (the first axis varies slowest, values in
    the order written), each the grid's `overrides` plus one value per axis. Names come from Snakemake's
    Paramspace over the combinations, with each axis named by the last part of its path (more parts where
    two axes would share a name): `r~8_learning_rate~0.0001`."""
    import pandas as pd
    from snakemake.utils import Paramspace

    axes = grid.get("axes") or {}
    if not axes:
        return {}
    columns = axis_names(list(axes))
    frame = pd.DataFrame(list(itertools.product(*axes.values())), columns=columns, dtype=object)
    names = list(Paramspace(frame, filename_params="*", single_wildcard="run").instance_patterns)
    prefix = grid.get("name", "")
    runs = {}
    for name, values in zip(names, itertools.product(*axes.values()), strict=True):
        overrides = copy.deepcopy(grid.get("overrides") or {})
        for path, value in zip(axes, values, strict=True):
            overrides = deep_merge(overrides, nested(path, value))
        runs[f"{prefix}{name}"] = overrides
    return runs


def axis_names(paths: list[str]) -> list[str]:
    """The shortest distinct tail of each dotted path, joined by `_` (a valid column name for Paramspace)."""
    for depth in range(1, max(len(path.split(".")) for path in paths) + 1):
        names = ["_".join(path.split(".")[-depth:]) for path in paths]
        if len(set(names)) == len(names):
            return names
    raise ValueError(f"grid axes repeat a path: {paths}")


def run_overrides(config: dict) -> dict[str, dict]:
    """Every run's overrides, in order: the named runs, then the grid's. Without an `experiment` section, the
    base configuration is one run named `run_name`."""
    experiment = config.get("experiment") or {}
    runs = dict(experiment.get("runs") or {})
    for name, overrides in grid_runs(experiment.get("grid") or {}).items():
        if name in runs:
            raise ValueError(f"experiment: the grid's run {name!r} is also a named run")
        runs[name] = overrides
    if not runs:
        return {config["run_name"]: {}}
    return {name: overrides or {} for name, overrides in runs.items()}


def base_config(config: dict) -> dict:
    return {key: value for key, value in config.items() if key != "experiment"}


def run_configs(config: dict) -> dict[str, dict]:
    """Every run's whole configuration: the base with the run's overrides applied, keys sorted at every level
    (Snakemake compares params by their repr, in which the order of a mapping's keys shows: the order in
    which overrides were merged must not look like a change)."""
    base = base_config(config)
    return {name: sorted_keys(deep_merge(base, overrides)) for name, overrides in run_overrides(config).items()}


def sorted_keys(value):
    if isinstance(value, dict):
        return {key: sorted_keys(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [sorted_keys(item) for item in value]
    return value


def baseline_run(config: dict) -> str:
    """The run the others are compared against: `experiment.baseline`, else the first run."""
    names = list(run_overrides(config))
    baseline = (config.get("experiment") or {}).get("baseline") or names[0]
    if baseline not in names:
        raise ValueError(f"experiment.baseline: {baseline!r} is not a run (runs: {', '.join(names)})")
    return baseline


def differences(baseline: dict, other: dict, prefix: str = "") -> dict:
    """The dotted keys whose values differ between two configurations, with the other's value."""
    out = {}
    for key in sorted(set(baseline) | set(other)):
        path, a, b = f"{prefix}{key}", baseline.get(key), other.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out.update(differences(a, b, f"{path}."))
        elif a != b:
            out[path] = b
    return out


# ---------------------------------------------------------------- stage keys


def short_hash(value) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


class SourceHashes:
    """sha256 of raw input files, cached by (path, size, mtime) in a JSON file, so that a large file is read
    once and a touch alone does not change its key."""

    def __init__(self, cache_file: str | os.PathLike | None):
        self.cache_file = Path(cache_file) if cache_file else None
        self.cache = {}
        if self.cache_file and self.cache_file.exists():
            try:
                self.cache = json.loads(self.cache_file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                self.cache = {}

    def __call__(self, path: str) -> str:
        file = Path(path)
        if not file.is_file():
            return "missing"  # Snakemake then reports the missing input
        stat = file.stat()
        stamp = f"{file.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        if self.cache.get(stamp) is None:
            digest = hashlib.sha256()
            with open(file, "rb") as handle:
                while block := handle.read(8 << 20):
                    digest.update(block)
            self.cache[stamp] = digest.hexdigest()
            self._save()
        return self.cache[stamp]

    def _save(self) -> None:
        if self.cache_file is None:
            return
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_file.with_name(f".{self.cache_file.name}.{os.getpid()}")
        tmp.write_text(json.dumps(self.cache, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.cache_file)


class ExperimentPlan:
    """The runs, each run's stage keys, and for each key the values it stands for."""

    def __init__(self, config: dict, source_hash=None):
        self.runs = run_configs(config)
        self.baseline = baseline_run(config)
        self.overrides = run_overrides(config)
        source_hash = source_hash or SourceHashes(None)
        self.keys: dict[str, dict[str, str]] = {}
        self.records: dict[str, dict[str, dict]] = {stage: {} for stage in STAGE_UPSTREAM}
        for name, run_config in self.runs.items():
            keys = {}
            for stage, upstream in STAGE_UPSTREAM.items():
                record = {
                    "stage": stage,
                    "params": stage_params(stage, run_config),
                    "upstream": {up: keys[up] for up in upstream},
                }
                if stage == "prepare":
                    raw = run_config["data"]["raw"]
                    record["source"] = {"path": raw, "sha256": source_hash(raw)}
                keys[stage] = short_hash(record)
                self.records[stage].setdefault(keys[stage], {**record, "key": keys[stage], "config": run_config})
            self.keys[name] = keys

    def params(self, stage: str, key: str) -> dict:
        return self.records[stage][key]["params"]

    def config_of_key(self, stage: str, key: str) -> dict:
        """The configuration of a run that uses this key (all such runs agree on what the stage reads)."""
        return self.records[stage][key]["config"]

    def upstream_key(self, stage: str, key: str, upstream: str) -> str:
        return self.records[stage][key]["upstream"][upstream]

    def runs_using(self, stage: str, key: str) -> list[str]:
        return [name for name, keys in self.keys.items() if keys[stage] == key]

    def folder(self, stage: str, key: str) -> str:
        return f"{STAGE_FOLDERS[stage]}/{key}"

    def stage_file(self, stage: str, key: str) -> dict:
        """The readable params.json written beside a stage's outputs."""
        record = self.records[stage][key]
        return {name: value for name, value in record.items() if name != "config"}

    def lineage(self, run: str) -> dict:
        """Which stage outputs a run uses, and what each stands for."""
        return sorted_keys(
            {
                "run": run,
                "baseline": self.baseline,
                "overrides": self.overrides[run],
                "differs_from_baseline": differences(self.runs[self.baseline], self.runs[run]),
                "stages": {
                    stage: {"folder": self.folder(stage, key), **self.stage_file(stage, key)}
                    for stage, key in self.keys[run].items()
                },
            }
        )
