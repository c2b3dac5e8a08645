"""Config validation: the shipped configs pass; bad values and unknown keys are named, with a suggestion."""

import copy

import pytest
import yaml

from ftpipe.workflow.config_check import ConfigError, check_config, config_problems, experiment_problems
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
    check_config(merged(SHIPPED, yaml.safe_load((ROOT / "presets" / "chat_template.yaml").read_text())), SCHEMA_PATH)


@pytest.mark.parametrize(
    "update, message",
    [
        ({"train": {"lerning_rate": 1e-4}}, "train.lerning_rate: unknown key; did you mean 'learning_rate'?"),
        ({"genrate": {}}, "genrate: unknown key; did you mean 'generate'?"),
        ({"train": {"micro_batch": 0}}, "train.micro_batch: 0 is less than the minimum of 1"),
        ({"pack": {"mode": "greedy"}}, "pack.mode: 'greedy' is not one of ['boundary', 'seed']"),
        ({"tokenize": {"max_len": "128"}}, "tokenize.max_len: '128' is not of type 'integer'"),
        ({"run_name": "../elsewhere"}, "run_name: '../elsewhere' does not match"),
        ({"prompt": {"format": "chat"}}, "prompt.format: 'chat' is not one of ['plain', 'chat_template']"),
        # `reference` meant the seed notebook's recipe: the old value is refused with the new one named.
        ({"pack": {"mode": "reference"}}, "pack.mode: 'reference' is now called 'seed'; write pack.mode: seed"),
        ({"tokenize": {"overlong": "reference"}}, "tokenize.overlong: 'reference' is now called 'seed'"),
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


def test_shipped_ablation_is_valid():
    check_config(merged(SHIPPED, yaml.safe_load((ROOT / "presets" / "ablation.yaml").read_text())), SCHEMA_PATH)


@pytest.mark.parametrize(
    "experiment, message",
    [
        (
            {"runs": {"b": {"train": {"lerning_rate": 1e-4}}}},
            "experiment.runs.b.train.lerning_rate: unknown key; did you mean 'learning_rate'?",
        ),
        (
            {"runs": {"b": {"train": {"lora": {"r": 0}}}}},
            "experiment.runs.b.train.lora.r: 0 is less than the minimum of 1",
        ),
        ({"runs": {"b": {"run_name": "x"}}}, "experiment.runs.b.run_name: a run cannot override run_name"),
        ({"runs": {"a": {}}, "baseline": "z"}, "experiment.baseline: 'z' is not a run (runs: a)"),
        (
            {"grid": {"axes": {"train.learning_rate": [1e-4, "fast"]}}},
            "experiment.grid (run learning_rate~fast).train.learning_rate: 'fast' is not of type 'number'",
        ),
        (
            {"runs": {"b": {"train": {"lora": {"dropout": 0.1}, "speed": {"fused_lora": True}}}}},
            "experiment.runs.b.train.speed.fused_lora: needs train.lora.dropout 0",
        ),
    ],
)
def test_each_run_is_checked_and_named(experiment, message):
    problems = experiment_problems(merged(SHIPPED, {"experiment": experiment}), SCHEMA)
    assert any(problem.startswith(message) for problem in problems), problems


def test_a_run_overrides_only_keys_the_base_sets():
    base = merged(SHIPPED, {"experiment": {"runs": {"b": {"train": {"speed": {"cuda_graphs": False}}}}}})
    del base["train"]["speed"]
    problems = experiment_problems(base, SCHEMA)
    assert problems == [
        "experiment.runs.b.train.speed: not set in the base configuration (every run needs every key: set it there)"
    ]


def test_grid_runs_are_named_in_a_fixed_order():
    from ftpipe.workflow.experiments import run_configs

    config = merged(
        SHIPPED,
        {
            "experiment": {
                "grid": {
                    "overrides": {"train": {"max_steps": 7}},
                    "axes": {"train.lora.r": [8, 16], "train.learning_rate": [1e-4, 2e-4]},
                }
            }
        },
    )
    runs = run_configs(config)
    assert list(runs) == [
        "r~8_learning_rate~0.0001",
        "r~8_learning_rate~0.0002",
        "r~16_learning_rate~0.0001",
        "r~16_learning_rate~0.0002",
    ]
    chosen = runs["r~16_learning_rate~0.0001"]["train"]
    assert (chosen["lora"]["r"], chosen["learning_rate"], chosen["max_steps"]) == (16, 1e-4, 7)
    assert chosen["lora"]["alpha"] == SHIPPED["train"]["lora"]["alpha"]  # the rest of the base recipe stays


def test_grid_axes_sharing_a_last_name_get_longer_names():
    from ftpipe.workflow.experiments import axis_names

    assert axis_names(["train.seed", "data.seed", "train.lora.r"]) == ["train_seed", "data_seed", "lora_r"]


@pytest.mark.parametrize("validation, test", [(0.6, 0.5), (0.5, 0.5), (1.0, 0.0)])
def test_fractions_that_leave_no_training_rows_are_refused(validation, test):
    with pytest.raises(ConfigError, match=r"data.validation_fraction \+ data.test_fraction: .* leaves no rows"):
        check_config(merged(SHIPPED, {"data": {"validation_fraction": validation, "test_fraction": test}}), SCHEMA_PATH)


@pytest.mark.parametrize("source", ["./no/such/model", "/no/such/model", "~/no-such-model", "models/a/b", "..\\m"])
def test_a_local_model_folder_that_does_not_exist_is_caught_before_any_job(source):
    with pytest.raises(ConfigError, match=r"model.source: .* is a local path, but there is no folder at "):
        check_config(merged(SHIPPED, {"model": {"source": source}}), SCHEMA_PATH)


@pytest.mark.parametrize("source", ["TinyLlama/TinyLlama_v1.1", "gpt2", "embedded:smollm2-135m"])
def test_hub_ids_and_embedded_models_pass_the_check(source):
    check_config(merged(SHIPPED, {"model": {"source": source}}), SCHEMA_PATH)


def test_an_existing_folder_is_a_local_source_even_without_a_path_prefix(tmp_path, monkeypatch):
    from ftpipe.model_source import looks_like_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "Org" / "model").mkdir(parents=True)
    assert looks_like_path("Org/model") and not looks_like_path("Org/other")


def test_command_line_values_are_typed_by_the_schema():
    """Snakemake reads a nested --config value with YAML's base loader: every leaf arrives as a string."""
    config = merged(SHIPPED, {})
    command_line = {
        "train": {"max_steps": "10", "lora": {"dropout": "0"}, "speed": {"fused_lora": "true", "compile": "false"}},
        "data": {"sample_size": "null", "validation_fraction": "0.1"},
        "prompt": {"response": "{content}<eos>"},
        "run_name": "007",
    }
    typed = merged(config, command_line)
    check_config(typed, SCHEMA_PATH, command_line=command_line)
    assert typed["train"]["max_steps"] == 10 and typed["train"]["lora"]["dropout"] == 0
    assert typed["train"]["speed"]["fused_lora"] is True and typed["train"]["speed"]["compile"] is False
    assert typed["data"]["sample_size"] is None and typed["data"]["validation_fraction"] == 0.1
    assert typed["prompt"]["response"] == "{content}<eos>" and typed["run_name"] == "007"


def test_a_wrong_command_line_value_is_still_named():
    command_line = {"train": {"max_steps": "ten"}}
    with pytest.raises(ConfigError, match="train.max_steps: 'ten' is not of type 'integer'"):
        check_config(merged(SHIPPED, command_line), SCHEMA_PATH, command_line=command_line)


def test_command_line_override_through_snakemake(tmp_path):
    config = merged(SHIPPED, {"data": {"raw": str(ROOT / SHIPPED["data"]["raw"])}})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
    result = run_snakemake(
        tmp_path, "--cores", "1", "-n", "--config", "train={max_steps: 10, lora: {dropout: 0}}", timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    result = run_snakemake(tmp_path, "--cores", "1", "-n", "--config", "model={source: ./no/such/model}", timeout=300)
    assert result.returncode != 0 and "model.source: './no/such/model' is a local path" in result.stdout + result.stderr
