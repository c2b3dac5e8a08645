"""Rules a Snakemake dry run would execute, through the Snakemake API, in a process of its own.

Snakemake keeps some state per process (a script's code is read once), so each dry run gets a fresh one:
    python tests/dryrun.py WORKDIR '{"generate": {"temperature": 0.3}}'   ->   ["generate", "report"]
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def planned_rules(workdir: Path, overrides: dict) -> list[str]:
    from snakemake.api import SnakemakeApi
    from snakemake.settings.enums import Quietness
    from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings

    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(config=overrides),
            snakefile=ROOT / "Snakefile",
            workdir=workdir,
        )
        updated: list[str] = []
        workflow.dag(DAGSettings(targets={"results/report.html"})).execute_workflow(
            executor="dryrun", updated_files=updated
        )
        # Rules here have no wildcards, so an output path names its rule.
        by_output = {str(out): rule.name for rule in workflow._workflow.rules for out in rule.output}
    return sorted({by_output[path] for path in updated})


if __name__ == "__main__":
    print(json.dumps(planned_rules(Path(sys.argv[1]), json.loads(sys.argv[2]))))
