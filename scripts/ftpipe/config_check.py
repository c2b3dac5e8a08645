"""Config validation with messages a person can act on: the key's path, the problem, and for an unknown
key the nearest valid name. Called by the Snakefile before any job starts."""

from __future__ import annotations

import difflib
from pathlib import Path

import jsonschema
import yaml


class ConfigError(ValueError):
    pass


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
        else:
            problems.append(f"{where}: {error.message}")
    return problems


def recipe_problems(config: dict) -> list[str]:
    """Settings that are each valid but do not go together."""
    train = config.get("train", {})
    dropout = train.get("lora", {}).get("dropout", 0)
    speed = train.get("speed", {})
    if speed.get("fused_lora") is True and dropout:
        return [f"train.speed.fused_lora: needs train.lora.dropout 0 (it is {dropout}); or use fused_lora: auto"]
    if speed.get("fused_dropout_lora") is True and not dropout:
        return [
            "train.speed.fused_dropout_lora: needs train.lora.dropout > 0 (it is 0); or use fused_dropout_lora: auto"
        ]
    return []


def _join(where: str, key: str) -> str:
    return key if where == "(top level)" else f"{where}.{key}"


def check_config(config: dict, schema_path: str | Path) -> None:
    schema = yaml.safe_load(Path(schema_path).read_text(encoding="utf-8"))
    problems = config_problems(config, schema) or recipe_problems(config)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
