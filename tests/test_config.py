"""Config validation: the shipped configs pass; bad values and unknown keys are named, with a suggestion."""

import copy

import pytest
import yaml

from ftpipe.config_check import ConfigError, check_config, config_problems
from tests.conftest import ROOT, run_snakemake

SCHEMA_PATH = ROOT / "schemas" / "config.schema.yaml"
SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())
SHIPPED = yaml.safe_load((ROOT / "config.yaml").read_text())


def merged(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def test_shipped_configs_are_valid():
    check_config(SHIPPED, SCHEMA_PATH)
    check_config(merged(SHIPPED, yaml.safe_load((ROOT / "presets" / "tinyllama.yaml").read_text())), SCHEMA_PATH)


@pytest.mark.parametrize(
    "update, message",
    [
        ({"train": {"lerning_rate": 1e-4}}, "train.lerning_rate: unknown key; did you mean 'learning_rate'?"),
        ({"genrate": {}}, "genrate: unknown key; did you mean 'generate'?"),
        ({"train": {"micro_batch": 0}}, "train.micro_batch: 0 is less than the minimum of 1"),
        ({"pack": {"mode": "greedy"}}, "pack.mode: 'greedy' is not one of ['boundary', 'reference']"),
        ({"tokenize": {"max_len": "128"}}, "tokenize.max_len: '128' is not of type 'integer'"),
        ({"run_name": "../elsewhere"}, "run_name: '../elsewhere' does not match"),
    ],
)
def test_problems_name_the_key(update, message):
    problems = config_problems(merged(SHIPPED, update), SCHEMA)
    assert any(problem.startswith(message) for problem in problems), problems


def test_config_error_stops_before_any_job(tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(merged(SHIPPED, {"train": {"lerning_rate": 1e-4}})))
    result = run_snakemake(tmp_path, "--cores", "1", "-n", timeout=120)
    assert result.returncode != 0
    assert "train.lerning_rate: unknown key; did you mean 'learning_rate'?" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_check_config_raises():
    with pytest.raises(ConfigError, match="invalid configuration"):
        check_config(merged(SHIPPED, {"data": {"seed": "x"}}), SCHEMA_PATH)
