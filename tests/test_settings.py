"""One declaration per setting: every config value reaches a rule's params, every stage script's options are
the rule's params with config.yaml's defaults, and each rule's code inputs are the modules its script imports."""

import argparse
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ftpipe import settings
from ftpipe.imports import imported_modules
from tests.conftest import ROOT

SHIPPED = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
# The stage scripts that take config values, by rule.
SCRIPTS = {
    rule: Path(f"scripts/{name}.py")
    for rule, name in {
        "prepare": "prepare",
        "base_model": "base_model",
        "tokenize": "tokenize_data",
        "pack": "pack",
        "train": "train",
        "generate": "generate",
        "base_samples": "base_samples",
        "base_eval": "base_eval",
        "metrics": "metrics",
        "export": "export",
        "plots": "plots",
    }.items()
}


@pytest.fixture(scope="module")
def workflow_rules(tmp_path_factory) -> dict:
    """Each rule as Snakemake parsed it (params, script, code inputs) for the shipped config.yaml."""
    workdir = tmp_path_factory.mktemp("rules")
    (workdir / "config.yaml").write_text((ROOT / "config.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "workflow_rules.py"), str(workdir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def leaves(value, path: str = ""):
    """Dotted paths of every value of the config that is not a mapping."""
    if not isinstance(value, dict):
        yield path
        return
    for key, item in value.items():
        yield from leaves(item, f"{path}.{key}" if path else key)


def test_every_config_value_reaches_a_rule(workflow_rules):
    """A key of config.yaml that no rule takes as a param would change nothing (or change outputs without
    rerunning them): each one is a param of some rule, as the workflow builds it, or named as no param."""
    reached = set()
    for rule, parsed in workflow_rules.items():
        declared = settings.rule_param_paths(rule, SHIPPED)
        missing = set(declared) - set(parsed["params"])
        assert not missing, f"rule {rule} does not pass its declared params {sorted(missing)}"
        reached |= {declared[name] for name in parsed["params"] if name in declared}
    for path in leaves(SHIPPED):
        parts = path.split(".")
        if path in settings.NOT_PARAMS or settings.NOT_PARAM_KEYS & set(parts):
            continue
        prefixes = {".".join(parts[:end]) for end in range(1, len(parts) + 1)}
        assert prefixes & reached, f"config value {path} reaches no rule's params"


def test_every_setting_is_described_in_the_schema():
    for path in leaves(SHIPPED):
        assert settings.subschema(path).get("description"), f"{path}: no description in the schema"


@pytest.mark.parametrize("rule", list(SCRIPTS))
def test_script_options_are_the_rule_params_with_the_shipped_defaults(rule, workflow_rules):
    assert workflow_rules[rule]["script"] == f"../{SCRIPTS[rule]}"
    parser = importlib.import_module(SCRIPTS[rule].stem).build_parser()
    defaults = {action.dest: action.default for action in parser._actions}
    for name, path in settings.rule_param_paths(rule, SHIPPED).items():
        assert name in defaults, f"{SCRIPTS[rule]} has no option --{name.replace('_', '-')}"
        assert defaults[name] == settings.value_at(SHIPPED, path), f"{SCRIPTS[rule]} --{name}: default differs"


def test_help_shows_each_setting_with_its_description_and_default():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert (
        "--learning-rate" in text and "peak learning rate of AdamW [train.learning_rate; config.yaml: 0.0005]" in text
    )
    assert "--no-gradient-checkpointing" in text and "--max-len" in text


@pytest.mark.parametrize(
    "path, text, expected",
    [
        ("data.sample_size", "null", None),
        ("data.sample_size", "500", 500),
        ("generate.batch_size", "auto", "auto"),
        ("generate.batch_size", "32", 32),
        ("train.learning_rate", "2e-4", 2e-4),
        (
            "train.lora",
            '{"r": 8, "alpha": 8, "dropout": 0, "target_modules": ["q_proj"]}',
            {"r": 8, "alpha": 8, "dropout": 0, "target_modules": ["q_proj"]},
        ),
        ("prompt.instruction", "Title: {title}", "Title: {title}"),
    ],
)
def test_an_option_reads_its_value_as_the_schema_types_it(path, text, expected):
    assert settings.SchemaValue(path, settings.subschema(path))(text) == expected


@pytest.mark.parametrize(
    "path, text", [("data.sample_size", "0"), ("tokenize.overlong", "cut"), ("train.lora", "{not json")]
)
def test_an_option_refuses_what_the_schema_refuses(path, text):
    with pytest.raises(argparse.ArgumentTypeError, match=path.replace(".", r"\.")):
        settings.SchemaValue(path, settings.subschema(path))(text)


def test_a_list_that_may_be_null_takes_words_or_the_word_null():
    """prompt.stop_strings: a list of strings, or null for the prompt format's end of turn."""
    parser = argparse.ArgumentParser()
    settings.add_options(parser, "generate")
    assert parser.parse_args([]).stop_strings == SHIPPED["prompt"]["stop_strings"]
    assert parser.parse_args(["--stop-strings", "</s>", "###"]).stop_strings == ["</s>", "###"]
    assert parser.parse_args(["--stop-strings", "null"]).stop_strings is None


def test_the_speed_levers_default_to_the_shipped_config():
    import torch
    from train import build_parser, resolve_plan

    required = ["--packed", "p", "--model-dir", "m"] + [
        arg for name in ("adapter", "train-log", "history", "timing", "checkpoint-dir") for arg in (f"--{name}", "x")
    ]
    args = build_parser().parse_args(required)
    assert args.speed == SHIPPED["train"]["speed"] and args.learning_rate == SHIPPED["train"]["learning_rate"]
    off = resolve_plan(argparse.Namespace(**{**vars(args), "speed": {"enabled": False}}), torch.device("cpu"))
    levers = set(SHIPPED["train"]["speed"]) - {"enabled", "micro_batch"}
    assert set(off) >= levers
    # Off, a lever that is a recipe setting too takes the recipe's value; every other lever is off.
    assert off["upcast_frozen_fp32"] is SHIPPED["train"]["upcast_frozen_fp32"]
    assert not any(off[lever] for lever in levers - {"upcast_frozen_fp32", "gradient_checkpointing"})
    on = resolve_plan(argparse.Namespace(**{**vars(args), "speed": {"enabled": True}}), torch.device("cpu"))
    assert on["dequantize_base"] is True and on["micro_batch"] == SHIPPED["train"]["micro_batch"]


def test_imported_modules_follow_imports_transitively(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from .b import thing\n")
    (tmp_path / "pkg" / "b.py").write_text("import json\n\ndef thing():\n    from . import c\n")
    (tmp_path / "pkg" / "c.py").write_text("")
    (tmp_path / "pkg" / "unused.py").write_text("")
    (tmp_path / "helper.py").write_text("")
    (tmp_path / "stage.py").write_text("import helper\nfrom pkg import a\nimport torch\n")
    found = imported_modules(tmp_path / "stage.py", tmp_path)
    names = [str(path.relative_to(tmp_path)) for path in found]
    assert names == ["helper.py", "pkg/__init__.py", "pkg/a.py", "pkg/b.py", "pkg/c.py"]


def test_imported_modules_see_an_edit_within_one_process(tmp_path):
    """Each file's imports are parsed once while it stays the same: an edit (another size or time) is read again."""
    (tmp_path / "helper.py").write_text("")
    (tmp_path / "other.py").write_text("")
    stage = tmp_path / "stage.py"
    stage.write_text("import helper\n")
    assert imported_modules(stage, tmp_path) == [tmp_path / "helper.py"]
    stage.write_text("import helper\nimport other\n")
    assert imported_modules(stage, tmp_path) == [tmp_path / "helper.py", tmp_path / "other.py"]


def test_each_rule_depends_on_the_modules_its_script_imports(workflow_rules):
    for rule, parsed in workflow_rules.items():
        if parsed["script"]:
            script = ROOT / "rules" / parsed["script"]
            assert parsed["code"] == [str(path) for path in imported_modules(script)], rule
    assert not any("dropout_lora" in path for path in workflow_rules["prepare"]["code"])
    assert any("dropout_lora" in path for path in workflow_rules["train"]["code"])


def test_snakemakes_copy_of_a_script_imports_the_same_modules(tmp_path):
    """Under `script:` the stage runs from a copy in .snakemake/scripts/: train fingerprints the same modules."""
    copy = tmp_path / "tmpk3j1.train.py"
    copy.write_text((ROOT / "scripts" / "train.py").read_text(encoding="utf-8"), encoding="utf-8")
    assert imported_modules(copy) == imported_modules(ROOT / "scripts" / "train.py")
