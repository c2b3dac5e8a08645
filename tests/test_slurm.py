"""The workflow on a real one-node SLURM cluster, through the shipped profile `profiles/slurm`.

The module's fixture starts Debian's munged, slurmctld and slurmd (as root, no systemd) with one GPU GRES backed by
/dev/null and the two partitions the profile names; the tiny workflow then runs with
`snakemake --executor slurm --workflow-profile profiles/slurm results/compare.html` for two runs that share their data
and train with different learning rates and GPU counts. The checks read the cluster's own
records (`scontrol show job`, kept for an hour by MinJobAge), the plugin's per-job SLURM logs and the environment each
task saw (recorded by a TaskProlog). Only the daemons this module started are stopped, by their process handles.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from tests.conftest import ROOT, write_tiny_config

PROFILE = ROOT / "profiles" / "slurm"
# The jobstep plugin strips SLURM_CONF before its inner srun, so the cluster's config must be at the default path.
SLURM_CONF = Path("/etc/slurm/slurm.conf")
GRES_CONF = Path("/etc/slurm/gres.conf")
MARKER = "# written by tests/test_slurm.py"
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_RUN = Path("/run/munge")
BINARIES = ("munged", "munge", "unmunge", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo", "scancel")
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
SLURM_PORTS = (6817, 6818)  # slurmctld, slurmd (the defaults)

CPU_RULES = {"prepare", "tokenize", "pack", "base_model"}
GPU_RULES = {"train", "generate", "base_samples", "base_eval", "metrics"}
LOCAL_RULES = {"run_config", "plots", "run_report", "report", "compare"}
# The GPU rules' resources in the test's config.yaml: small enough for any CI machine, distinct enough to recognise.
GPU_RESOURCES = {"gpu": 1, "mem_mb": 2000, "runtime": 30}
TRAIN_GPUS = 2  # run a's train gets two GPUs: its job runs two data-parallel processes (gloo on the CPU here)
# Two runs sharing the data: each trains in a GPU job of its own, b on one GPU.
EXPERIMENT = {"runs": {"a": {}, "b": {"train": {"learning_rate": 1e-3, "resources": {"gpu": 1}}}}}
# The two runs share the base variants of the evaluation and of the samples (base_eval, base_samples): they
# differ in training only.
JOBS_PER_RULE = {
    "prepare": 1,
    "tokenize": 1,
    "pack": 1,
    "base_model": 1,
    "base_eval": 1,
    "base_samples": 1,
    "train": 2,
    "generate": 2,
    "metrics": 2,
}
WORKFLOW_TIMEOUT = 1800


def binary(name: str) -> str | None:
    return shutil.which(name, path=SEARCH_PATH)


def run(*cmd: str, timeout: float = 30, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kwargs)


def wait_for(condition, timeout: float, what: str, daemons: dict | None = None) -> None:
    """Poll `condition` every half second for at most `timeout` seconds; fail early if a daemon died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, (proc, log) in (daemons or {}).items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode} while waiting for {what}:\n{tail(log)}")
        if condition():
            return
        time.sleep(0.5)
    raise TimeoutError(f"{what}: not after {timeout} s")


def tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else f"({path} missing)"


def munge_works() -> bool:
    try:
        credential = run(binary("munge"), "-n", timeout=10)
        if credential.returncode != 0:
            return False
        return run(binary("unmunge"), input=credential.stdout, timeout=10).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("", port))
        except OSError:
            return False
    return True


def profile_partitions() -> tuple[str, str]:
    """The CPU and GPU partition names the shipped profile asks for (the cluster gets exactly these)."""
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    gpu = {profile["set-resources"][rule]["slurm_partition"] for rule in GPU_RULES}
    assert len(gpu) == 1, f"the GPU rules ask for different partitions: {gpu}"
    return profile["default-resources"]["slurm_partition"], gpu.pop()


