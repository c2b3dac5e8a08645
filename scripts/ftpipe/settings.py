"""Where a setting is declared: its type and description in schemas/config.schema.yaml, its one default in
config.yaml, and here which rule takes which config values as its params.

A rule's params are every value of its config section (less `resources`, which sets how a job runs, not what
it writes) plus a few values of other sections under the name its script takes. The workflow builds each
rule's params from this (rules/common.smk), the stage keys cover them (experiments.stage_params), and each
stage script derives its command-line options from it (`add_options`): the option's name is the param's, its
type and help come from the schema, its default from the shipped config.yaml. So a new setting is one entry
in the schema, its default in config.yaml, and its use in the script.
"""

from __future__ import annotations

import argparse
import json
from functools import cache
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "schemas" / "config.schema.yaml"
CONFIG_FILE = ROOT / "config.yaml"

# The config section each rule takes whole (section `data` describes the input data; the rule that reads it
# is `prepare`, named for what it does, as every rule is).
RULE_SECTIONS = {
    "prepare": "data",
    "base_model": "model",
    "tokenize": "tokenize",
    "pack": "pack",
    "train": "train",
    "generate": "generate",
    "base_samples": "generate",  # generate's base variants: its every setting decides their samples
    "metrics": "metrics",
    "export": "export",
    "plots": "plots",
}
# Single values of other sections a rule takes: param name -> dotted config path.
# The prompt is applied at tokenize (not prepare): a prompt edit re-tokenizes without re-reading the raw file.
PROMPT_TEMPLATES = {
    "prompt_format": "prompt.format",
    "instruction_template": "prompt.instruction",
    "response_template": "prompt.response",
}
PROMPT_FOR_GENERATION = {
    **PROMPT_TEMPLATES,
    "base_prompt_template": "prompt.base_plain",
    "stop_strings": "prompt.stop_strings",
    "quantization": "train.quantization",  # the base model is loaded for generation as for training
}
# The metrics values that decide the base variants' generations and perplexity (the base_eval stage runs
# them once for every run that agrees on these, the prompt and the data; metrics reads them from there).
BASE_EVAL_METRICS = (
    "num_titles",
    "perplexity_rows",
    "sample_seed",
    "max_new_tokens",
    "repetition_penalty",
    "no_repeat_ngram_size",
    "num_beams",
    "batch_size",  # batch composition (left padding) may change a greedy token
    "cache",
    "seed",  # torch's seed before generating
)
RULE_VALUES = {
    "tokenize": PROMPT_TEMPLATES,
    "pack": {"max_len": "tokenize.max_len"},
    "train": {"max_len": "tokenize.max_len"},
    "generate": PROMPT_FOR_GENERATION,
    "base_eval": {
        **PROMPT_FOR_GENERATION,
        "max_len": "tokenize.max_len",  # max_len bounds the auto budget
        **{name: f"metrics.{name}" for name in BASE_EVAL_METRICS},
    },
    "metrics": PROMPT_FOR_GENERATION,
    "plots": {"max_len": "tokenize.max_len"},
}
RULE_VALUES["base_samples"] = RULE_VALUES["generate"]  # the base variants of generate, prompted as it prompts
# Values that are no rule's params: the run's name (its folder), how a job runs, and the raw file (prepare's
# input: its content hash is part of prepare's key).
NOT_PARAMS = {"run_name", "data.raw"}
NOT_PARAM_KEYS = {"resources"}


def rule_param_paths(rule: str, config: dict) -> dict[str, str]:
    """The rule's params as param name -> dotted config path."""
    section = RULE_SECTIONS.get(rule)
    paths = {}
    if section is not None:
        for key in config[section]:
            path = f"{section}.{key}"
            if key not in NOT_PARAM_KEYS and path not in NOT_PARAMS:
                paths[key] = path
    return {**paths, **RULE_VALUES.get(rule, {})}


def rule_params(rule: str, config: dict) -> dict:
    """The values of a rule's params in `config` (a run's whole configuration)."""
    return {name: value_at(config, path) for name, path in rule_param_paths(rule, config).items()}


def value_at(config: dict, path: str):
    value = config
    for key in path.split("."):
        value = value[key]
    return value


