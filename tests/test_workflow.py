"""The whole workflow on a tiny config, every target checked; then dry runs: which jobs a change reruns."""

import html
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, compare_inputs, run_folder, run_snakemake

RULES_AFTER_TRAIN = {"train", "generate", "metrics", "plots", "run_report", "report"}
# The base variants of the evaluation (base_eval) and of the samples (base_samples) depend on the data, the base
# model, the prompt and the evaluation's or generate's settings, never on training: a data change reruns them, a
# training change does not.
DATA_RULES = {"prepare", "tokenize", "pack", "base_eval", "base_samples"}
RETOKENIZED = {"tokenize", "pack", "base_eval", "base_samples"}  # a prompt edit: the prepared data stays
# generate's settings: the base variants' samples and the adapter's, nothing of the evaluation or training
NEW_SAMPLES = {"base_samples", "generate"}
# Any change of a run's settings writes its config.json again (rule run_config), and so renders its page.
NEW_CONFIG = {"run_config", "run_report", "report"}


def test_every_target(finished_run):
    import datasets
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run = finished_run / "results" / "runs" / "tiny"
    tokenized = datasets.load_from_disk(str(run_folder(finished_run, "tiny", "tokenize") / "dataset"))
    assert set(tokenized) == {"train", "validation", "test"} and len(tokenized["train"]) > 0
    packed = datasets.load_from_disk(str(run_folder(finished_run, "tiny", "pack") / "dataset"))
    assert {len(ids) for ids in packed["train"]["input_ids"]} == {128}
    base = AutoModelForCausalLM.from_pretrained(run_folder(finished_run, "tiny", "base_model") / "model")
    trained = run_folder(finished_run, "tiny", "train")
    PeftModel.from_pretrained(base, str(trained / "adapter"))
    history = json.loads((trained / "training_history.json").read_text())
    assert history["step"] == 4 and len(history["history"]) == 4
    assert (trained / "train_log.csv").read_text().startswith("step,")
    timing = json.loads((trained / "timing.json").read_text())
    assert timing["steps"] == 4
    llama = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]  # all-linear, the default
    assert timing["adapters"]["adapted_modules"] == llama and timing["adapters"]["trainable_parameters"] > 0
    for png in ("train_curve.png", "token_lengths.png"):
        assert (run / "plots" / png).read_bytes().startswith(b"\x89PNG")
    samples = json.loads((run / "samples.json").read_text())["samples"]
    report = (finished_run / "results" / "report.html").read_text()
    assert report == (run / "report.html").read_text()
    assert f"LoRA adapters on <b>{', '.join(llama)}</b>" in report
    assert f"{timing['adapters']['trainable_parameters']:,}" in report
    assert len(samples) == 2
    for sample in samples:
        assert set(sample) >= {"title", "reference", "base_plain", "base_tagged", "adapter"}
        assert html.escape(sample["title"]) in report and html.escape(sample["adapter"]) in report
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["variants"]) == {"base_plain", "base_tagged", "adapter"}
    for values in metrics["variants"].values():
        assert values["rouge_l"]["low"] <= values["rouge_l"]["mean"] <= values["rouge_l"]["high"]
        assert values["perplexity"]["perplexity"] > 1
    assert "Quality on held-out data" in report and "run tiny on trn.json" in report
    assert "data:image/png;base64," in report and "http://" not in report.split("<h2>Configuration")[0]
    leak = json.loads((run_folder(finished_run, "tiny", "prepare") / "counts.json").read_text())["contamination"]
    assert "near-duplicates joined" in report  # the split's contamination before and after near-duplicate grouping
    assert f"(n = {leak['near_duplicate_groups']['test']['references']})" in report
    for stage in ("prepare", "tokenize", "pack", "base_model", "train", "base_eval", "base_samples"):
        key = run_folder(finished_run, "tiny", stage).name
        assert (finished_run / "logs" / stage / f"{key}.log").stat().st_size > 0
        assert json.loads((run_folder(finished_run, "tiny", stage) / "params.json").read_text())["key"] == key
        assert "<code>results/" in report and key in report  # the lineage section names every folder