def stop(proc: subprocess.Popen) -> None:
    """Stop one daemon this module started (SIGTERM, then SIGKILL after 30 s)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def active_job_ids() -> list[str]:
    result = run(binary("squeue"), "-h", "-o", "%i")  # pending, running and completing jobs
    return result.stdout.split() if result.returncode == 0 else []


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A one-node SLURM cluster (munged, slurmctld, slurmd) with a GPU GRES; stopped and unconfigured afterwards."""
    if os.geteuid() != 0:
        pytest.skip("starting munged, slurmctld and slurmd needs root")
    missing = [name for name in BINARIES if binary(name) is None]
    if missing:
        pytest.skip(f"SLURM binaries missing: {', '.join(missing)} (Debian: slurmctld slurmd slurm-client munge)")
    for conf in (SLURM_CONF, GRES_CONF):
        if conf.exists() and MARKER not in conf.read_text(errors="replace"):
            pytest.skip(f"{conf} exists and was not written by this test: not touching a configured cluster")
    busy = [port for port in SLURM_PORTS if not port_free(port)]
    if busy:
        pytest.skip(f"SLURM ports already in use: {busy} (another slurmctld/slurmd is running)")
    own_munge = not munge_works()
    if own_munge and not MUNGE_KEY.exists():
        pytest.skip(f"no running munged and no {MUNGE_KEY} to start one with")

    tmp = tmp_path_factory.mktemp("slurm_cluster")
    node_line = run(binary("slurmd"), "-C").stdout.splitlines()[0]  # NodeName=<host> CPUs=... RealMemory=...
    node = re.match(r"NodeName=(\S+)", node_line).group(1)
    cpu_partition, gpu_partition = profile_partitions()
    task_env = tmp / "task_env.txt"
    task_prolog = tmp / "task_prolog.sh"
    # Runs inside every task with the task's environment: records what CUDA_VISIBLE_DEVICES each job step saw.
    task_prolog.write_text(f'#!/bin/sh\necho "$SLURM_JOB_ID ${{CUDA_VISIBLE_DEVICES:-unset}}" >> {task_env}\n')
    task_prolog.chmod(0o755)
    (tmp / "state").mkdir()
    (tmp / "spool").mkdir()
    slurm_conf = f"""{MARKER}
ClusterName=snakemaketest
# Loopback addresses for the controller and the node: nothing depends on the host name resolving.
SlurmctldHost={node}(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation={tmp}/state
SlurmdSpoolDir={tmp}/spool
SlurmctldPidFile={tmp}/slurmctld.pid
SlurmdPidFile={tmp}/slurmd.pid
SlurmctldLogFile={tmp}/slurmctld.log
SlurmdLogFile={tmp}/slurmd.log
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
TaskProlog={task_prolog}
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
ReturnToService=2
# Finished jobs stay visible to squeue/scontrol for an hour: the plugin's squeue status mode and this test read them.
MinJobAge=3600
GresTypes=gpu
{node_line} NodeAddr=127.0.0.1 Gres=gpu:{TRAIN_GPUS} State=UNKNOWN
PartitionName={cpu_partition} Nodes={node} Default=YES MaxTime=INFINITE State=UP
PartitionName={gpu_partition} Nodes={node} MaxTime=INFINITE State=UP
"""
    # Each GPU GRES needs a device file: character devices like /dev/null (1, 3) stand in for the GPUs.
    for index in range(TRAIN_GPUS):
        os.mknod(tmp / f"fakegpu{index}", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    gres_conf = f"{MARKER}\nAutoDetect=off\nNodeName={node} Name=gpu File={tmp}/fakegpu[0-{TRAIN_GPUS - 1}]\n"

    daemons: dict[str, tuple[subprocess.Popen, Path]] = {}
    written: list[Path] = []
    made_munge_run = False

    def start(name: str, cmd: list[str], **kwargs) -> None:
        log = tmp / f"{name}.out"
        with log.open("w") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kwargs)
        daemons[name] = (proc, log)

    try:
        if own_munge:
            if not MUNGE_RUN.exists():
                MUNGE_RUN.mkdir(parents=True)
                made_munge_run = True
            shutil.chown(MUNGE_RUN, "munge", "munge")
            start("munged", [binary("munged"), "--foreground"], user="munge", group="munge")
            wait_for(munge_works, 30, "munged answering", daemons)
        SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
        for path, text in ((SLURM_CONF, slurm_conf), (GRES_CONF, gres_conf)):
            path.write_text(text)
            written.append(path)
        start("slurmctld", [binary("slurmctld"), "-D", "-c"])
        start("slurmd", [binary("slurmd"), "-D"])
        wait_for(
            lambda: run(binary("sinfo"), "-h", "-N", "-n", node, "-o", "%T").stdout.split() == ["idle"] * 2,
            60,
            f"node {node} idle in both partitions",
            daemons,
        )
        yield SimpleNamespace(
            node=node,
            cpu_partition=cpu_partition,
            gpu_partition=gpu_partition,
            task_env=task_env,
            slurmctld_log=tmp / "slurmctld.log",
        )
    finally:
        # Every job in this cluster is this test's; a failed run may leave some behind.
        if "slurmctld" in daemons and daemons["slurmctld"][0].poll() is None:
            ids = active_job_ids()
            if ids:
                run(binary("scancel"), *ids)
                try:
                    wait_for(lambda: not active_job_ids(), 60, "cancelled jobs gone")
                except TimeoutError:
                    pass
        for name in ("slurmd", "slurmctld", "munged"):
            if name in daemons:
                stop(daemons[name][0])
        for path in written:
            path.unlink(missing_ok=True)
        if made_munge_run:
            shutil.rmtree(MUNGE_RUN, ignore_errors=True)


