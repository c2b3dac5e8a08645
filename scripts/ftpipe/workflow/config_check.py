"""Config validation with messages a person can act on: the key's path, the problem, and for an unknown
key the nearest valid name. Called by the Snakefile before any job starts."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path

import jsonschema
import yaml

from ftpipe.model_source import source_problem
from ftpipe.settings import resolve as _resolve
from ftpipe.settings import typed as _typed
from ftpipe.workflow.experiments import RUN_NAME_PATTERN, base_config, baseline_run, deep_merge, run_overrides


class ConfigError(ValueError):
    pass


# Values that were renamed: `reference` meant the seed notebook's recipe (tokenize.overlong, pack.mode).
RENAMED_VALUES = {"reference": "seed"}


def config_problems(config: dict, schema: dict) -> list[str]:
    """Every problem of `config` against `schema`, one readable line each."""
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path))):
        where = ".".join(map(str, error.absolute_path)) or "(top level)"
        if error.validator == "additionalProperties":
            allowed = list(error.schema.get("properties", {}))
            for key in sorted(set(error.instance) - set(allowed)):
                near = difflib.get_close_matches(key, allowed, n=1)
                hint = f"; did you mean '{near[0]}'?" if near else f"; valid keys: {', '.join(allowed)}"
                problems.append(f"{_join(where, key)}: unknown key{hint}")
        elif error.validator == "enum" and error.instance in RENAMED_VALUES:
            new_name = RENAMED_VALUES[error.instance]
            problems.append(f"{where}: {error.instance!r} is now called {new_name!r}; write {where}: {new_name}")
        else:
            problems.append(f"{where}: {error.message}")
    return problems


def recipe_problems(config: dict) -> list[str]:
    """Settings that are each valid but do not go together, or that cannot work on this machine."""
    problems = []
    train = config.get("train", {})
    dropout = train.get("lora", {}).get("dropout", 0)
    if train.get("speed", {}).get("fused_lora") is True and dropout:
        problems.append(
            f"train.speed.fused_lora: needs train.lora.dropout 0 (it is {dropout}); or use fused_lora: auto"
        )
    if train.get("speed", {}).get("fused_dropout_lora") is True and not dropout:
        problems.append(
            "train.speed.fused_dropout_lora: needs train.lora.dropout > 0 (it is 0); or use fused_dropout_lora: auto"
        )
    data = config.get("data", {})
    validation, test = data.get("validation_fraction", 0.05), data.get("test_fraction", 0.05)
    if validation + test >= 1:
        problems.append(
            f"data.validation_fraction + data.test_fraction: {validation} + {test} leaves no rows for training; "
            "keep the sum below 1"
        )
    source = config.get("model", {}).get("source")
    if isinstance(source, str) and (problem := source_problem(source)):
        problems.append(f"model.source: {problem}")
    return problems


def coerce_command_line(config: dict, command_line, schema: dict, where: tuple = ()) -> None:
    """Give values from `--config` their YAML types where the schema wants them: Snakemake reads a nested
    `--config 'train={max_steps: 10}'` with YAML's base loader, so every value in it arrives as a string.
    A string the schema accepts as it is (a prompt, a name) stays a string."""
    for key, value in command_line.items():
        path = (*where, key)
        if isinstance(value, Mapping):
            coerce_command_line(config, value, schema, path)
        elif isinstance(value, str):
            _set(config, path, _typed(value, _subschema(schema, path)))
        elif isinstance(value, list) and all(isinstance(item, str) for item in value):
            items = _subschema(schema, path).get("items", {})
            _set(config, path, [_typed(item, _resolve(schema, items)) for item in value])


def _subschema(schema: dict, path: tuple) -> dict:
    if path[:2] in (("experiment", "runs"), ("experiment", "grid")) and len(path) > 3:
        path = path[3:]  # a run's overrides (or the grid's) follow the base configuration's schema
    node = schema
    for key in path:
        node = _resolve(schema, node).get("properties", {}).get(key)
        if node is None:
            return {}
    return _resolve(schema, node)


def _set(config: dict, path: tuple, value) -> None:
    node = config
    for key in path[:-1]:
        node = node.get(key)
        if not isinstance(node, dict):
            return  # not merged into the config (Snakemake merges --config first): nothing to type
    node[path[-1]] = value


def _join(where: str, key: str) -> str:
    return key if where == "(top level)" else f"{where}.{key}"


def experiment_problems(config: dict, schema: dict) -> list[str]:
    """Each run's whole configuration checked like the base one, problems named under the run's overrides."""
    try:
        runs = run_overrides(config)
        baseline_run(config)
    except ValueError as err:
        return [str(err)]
    if "experiment" not in config:
        return []
    base, problems = base_config(config), []
    grid_runs = set(runs) - set((config["experiment"] or {}).get("runs") or {})
    for name, overrides in runs.items():
        where = f"experiment.grid (run {name})" if name in grid_runs else f"experiment.runs.{name}"
        if not re.fullmatch(RUN_NAME_PATTERN, name):
            problems.append(f"{where}: the run name may hold letters, digits and . _ ~ - only")
        for key in sorted(set(overrides) & {"run_name", "experiment"}):
            problems.append(f"{where}.{key}: a run cannot override {key}")
        overrides = {key: value for key, value in overrides.items() if key not in ("run_name", "experiment")}
        merged = deep_merge(base, overrides)
        found = config_problems(merged, schema) + recipe_problems(merged)
        for path in missing_in_base(base, overrides):
            if not any(problem.startswith(f"{path}:") for problem in found):  # else unknown to the schema too
                found.append(f"{path}: not set in the base configuration (every run needs every key: set it there)")
        problems += [f"{where}.{problem}" for problem in found]
    return problems


def missing_in_base(base: dict, overrides: dict, prefix: str = "") -> list[str]:
    """Dotted paths of overridden keys that the base configuration does not have."""
    paths = []
    for key, value in overrides.items():
        if key not in base:
            paths.append(f"{prefix}{key}")
        elif isinstance(value, dict) and isinstance(base[key], dict):
            paths += missing_in_base(base[key], value, f"{prefix}{key}.")
    return paths


def check_config(config: dict, schema_path: str | Path, command_line=None) -> None:
    """Raise ConfigError naming every problem; values from `--config` (`command_line`) are typed first."""
    schema = yaml.safe_load(Path(schema_path).read_text(encoding="utf-8"))
    coerce_command_line(config, command_line or {}, schema)
    problems = config_problems(config, schema) or recipe_problems(config) or experiment_problems(config, schema)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
