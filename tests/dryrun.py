"""Jobs a Snakemake dry run would execute, through the Snakemake API, in a process of its own.

Snakemake keeps some state per process (a script's code is read once), so each dry run gets a fresh one:
    python tests/dryrun.py WORKDIR TARGET '{"generate": {"temperature": 0.3}}'
prints the planned jobs as {rule: [runs]}: for a keyed stage the runs that use the job's key, for a per-run
rule its run, for a rule of the whole experiment (compare, report) every run. `{"generate": ["tiny"]}`.
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def planned_jobs(workdir: Path, target: str, overrides: dict) -> dict[str, list[str]]:
    from snakemake.api import SnakemakeApi
    from snakemake.settings.enums import Quietness
    from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings

    from ftpipe.workflow.experiments import ExperimentPlan

    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(config=overrides),
            snakefile=ROOT / "Snakefile",
            workdir=workdir,
        )
        updated: list[str] = []
        workflow.dag(DAGSettings(targets={target})).execute_workflow(executor="dryrun", updated_files=updated)
        rules = list(workflow._workflow.rules)
        plan = ExperimentPlan(workflow._workflow.config)
    jobs: dict[str, set[str]] = {}
    for path in updated:
        rule = next(rule for rule in rules if rule.is_producer(path))
        wildcards = rule.get_wildcards(path)
        if "run" in wildcards:
            runs = [wildcards["run"]]
        elif "key" in wildcards:
            runs = plan.runs_using(rule.name, wildcards["key"])
        else:
            runs = list(plan.runs)
        jobs.setdefault(rule.name, set()).update(runs)
    return {rule: sorted(runs) for rule, runs in sorted(jobs.items())}


if __name__ == "__main__":
    print(json.dumps(planned_jobs(Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]))))