def cluster_jobs() -> list[dict[str, str]]:
    """Every job slurmctld still holds (MinJobAge keeps finished ones), as `scontrol show job -d -o` fields."""
    result = run(binary("scontrol"), "show", "job", "-d", "-o")
    assert result.returncode == 0, result.stderr
    return [dict(re.findall(r"(\S+?)=(\S*)", line)) for line in result.stdout.splitlines() if "JobId=" in line]


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tiny_catalog, tiny_model_dir, tmp_path_factory):
    """The tiny workflow run to results/report.html through the shipped SLURM profile, in a fresh folder."""
    workdir = tmp_path_factory.mktemp("slurm_workflow")
    write_tiny_config(workdir, tiny_catalog, tiny_model_dir, GPU_RESOURCES, EXPERIMENT)
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["train"]["resources"]["gpu"] = TRAIN_GPUS
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
    # The jobs inherit this environment (sbatch --export=ALL): no SLURM job context, no GPU unless SLURM gives one.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k != "CUDA_VISIBLE_DEVICES"}
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--executor",
        "slurm",
        "--workflow-profile",
        str(PROFILE),
        # The tiny jobs take seconds: first status check after 5 s instead of the plugin's 40 s.
        "--slurm-init-seconds-before-status-checks",
        "5",
        "results/report.html",
        "results/compare.html",
        # The profile's threads for the torch and tokenizer rules (sbatch --cpus-per-task) are sized for cluster
        # nodes; this test's node has the machine's cores. (Last: the option takes every word after it.)
        "--set-threads",
        *(
            f"{rule}={min(2, os.cpu_count() or 1)}"
            for rule in ("prepare", "tokenize", "train", "generate", "base_samples", "base_eval", "metrics")
        ),
    ]
    output = workdir / "snakemake.out"
    started = time.monotonic()
    with output.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            returncode = proc.wait(timeout=WORKFLOW_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)  # snakemake's own process group: it cancels its SLURM jobs
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            pytest.fail(f"snakemake on SLURM took over {WORKFLOW_TIMEOUT} s:\n{tail(output)}")
    text = output.read_text(errors="replace")
    assert returncode == 0, f"{text[-6000:]}\n--- slurmctld.log ---\n{tail(slurm_cluster.slurmctld_log)}"
    run_id = re.search(r"SLURM run ID: (\S+)", text).group(1)
    jobs = [job for job in cluster_jobs() if job.get("JobName") == run_id]
    return SimpleNamespace(
        workdir=workdir, output=text, jobs=jobs, seconds=time.monotonic() - started, cluster=slurm_cluster
    )


def test_the_workflow_finishes_on_slurm(slurm_run):
    report = slurm_run.workdir / "results" / "report.html"
    assert report.exists() and "Quality on held-out data" in report.read_text()
    assert "Comparison of 2 runs" in (slurm_run.workdir / "results" / "compare.html").read_text()
    print(f"snakemake on SLURM: {slurm_run.seconds:.0f} s")


def rule_of(job: dict) -> str:
    """The rule a SLURM job ran: the plugin's comment is rule_<rule>, then _wildcards_<values> if it has any."""
    return re.fullmatch(r"rule_(\w+?)(?:_wildcards_.*)?", job["Comment"]).group(1)


def job_log(slurm_run, rule: str, job: dict) -> str:
    """The plugin's per-job log (sbatch --output), kept by the profile next to the rules' own logs."""
    # logs/slurm/rule_<rule>/[<wildcard values>/]<job id>.log
    [log] = (slurm_run.workdir / "logs" / "slurm" / f"rule_{rule}").glob(f"**/{job['JobId']}.log")
    return log.read_text()


