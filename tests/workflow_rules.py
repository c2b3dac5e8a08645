"""Each rule of the workflow as Snakemake parsed it, through the Snakemake API, in a process of its own:
    python tests/workflow_rules.py WORKDIR
prints {rule: {"params": [names], "script": path or null, "code": [input files under scripts/]}} for the
config.yaml in WORKDIR (no job runs)."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def workflow_rules(workdir: Path) -> dict:
    from snakemake.api import SnakemakeApi
    from snakemake.settings.enums import Quietness
    from snakemake.settings.types import OutputSettings, ResourceSettings

    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(cores=1), snakefile=ROOT / "Snakefile", workdir=workdir
        )
        rules = list(workflow._workflow.rules)
    return {
        rule.name: {
            "params": sorted(rule.params._names),
            "script": rule.script,
            "code": sorted(str(path) for path in rule.input.get("code", []) if str(path).endswith(".py")),
        }
        for rule in rules
    }


if __name__ == "__main__":
    print(json.dumps(workflow_rules(Path(sys.argv[1]))))
