import os
import re
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))
from ftpipe.workflow.config_check import check_config  # noqa: E402
from ftpipe.workflow.experiments import (  # noqa: E402
    KEY_PATTERN,
    STAGE_FOLDERS,
    ExperimentPlan,
    SourceHashes,
    stage_params,
)
from ftpipe.imports import imported_modules  # noqa: E402
from ftpipe.io import write_json  # noqa: E402
from ftpipe.settings import rule_param_paths, value_at  # noqa: E402
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# Every config error is reported here, before any job starts (each run of an experiment too).
check_config(
    config,
    Path(workflow.basedir) / "schemas" / "config.schema.yaml",
    command_line=workflow.config_settings.config,  # --config values arrive as strings: typed by the schema
)
validate(config, "../schemas/config.schema.yaml")

# The runs (one without an `experiment` section) and each run's stage keys: a stage's outputs live under a
# folder named by the hash of what determines them, so runs that agree on a stage share its files.
PLAN = ExperimentPlan(config, SourceHashes(".snakemake/ftpipe/source_sha256.json"))
RUNS = list(PLAN.runs)
BASELINE = PLAN.baseline


# Snakemake tracks a rule's own script but not the modules it imports: those of scripts/ that the script
# imports (read from its import statements) are inputs of the rule, so an edit to one reruns the rules whose
# script runs it, and no other (checksums keep a mere touch from doing so).
def code_of(script):
    return [
        str(path)
        for path in imported_modules(Path(workflow.basedir) / "scripts" / script)
    ]


# The pages' templates: an input of the rules that render them, so an edit to one renders the pages again.
TEMPLATES = sorted(
    str(path) for path in (Path(workflow.basedir) / "report" / "templates").glob("*.j2")
)
# Each keyed stage's output folder (the experiments module names them; lineage.json records them).
PREPARED, BASE_MODEL, TOKENIZED, PACKED, TRAINED, BASE_EVAL, BASE_SAMPLES = (
    f"{STAGE_FOLDERS[stage]}/{{key}}"
    for stage in (
        "prepare",
        "base_model",
        "tokenize",
        "pack",
        "train",
        "base_eval",
        "base_samples",
    )
)
RUN_DIR = "results/runs/{run}"


# The torch and tokenizer jobs take every core Snakemake is given, so on one machine they run one at a time
# instead of slowing each other down; on SLURM the profile sets their threads (set-threads).
def TORCH_THREADS(wildcards):
    try:
        return workflow.cores
    except WorkflowError:  # no --cores (a report, a lint): the job does not run
        return 1


# On a machine with a GPU the evaluation jobs compute there: generate, metrics and the base variants' stages may
# run side by side.
HAS_GPU = (
    shutil.which("nvidia-smi") is not None
    and os.environ.get("CUDA_VISIBLE_DEVICES") != ""
)
# With a GPU one core is left to the one-thread jobs (run_config, plots, the reports): measured on an H100 with
# 16 cores, plots waited for generate and metrics, which held every core, and ended after them.
FREE_CORE = 1


def EVAL_THREADS(wildcards):
    """generate's and metrics' threads: with a GPU half the cores but the free one each (they run side by
    side), else all."""
    cores = TORCH_THREADS(wildcards)
    return max(1, (cores - FREE_CORE) // 2) if HAS_GPU else cores


# base_eval does not need the adapter: with a GPU it takes a quarter of the cores and tokenize and train the rest,
# so it runs beside them instead of making train wait (its work is on the GPU while tokenize's and train's is on
# the CPU: tokenizing, compiling). Measured on an H100 with 16 cores, train waited 59 s for base_eval when it
# took half the cores.
def BESIDE_THREADS(wildcards):
    """base_eval's threads: a quarter of the cores with a GPU, else all."""
    cores = TORCH_THREADS(wildcards)
    return max(1, cores // 4) if HAS_GPU else cores


# base_samples samples a few titles on the GPU: there it takes the core left free, so that with base_eval and
# base_samples both beside the chain, tokenize's and train's cores stay free. Measured on an H100 with 16 cores:
# with a quarter of the cores each, base_samples started beside base_eval when tokenize ended, and train waited
# 26 s for it.
def SAMPLES_THREADS(wildcards):
    """base_samples' threads: the free core with a GPU, else all."""
    return FREE_CORE if HAS_GPU else TORCH_THREADS(wildcards)


# Where cores are short for every ready job, tokenize, pack and train go first: base_eval and base_samples run
# beside the chain to the adapter, never ahead of it (Snakemake had picked them first on a 2-core machine).
CHAIN_PRIORITY = 1


def MAIN_THREADS(wildcards):
    """tokenize's and train's threads: every core, or with a GPU all but base_eval's and the free one."""
    cores = TORCH_THREADS(wildcards)
    return max(1, cores - BESIDE_THREADS(wildcards) - FREE_CORE) if HAS_GPU else cores


def ALL_BUT_ONE_CORE(wildcards):
    """prepare's parsing processes: every core but one, which base_model uses meanwhile."""
    return max(1, TORCH_THREADS(wildcards) - 1)


wildcard_constraints:
    key=KEY_PATTERN,
    run="|".join(re.escape(name) for name in RUNS),


localrules:
    run_config,
    plots,
    run_report,
    report,
    compare,


# ---------------------------------------------------------------- keyed stages (wildcard `key`)


def keyed_params(stage):
    """The rule's params for a keyed stage, each a function of the key (Snakemake compares their values)."""
    names = stage_params(stage, PLAN.runs[BASELINE])
    return {
        name: (lambda wildcards, name=name: PLAN.params(stage, wildcards.key)[name])
        for name in names
    }


def stage_record(stage):
    """What a key stands for, written as params.json beside the stage's outputs."""
    return lambda wildcards: PLAN.stage_file(stage, wildcards.key)


def upstream(stage, upstream_stage, pattern):
    """Path of an output of the stage that `stage` reads, for the job's key."""
    return lambda wildcards: pattern.format(
        key=PLAN.upstream_key(stage, wildcards.key, upstream_stage)
    )


def key_config(stage, section):
    """A config section of a run that uses the job's key (resources, threads: not part of the key)."""
    return lambda wildcards: PLAN.config_of_key(stage, wildcards.key)[section]


# ---------------------------------------------------------------- per-run rules (wildcard `run`)


def of_run(stage, pattern):
    """Path of a keyed stage's output that the job's run uses."""
    return lambda wildcards: pattern.format(key=PLAN.keys[wildcards.run][stage])


def run_params(rule):
    """The rule's params from the job's run (ftpipe.settings says which config values feed the rule)."""
    paths = rule_param_paths(rule, PLAN.runs[BASELINE])
    return {
        name: (lambda wildcards, path=path: value_at(PLAN.runs[wildcards.run], path))
        for name, path in paths.items()
    }


def every_run(stage, pattern):
    """Paths of a keyed stage's output, one per run, in the runs' order (for the comparison)."""
    return [pattern.format(key=PLAN.keys[run][stage]) for run in RUNS]


def run_value(section, *keys):
    """One config value of the job's run."""

    def value(wildcards):
        found = PLAN.runs[wildcards.run][section]
        for key in keys:
            found = found[key]
        return found

    return value


def resources_of(value_of_section):
    """gpu, mem_mb and runtime of a rule from its config section's `resources` (Snakemake calls these per job)."""
    return {
        name: (
            lambda wildcards, name=name: value_of_section(wildcards)["resources"][name]
        )
        for name in ("gpu", "mem_mb", "runtime")
    }