# ---------------------------------------------------------------- the declaration's two files


@cache
def schema() -> dict:
    return yaml.safe_load(SCHEMA_FILE.read_text(encoding="utf-8"))


@cache
def _shipped_text() -> str:
    return json.dumps(yaml.safe_load(CONFIG_FILE.read_text(encoding="utf-8")))


def shipped_config() -> dict:
    """config.yaml as shipped (a fresh copy: callers may change it)."""
    return json.loads(_shipped_text())


def default(path: str):
    """The shipped default of one setting (dotted path)."""
    return value_at(shipped_config(), path)


def subschema(path: tuple | str, root: dict | None = None) -> dict:
    """The schema of the value at `path` ({} where the schema does not describe it)."""
    root = root or schema()
    node = root
    for key in path.split(".") if isinstance(path, str) else path:
        node = resolve(root, node).get("properties", {}).get(key)
        if node is None:
            return {}
    return resolve(root, node)


def resolve(root: dict, node: dict) -> dict:
    """`node` with a local $ref ("#/$defs/name") replaced by what it points to."""
    ref = node.get("$ref", "")
    if ref.startswith("#/"):
        target = root
        for part in ref[2:].split("/"):
            target = target[part]
        return {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def typed(text: str, node: dict):
    """`text` read as YAML where the schema refuses it as a string; kept as written where a string may be
    meant (so a bad prompt is reported as a bad prompt, not as a wrong type)."""
    if not node:
        return text
    valid = jsonschema.Draft202012Validator(node).is_valid
    if valid(text):
        return text
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:  # YAML 1.1 reads 2e-4 (no dot) as a string; JSON as the number meant
            value = json.loads(text)
        except json.JSONDecodeError:
            pass
    types = node.get("type", [])
    return value if valid(value) or "string" not in (types if isinstance(types, list) else [types]) else text


# ---------------------------------------------------------------- command-line options


class SchemaValue:
    """argparse type of one setting: the text read as the schema wants it (`null`, `auto`, 5e-4, a JSON
    mapping), refused with the schema's message where it does not fit."""

    def __init__(self, path: str, node: dict):
        self.path, self.node = path, node
        self.__name__ = path  # argparse names the type in its message

    def __call__(self, text: str):
        value = typed(text, self.node)
        error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(self.node).iter_errors(value))
        if error is not None:
            raise argparse.ArgumentTypeError(f"{self.path}: {error.message}")
        return value


def _is_string_list(node: dict) -> bool:
    return node.get("type") == "array" and resolve(schema(), node.get("items", {})).get("type") == "string"


def _is_string_list_or_null(node: dict) -> bool:
    """A list of strings or null (prompt.stop_strings): words on the command line, or the word null."""
    options = [resolve(schema(), option) for option in node.get("anyOf", [])]
    kinds = {"list" if _is_string_list(option) else option.get("type") for option in options}
    return kinds == {"list", "null"}


class StringListOrNull(argparse.Action):
    """The words given, or None for the single word `null`."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, None if values == ["null"] else values)


def add_options(parser: argparse.ArgumentParser, rule: str) -> None:
    """The options of the config values the rule passes to its script: `--name` per param, typed and
    described by the schema, defaulting to the shipped config.yaml."""
    config = shipped_config()
    for name, path in rule_param_paths(rule, config).items():
        node, value = subschema(path), value_at(config, path)
        where = f"[{path}; config.yaml: {json.dumps(value, ensure_ascii=False)}]"
        text = f"{node.get('description', '')} {where}".strip().replace("%", "%%")
        option = f"--{name.replace('_', '-')}"
        if node.get("type") == "boolean":
            parser.add_argument(option, action=argparse.BooleanOptionalAction, default=value, help=text)
        elif _is_string_list(node):
            parser.add_argument(option, nargs="*", default=value, help=text)
        elif _is_string_list_or_null(node):
            text = f"{text} (the word null: null)"
            parser.add_argument(option, nargs="*", action=StringListOrNull, default=value, help=text)
        else:
            json_value = isinstance(value, dict | list)
            parser.add_argument(
                option, type=SchemaValue(path, node), default=value, help=f"JSON: {text}" if json_value else text
            )