def job_run(slurm_run, rule: str, job: dict) -> str:
    """The run a GPU job served: its `run` wildcard, or for train the run whose lineage names its key."""
    wildcards = re.search(r"wildcards: (\S+)=(\S+)", job_log(slurm_run, rule, job))
    name, value = wildcards.groups()
    if name == "run":
        return value
    for run in EXPERIMENT["runs"]:
        lineage = json.loads((slurm_run.workdir / "results" / "runs" / run / "lineage.json").read_text())
        if lineage["stages"][rule]["key"] == value:
            return run
    raise AssertionError(f"no run uses {rule} key {value}")


def test_every_non_local_rule_ran_as_a_slurm_job(slurm_run):
    by_rule: dict[str, list[dict]] = {}
    for job in slurm_run.jobs:
        by_rule.setdefault(rule_of(job), []).append(job)  # the plugin names the rule
    # plots and the pages are localrules: not on the cluster; the data is shared, each run trains apart.
    assert {rule: len(jobs) for rule, jobs in by_rule.items()} == JOBS_PER_RULE
    for rule, jobs in by_rule.items():
        for job in jobs:
            assert (job["JobState"], job["ExitCode"]) == ("COMPLETED", "0:0"), (rule, job)
            expected = slurm_run.cluster.gpu_partition if rule in GPU_RULES else slurm_run.cluster.cpu_partition
            assert job["Partition"] == expected, rule
            assert job["NodeList"] == slurm_run.cluster.node
            # One rule per job: a job's Snakemake reruns upstream rules in its allocation when their code or
            # inputs changed after they ran (an edit to the workflow while it runs).
            ran = set(re.findall(r"^(?:local)?rule (\w+):$", job_log(slurm_run, rule, job), flags=re.MULTILINE))
            assert ran == {rule}, f"the SLURM job {job['JobId']} of {rule} ran {sorted(ran)}"
        if rule in GPU_RULES:
            # base_eval and base_samples are keyed and both runs agree on their keys: one job serves both
            # (job_run names the first).
            served = ["a"] if rule in ("base_eval", "base_samples") else ["a", "b"]
            assert sorted(job_run(slurm_run, rule, job) for job in jobs) == served, rule
    for rule in LOCAL_RULES:
        assert f"localrule {rule}:" in slurm_run.output


def gpus_of(rule: str, run: str) -> int:
    return TRAIN_GPUS if rule == "train" and run == "a" else 1


def test_the_gpu_rules_were_given_the_gpu(slurm_run):
    task_env: dict[str, set[str]] = {}
    for line in slurm_run.cluster.task_env.read_text().splitlines():
        job_id, visible = line.split()
        task_env.setdefault(job_id, set()).add(visible)
    for job in slurm_run.jobs:
        rule = rule_of(job)
        if rule in GPU_RULES:
            # the run's <rule>.resources -> sbatch --gpus, --mem, -t
            gpus = gpus_of(rule, job_run(slurm_run, rule, job))
            assert job["JOB_GRES"] == f"gpu:{gpus}" and job["TresPerJob"] == f"gres:gpu:{gpus}", (rule, job)
            assert f"mem={GPU_RESOURCES['mem_mb']}M" in job["TRES"].split(","), (rule, job["TRES"])
            assert job["TimeLimit"] == f"00:{GPU_RESOURCES['runtime']}:00", rule
            # The batch step and the srun step inside it both saw the GPUs SLURM allocated.
            visible = ",".join(str(index) for index in range(gpus))
            assert task_env[job["JobId"]] == {visible}, (rule, task_env.get(job["JobId"]))
        else:
            assert job["JOB_GRES"] == "(null)", (rule, job["JOB_GRES"])
            assert task_env[job["JobId"]] == {"unset"}, (rule, task_env.get(job["JobId"]))


def test_train_ran_one_process_per_gpu_of_its_job(slurm_run):
    """train.resources.gpu: 2 -> sbatch --gpus=2 on one node -> the stage starts 2 processes with torchrun;
    run b asks for one GPU and trains in one process."""
    for run in EXPERIMENT["runs"]:
        lineage = json.loads((slurm_run.workdir / "results" / "runs" / run / "lineage.json").read_text())
        timing = json.loads((slurm_run.workdir / lineage["stages"]["train"]["folder"] / "timing.json").read_text())
        assert timing["plan"]["world_size"] == gpus_of("train", run), run