def test_report_shows_the_lora_target_warnings(finished_run, tmp_path):
    """A target list that leaves projections out: timing.json's warnings are on the run's page."""
    import run_report
    from markupsafe import escape

    run = finished_run / "results" / "runs" / "tiny"
    timing = json.loads((run_folder(finished_run, "tiny", "train") / "timing.json").read_text())
    warning = "lora.target_modules leaves the MLP projections ['down_proj'] of LlamaForCausalLM without an adapter"
    timing["adapters"]["warnings"] = [warning]
    (tmp_path / "timing.json").write_text(json.dumps(timing))
    folders = {stage: run_folder(finished_run, "tiny", stage) for stage in ("prepare", "tokenize", "pack", "train")}
    args = run_report.build_parser().parse_args(
        ["--counts", str(folders["prepare"] / "counts.json"), "--token-stats", str(folders["tokenize"] / "stats.json")]
        + ["--pack-stats", str(folders["pack"] / "stats.json"), "--timing", str(tmp_path / "timing.json")]
        + ["--history", str(folders["train"] / "training_history.json"), "--samples", str(run / "samples.json")]
        + ["--metrics", str(run / "metrics.json"), "--curve-png", str(run / "plots" / "train_curve.png")]
        + ["--lengths-png", str(run / "plots" / "token_lengths.png"), "--report", str(tmp_path / "report.html")]
        + ["--lineage-record", (run / "lineage.json").read_text(), "--config", str(run / "config.json")]
    )
    assert f'<p class="warn">{escape(warning)}</p>' in run_report.build_report(args)


