import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))
from ftpipe.config_check import check_config  # noqa: E402
from snakemake.utils import validate

# Every config error is reported here, before any job starts.
check_config(
    config,
    Path(workflow.basedir) / "schemas" / "config.schema.yaml",
    command_line=workflow.config_settings.config,  # --config values arrive as strings: typed by the schema
)
validate(config, "../schemas/config.schema.yaml")

RUN = config["run_name"]
# Snakemake tracks a rule's own script but not the modules it imports: the shared package is an input
# of every stage, so an edit to it reruns the stages (checksums keep a mere touch from doing so).
SHARED_CODE = sorted(
    str(path) for path in (Path(workflow.basedir) / "scripts" / "ftpipe").glob("*.py")
)
DATA = "results/data"
RUN_DIR = f"results/runs/{RUN}"
BASE_MODEL = "results/base_model"


localrules:
    plots,
    report,


def cfg(section, *keys):
    """A config value by path (cfg("train", "lora", "r")); the rules pass these on through params."""
    value = config[section]
    for key in keys:
        value = value[key]
    return value


def resources_of(section):
    res = cfg(section, "resources")
    return {"gpu": res["gpu"], "mem_mb": res["mem_mb"], "runtime": res["runtime"]}


def literal(value):
    """A params value Snakemake must not expand: prompt templates contain {title} and {content}."""
    return lambda wildcards: value