def planned_jobs(workdir: Path, overrides: dict, target: str = "results/report.html") -> dict[str, list[str]]:
    """Jobs a dry run would execute after the finished run, with `overrides` merged into the config, as
    {rule: [runs the job serves]}."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "dryrun.py"), str(workdir), target, json.dumps(overrides)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def planned_rules(workdir: Path, overrides: dict) -> set[str]:
    return set(planned_jobs(workdir, overrides))


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({}, set()),
        ({"generate": {"temperature": 0.3}}, NEW_SAMPLES | NEW_CONFIG),
        ({"generate": {"num_titles": 3}}, NEW_SAMPLES | NEW_CONFIG),
        ({"generate": {"resources": {"mem_mb": 9000}}}, NEW_CONFIG),  # how the jobs run: no sample changes
        ({"metrics": {"num_titles": 2}}, {"base_eval", "metrics"} | NEW_CONFIG),
        ({"metrics": {"num_beams": 2}}, {"base_eval", "metrics"} | NEW_CONFIG),
        ({"train": {"learning_rate": 1e-4}}, RULES_AFTER_TRAIN | NEW_CONFIG),
        ({"train": {"lora": {"r": 8}}}, RULES_AFTER_TRAIN | NEW_CONFIG),
        ({"train": {"resources": {"mem_mb": 9000}}}, NEW_CONFIG),  # only the config and the page showing it
        # max_len bounds base_eval's budget; generate's samples have a budget of their own
        ({"tokenize": {"max_len": 96}}, RETOKENIZED - {"base_samples"} | RULES_AFTER_TRAIN | NEW_CONFIG),
        ({"pack": {"mode": "seed"}}, {"pack"} | RULES_AFTER_TRAIN | NEW_CONFIG),
        ({"data": {"seed": 1}}, DATA_RULES | RULES_AFTER_TRAIN | NEW_CONFIG),
        # The prompt is applied in tokenize: an edit re-tokenizes and retrains, the raw file is not read again.
        ({"prompt": {"instruction": "Describe: {title}\n"}}, RETOKENIZED | RULES_AFTER_TRAIN | NEW_CONFIG),
        ({"prompt": {"response": "{content}</s>"}}, RETOKENIZED | RULES_AFTER_TRAIN | NEW_CONFIG),
        ({"prompt": {"format": "chat_template"}}, RETOKENIZED | RULES_AFTER_TRAIN | NEW_CONFIG),
        ({"prompt": {"stop_strings": ["<eos>"]}}, NEW_SAMPLES | {"base_eval", "metrics"} | NEW_CONFIG),
        ({"prompt": {"base_plain": "Describe: {title}\n"}}, NEW_SAMPLES | {"base_eval", "metrics"} | NEW_CONFIG),
        ({"data": {"near_duplicates": {"threshold": 0.5}}}, DATA_RULES | RULES_AFTER_TRAIN | NEW_CONFIG),
        ({"data": {"columns": {"title": "title"}}}, DATA_RULES | RULES_AFTER_TRAIN | NEW_CONFIG),
    ],
    ids=lambda value: json.dumps(value) if isinstance(value, dict) else None,
)
def test_a_change_reruns_exactly_what_depends_on_it(finished_run, overrides, expected):
    assert planned_rules(finished_run, overrides) == expected


RUN_RULES = ("generate", "metrics", "plots", "run_report")


def after_train(*runs: str, everyone=("a", "b", "c")) -> dict[str, list[str]]:
    """The jobs of `runs` whose settings changed from training on, and the comparison of every run."""
    return {
        "train": list(runs),
        **dict.fromkeys(RUN_RULES, list(runs)),
        "run_config": list(runs),
        "compare": sorted({*everyone, *runs}),
    }


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({}, {}),
        # One run's override: that run's training and what follows, and the comparison.
        ({"experiment": {"runs": {"b": {"train": {"learning_rate": 2e-3}}}}}, after_train("b")),
        # The base config: every run that does not override the value (b sets its own learning rate).
        ({"train": {"learning_rate": 3e-4}}, after_train("a", "c")),
        # A sampling setting of every run: one base_samples job for the three (they differ in training only).
        (
            {"generate": {"temperature": 0.3}},
            dict.fromkeys(("base_samples", "generate", "run_config", "run_report", "compare"), ["a", "b", "c"]),
        ),
        # A new run that shares the data with a: no data job, one more training.
        ({"experiment": {"runs": {"d": {"train": {"lora": {"dropout": 0.1}}}}}}, after_train("d")),
        # A data param of one run: that run's data jobs only (the base model stays shared).
        (
            {"experiment": {"runs": {"c": {"train": {"lora": {"r": 4}}, "data": {"seed": 7}}}}},
            {
                **dict.fromkeys(("prepare", "tokenize", "pack", "base_eval", "base_samples"), ["c"]),
                **after_train("c"),
            },
        ),
        # A prompt of one run: that run's tokenize and what follows; the prepared data stays shared.
        (
            {"experiment": {"runs": {"c": {"train": {"lora": {"r": 4}}, "prompt": {"instruction": "Say: {title}\n"}}}}},
            {**dict.fromkeys(("tokenize", "pack", "base_eval", "base_samples"), ["c"]), **after_train("c")},
        ),
        # A decoding setting of the evaluation for one run: that run's base variants and scores, no training.
        (
            {"experiment": {"runs": {"c": {"train": {"lora": {"r": 4}}, "metrics": {"num_beams": 2}}}}},
            {
                "base_eval": ["c"],
                **dict.fromkeys(("metrics", "run_report", "run_config"), ["c"]),
                "compare": ["a", "b", "c"],
            },
        ),
    ],
    ids=lambda value: json.dumps(value) if isinstance(value, dict) and value else None,
)
def test_a_change_reruns_exactly_the_runs_that_depend_on_it(finished_experiment, overrides, expected):
    assert planned_jobs(finished_experiment, overrides, "results/compare.html") == expected


def test_runs_share_the_stages_they_agree_on(finished_experiment):
    for stage in ("prepare", "base_model", "tokenize", "pack", "base_eval", "base_samples"):
        assert len({run_folder(finished_experiment, run, stage) for run in "abc"}) == 1, stage
    assert len({run_folder(finished_experiment, run, "train") for run in "abc"}) == 3
    logs = finished_experiment / "logs"
    # The runs differ in training only: one job generated the base variants for all three (each kind once).
    stages = ("prepare", "tokenize", "base_eval", "base_samples", "train")
    counts = [len(list((logs / stage).glob("*.log"))) for stage in stages]
    assert counts == [1, 1, 1, 1, 3]
    samples = [json.loads((finished_experiment / "results/runs" / run / "samples.json").read_text()) for run in "abc"]
    assert len({json.dumps([(row["base_plain"], row["base_tagged"]) for row in s["samples"]]) for s in samples}) == 1
    shared = run_folder(finished_experiment, "a", "base_eval").relative_to(finished_experiment) / "base_eval.json"
    for run in "abc":
        metrics = json.loads((finished_experiment / "results" / "runs" / run / "metrics.json").read_text())
        assert metrics["base_variants_from"]["path"] == str(shared)
    lineage = json.loads((finished_experiment / "results" / "runs" / "b" / "lineage.json").read_text())
    assert lineage["differs_from_baseline"] == {"train.learning_rate": 1e-3}
    assert lineage["stages"]["train"]["params"]["learning_rate"] == 1e-3


def test_the_comparison_pairs_runs_on_the_same_titles(finished_experiment):
    results = finished_experiment / "results"
    table = json.loads((results / "compare.json").read_text())
    rows = {row["run"]: row for row in table["runs"]}
    assert list(rows) == ["a", "b", "c"] and table["baseline"] == "a" and rows["a"]["paired"] is None
    assert rows["c"]["differs"] == {"train.lora.r": 4}
    for run in "bc":
        metrics = json.loads((results / "runs" / run / "metrics.json").read_text())
        baseline = json.loads((results / "runs" / "a" / "metrics.json").read_text())
        differences = [
            b - a
            for a, b in zip(
                baseline["per_example"]["adapter"]["rouge_l"], metrics["per_example"]["adapter"]["rouge_l"], strict=True
            )
        ]
        paired = rows[run]["paired"]["rouge_l"]
        assert paired["mean"] == pytest.approx(sum(differences) / len(differences), abs=1e-3)
        assert paired["low"] <= paired["mean"] <= paired["high"]
        assert rows[run]["train_loss"] > 0 and rows[run]["peak_memory_gib"] > 0
    lines = (results / "compare.csv").read_text().splitlines()
    assert lines[0].startswith("run,baseline,paired_with,differs,") and len(lines) == 4
    page = (results / "compare.html").read_text()
    assert "Comparison of 3 runs" in page and "data:image/png;base64," in page
    assert "ended / hit cap" in page and "minus a" in page
    report = (results / "runs" / "b" / "report.html").read_text()
    assert "Generation budget:" in report and "ran into the budget" in report
    assert "Evaluation time (s): budget" in report
    assert all(f'href="runs/{run}/report.html"' in page for run in "abc")


def test_runs_on_other_data_pair_with_the_baseline_recipe_on_that_data(finished_experiment, tmp_path):
    """Two more runs scored other titles (another catalog): d (the baseline's recipe there) and e (d with rank 4).
    e is paired with d on their shared titles, d is its data's baseline; a and c keep the experiment's baseline."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from compare import build_parser, compare

    from ftpipe.stage import namespace

    results = finished_experiment / "results"
    runs = {"a": "a", "c": "c", "d": "a", "e": "c"}  # name -> the finished run whose files it reuses
    per_run: dict[str, list[str]] = {}
    lineages = {}
    for name, run in runs.items():
        metrics_path = results / "runs" / run / "metrics.json"
        if name in "de":  # the other catalog: other titles (the first one left out)
            metrics = json.loads(metrics_path.read_text())
            metrics["generations"] = metrics["generations"][1:]
            metrics["per_example"] = {
                variant: {name: values[1:] for name, values in scores.items()}
                for variant, scores in metrics["per_example"].items()
            }
            metrics_path = tmp_path / f"{name}.json"
            metrics_path.write_text(json.dumps(metrics))
        for key, path in {**compare_inputs(finished_experiment, run), "metrics": metrics_path}.items():
            per_run.setdefault(key, []).append(str(path))
        lineage = json.loads((results / "runs" / run / "lineage.json").read_text())
        if name in "de":
            lineage["differs_from_baseline"] = {**lineage["differs_from_baseline"], "data.raw": "other.json"}
        lineages[name] = lineage
    outputs = {name: str(tmp_path / f"out.{name}") for name in ("page", "table", "csv")}
    table = compare(namespace(build_parser(), runs=list(runs), baseline="a", lineages=lineages, **per_run, **outputs))
    rows = {row["run"]: row for row in table["runs"]}
    assert [rows[run]["paired_with"] for run in "acde"] == [None, "a", None, "d"]
    assert rows["d"]["data_baseline"] and not rows["c"]["data_baseline"] and rows["a"]["baseline"]
    e, d = json.loads(Path(per_run["metrics"][3]).read_text()), json.loads(Path(per_run["metrics"][2]).read_text())
    first, second = d["per_example"]["adapter"]["rouge_l"], e["per_example"]["adapter"]["rouge_l"]
    differences = [y - x for x, y in zip(first, second, strict=True)]
    assert rows["e"]["paired"]["rouge_l"]["mean"] == pytest.approx(sum(differences) / len(differences), abs=1e-3)
    page = Path(outputs["page"]).read_text()
    assert "baseline for its data" in page and "minus d" in page and "not paired" not in page


def ask(results: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / "scripts" / "ask.py"), "--results", str(results), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=cwd)


def test_ask_prints_a_description_per_title(finished_run, tmp_path):
    # From a folder without any config: the run's own config.json holds its prompt and sampling settings.
    result = ask(finished_run / "results", "--greedy", "Girls Ballet Tutu Neon Pink", "Steel Mug", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "## Girls Ballet Tutu Neon Pink\n" in result.stdout and "## Steel Mug\n" in result.stdout


def test_each_run_keeps_its_whole_configuration(finished_experiment, tmp_path):
    """config.json is the run's resolved configuration (base config plus the run's overrides), and a run of an
    experiment is asked by its name alone."""
    from ftpipe.workflow.experiments import run_configs

    results = finished_experiment / "results"
    expected = run_configs(yaml.safe_load((finished_experiment / "config.yaml").read_text()))
    for run in "abc":
        assert json.loads((results / "runs" / run / "config.json").read_text()) == expected[run]
    assert expected["b"]["train"]["learning_rate"] == 1e-3 and "experiment" not in expected["b"]
    result = ask(results, "--run", "b", "--greedy", "Steel Mug", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "## Steel Mug\n" in result.stdout
    several = ask(results, "Steel Mug", cwd=tmp_path)  # three finished runs: which one is not guessed
    assert several.returncode != 0 and "name the run with --run" in several.stderr


def test_export_merges_into_a_16_bit_base(finished_run):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    result = run_snakemake(finished_run, "--cores", "2", "results/runs/tiny/merged", timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    run = finished_run / "results" / "runs" / "tiny"
    assert (run / "merged" / "run_config.json").read_bytes() == (run / "config.json").read_bytes()
    merged = AutoModelForCausalLM.from_pretrained(run / "merged")
    assert merged.dtype == torch.bfloat16 and not hasattr(merged, "peft_config")
    base_dir = run_folder(finished_run, "tiny", "base_model") / "model"
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.bfloat16)
    with_adapter = PeftModel.from_pretrained(base, str(run_folder(finished_run, "tiny", "train") / "adapter"))
    ids = torch.randint(0, 1000, (2, 24))
    with torch.no_grad():
        expected = with_adapter(input_ids=ids).logits.float()
        actual = merged(input_ids=ids).logits.float()
    assert (actual - expected).norm() / expected.norm() < 2e-2  # bf16 rounding of the merged weights


@contextmanager
def changed_file(path: Path, append: bytes = b""):
    """Touch `path` (mtime: now), optionally appending bytes; restore content and times after."""
    content, stat = path.read_bytes(), path.stat()
    try:
        path.write_bytes(content + append)
        os.utime(path, (time.time(), time.time()))
        yield
    finally:
        path.write_bytes(content)
        os.utime(path, (stat.st_atime, stat.st_mtime))


def test_touching_the_raw_file_reruns_nothing(finished_run, tiny_catalog):
    with changed_file(tiny_catalog):
        assert planned_rules(finished_run, {}) == set()


def test_changing_the_raw_file_reruns_everything_after_it(finished_run, tiny_catalog):
    with changed_file(tiny_catalog, b'{"title": "New product", "content": "A new description."}\n'):
        assert planned_rules(finished_run, {}) == DATA_RULES | RULES_AFTER_TRAIN


def test_editing_a_stage_script_reruns_that_stage_and_after(finished_run):
    with changed_file(ROOT / "scripts" / "pack.py"):  # Snakemake tracks a rule's script by its mtime
        assert planned_rules(finished_run, {}) == {"pack"} | RULES_AFTER_TRAIN


def test_editing_a_page_template_renders_the_pages_again(finished_run):
    with changed_file(ROOT / "report" / "templates" / "run.html.j2", b"\n"):
        assert planned_rules(finished_run, {}) == {"run_report", "report"}


@pytest.mark.parametrize(
    "module, expected",
    [
        ("training/dropout_lora.py", RULES_AFTER_TRAIN),  # imported by train only: nothing upstream reruns
        ("rawdata/raw_input.py", DATA_RULES | RULES_AFTER_TRAIN),  # prepare only
        ("pages.py", {"run_report", "report"}),  # the pages only
        ("rawdata/near_duplicates.py", DATA_RULES | RULES_AFTER_TRAIN),  # prepare only
        ("training/speed_plan.py", RULES_AFTER_TRAIN),  # train only
        ("training/fp8_base.py", RULES_AFTER_TRAIN),  # train only
        ("budget.py", {"base_eval", "metrics", "run_report", "report"}),  # base_eval only (metrics reads its budget)
        ("variants.py", NEW_SAMPLES | {"base_eval", "metrics", "run_report", "report"}),  # the four that generate
        ("timing.py", NEW_SAMPLES | {"base_eval", "metrics", "run_report", "report"}),  # the four that time parts
    ],
)
def test_editing_a_module_reruns_the_rules_whose_script_imports_it(finished_run, module, expected):
    with changed_file(ROOT / "scripts" / "ftpipe" / module, b"\n"):
        assert planned_rules(finished_run, {}) == expected


def test_metrics_are_deterministic(finished_run, tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    import base_eval
    import metrics

    config = yaml.safe_load((finished_run / "config.yaml").read_text())
    data, run = run_folder(finished_run, "tiny", "prepare"), finished_run / "results" / "runs" / "tiny"
    inputs = ["--test", str(data / "test.jsonl"), "--validation", str(data / "validation.jsonl")]
    inputs += ["--model-dir", str(run_folder(finished_run, "tiny", "base_model") / "model")]
    train = ["--train", str(data / "train.jsonl")]  # base_eval's: the budget and contamination
    values = ["--num-titles", "3", "--perplexity-rows", "4", "--max-new-tokens", "8"]
    values += ["--instruction-template", config["prompt"]["instruction"]]
    values += ["--response-template", config["prompt"]["response"]]
    values += ["--base-prompt-template", config["prompt"]["base_plain"]]
    values += ["--stop-strings", *config["prompt"]["stop_strings"]]  # last: the option takes every word after it
    for name in ("a", "b"):
        base_json = str(tmp_path / f"{name}.base_eval.json")
        base_eval.base_eval(base_eval.build_parser().parse_args([*inputs, *train, "--base-eval", base_json, *values]))
        adapter = ["--adapter", str(run_folder(finished_run, "tiny", "train") / "adapter")]
        outputs = ["--base-eval", base_json, "--metrics", str(tmp_path / f"{name}.json")]
        metrics.metrics(metrics.build_parser().parse_args([*inputs, *adapter, *outputs, *values]))
    # Everything but the timing breakdown (seconds measured) and where the base variants were read is the same,
    # run to run and as the rules wrote it.
    rule_base_eval = run_folder(finished_run, "tiny", "base_eval") / "base_eval.json"
    for outputs in (
        ("a.json", "b.json", run / "metrics.json"),
        ("a.base_eval.json", "b.base_eval.json", rule_base_eval),
    ):
        first, second, by_rule = (json.loads((tmp_path / path).read_text()) for path in outputs)
        assert set(first.pop("timing")) == set(second.pop("timing")) == set(by_rule.pop("timing"))
        for record in (first, second, by_rule):
            record.pop("base_variants_from", None)
        assert first == second == by_rule


def test_snakemake_report_archive(finished_run, tmp_path):
    import zipfile

    archive = tmp_path / "report.zip"
    result = run_snakemake(finished_run, "--report", str(archive), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    names = zipfile.ZipFile(archive).namelist()
    for marked in ("metrics.json", "train_curve.png", "token_lengths.png", "report.html"):
        assert any(name.endswith(marked) for name in names), names


def dry_run(workdir: Path, cores: int, gpu: bool) -> str:
    """What a dry run with `cores` cores prints, on a machine with or without nvidia-smi."""
    workdir.mkdir()
    (workdir / "data").mkdir()
    for name in ("config.yaml", "data/sample_catalog.json"):
        (workdir / name).write_bytes((ROOT / name).read_bytes())
    bin_dir = workdir / "bin"
    bin_dir.mkdir()
    path = os.environ["PATH"]
    if gpu:  # the Snakefile asks for nvidia-smi on PATH; the dry run starts no job
        (bin_dir / "nvidia-smi").write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / "nvidia-smi").chmod(0o755)
        path = f"{bin_dir}{os.pathsep}{path}"
    else:
        path = os.pathsep.join(p for p in path.split(os.pathsep) if not (Path(p) / "nvidia-smi").exists())
    command = [sys.executable, "-m", "snakemake", "-n", "--cores", str(cores), "--snakefile", str(ROOT / "Snakefile")]
    command += ["--directory", str(workdir), "results/report.html"]
    env = {**os.environ, "PATH": path, "CUDA_VISIBLE_DEVICES": "0"}
    return subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout


def per_rule(dry_run_output: str, field: str, default: int) -> dict[str, int]:
    """Each planned rule's value of an integer field (threads, priority) in a dry run's output."""
    values, rule = {}, None
    for line in dry_run_output.splitlines():
        if line.startswith(("rule ", "localrule ")):
            rule = line.split()[1].rstrip(":")
            values[rule] = default
        elif line.strip().startswith(f"{field}:") and rule:
            values[rule] = int(line.split(":")[1])
    return values


def dry_run_threads(workdir: Path, cores: int, gpu: bool) -> dict[str, int]:
    return per_rule(dry_run(workdir, cores, gpu), "threads", 1)


def test_on_a_gpu_machine_base_eval_runs_beside_tokenize_and_train(tmp_path):
    """With a GPU, base_eval (work on the GPU) takes a quarter of the cores, base_samples (a few sampled titles on
    the GPU) the one left free, and tokenize and train the rest, so neither waits for them even with both beside
    it; without a GPU each torch job takes every core."""
    planned = dry_run(tmp_path / "gpu", 16, gpu=True)
    gpu = per_rule(planned, "threads", 1)
    assert (gpu["prepare"], gpu["tokenize"], gpu["base_eval"], gpu["base_samples"], gpu["train"]) == (15, 11, 4, 1, 11)
    # where cores are short the chain to the adapter goes first: the base variants' stages wait, not it
    priority = per_rule(planned, "priority", 0)
    assert min(priority[rule] for rule in ("tokenize", "pack", "train")) > priority["base_eval"] == 0
    assert priority["base_samples"] == 0
    # both beside jobs at once leave tokenize's and train's cores free (an H100 run: train waited 26 s when
    # base_samples took a quarter of the cores too)
    assert gpu["tokenize"] + gpu["base_eval"] + gpu["base_samples"] <= 16
    assert gpu["train"] + gpu["base_eval"] + gpu["base_samples"] <= 16
    assert gpu["train"] + gpu["base_eval"] + gpu["plots"] <= 16  # plots, after train, beside a long base_eval
    assert gpu["generate"] == gpu["metrics"] == 7 and gpu["generate"] + gpu["metrics"] + gpu["plots"] <= 16
    cpu = dry_run_threads(tmp_path / "cpu", 16, gpu=False)
    rules = ("tokenize", "base_eval", "base_samples", "train", "generate", "metrics")
    assert tuple(cpu[rule] for rule in rules) == (16,) * 6
