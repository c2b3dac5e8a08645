"""Time to a trained, evaluated adapter: raw file -> results/report.html through the whole workflow, timed.

    python bench/train_throughput.py prepare          # once, on any machine: writes bench/work/tokenizer
    python bench/time_to_report.py run --rows 1000000 --cores 16 --results-dir $OUT     # on the GPU node
    python bench/time_to_report.py run --smoke        # CPU smoke test: 3,000 rows, a 2-layer model

In a fresh work folder it (a) generates `--rows` AmazonTitles-shaped raw lines with scripts/make_catalog.py,
(b) builds a TinyLlama-shaped model with random weights as a local folder (TinyLlama v1.1's shape; throughput does
not depend on the weights) with a 32,000-token tokenizer cut from the SmolLM2 tokenizer that
`train_throughput.py prepare` saved (its first 32,000 tokens and the merges that make them: TinyLlama's
vocabulary size, so the model has TinyLlama's embedding and output shapes), (c) runs

    snakemake --snakefile Snakefile --directory <work> --cores N \
        --configfile presets/tinyllama.yaml <work>/overrides.yaml results/report.html

where overrides.yaml sets data.raw and model.source to the two files above (the torch and tokenizer rules take
every core Snakemake is given), and
(d) writes the wall-clock total, every Snakemake benchmark TSV found under <work>/benchmarks (its seconds,
peak RSS and CPU seconds, keyed by its path and mapped to its rule), the GPU's name and the core count to
`time_to_report.json`, with the critical path: the chain of jobs, read from Snakemake's log, that set the
total. The steps before the workflow (catalog, model) are timed apart. A failed or timed-out workflow still
writes the JSON, with the return code, the rules that finished and the log's tail.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "work"
TINY_SHAPE = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
)
# Smoke mode: the preset's recipe on a few thousand rows, with a handful of steps and titles.
SMOKE_OVERRIDES = {
    "data": {"sample_size": 2000},
    "train": {"max_steps": 3, "logging_steps": 1},
    "generate": {"num_titles": 2, "max_new_tokens": 8},
    "metrics": {"num_titles": 4, "perplexity_rows": 8, "max_new_tokens": 8, "batch_size": 4},
}
TSV_FIELDS = {"s": "seconds", "max_rss": "max_rss_mb", "cpu_time": "cpu_seconds"}
LOG_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")  # [Sat Dec  5 20:15:28 2026]


# ---------------------------------------------------------------- inputs


def build_model(out: Path, tiny: bool) -> dict:
    """The random-weight TinyLlama-shaped model (or a 2-layer one) with the truncated tokenizer, saved to `out`."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    sys.path.insert(0, str(ROOT / "bench"))
    from train_throughput import TINYLLAMA, truncated_tokenizer

    source = WORK / "tokenizer"
    if not (source / "tokenizer.json").exists():
        raise SystemExit(f"time_to_report: {source} is missing: run `python bench/train_throughput.py prepare` first")
    shape = {**TINYLLAMA, **(TINY_SHAPE if tiny else {})}
    tokenizer_dir = truncated_tokenizer(source, out.with_name(out.name + "-tokenizer"), shape["vocab_size"])
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    if len(tokenizer) != shape["vocab_size"]:
        raise SystemExit(f"time_to_report: the tokenizer has {len(tokenizer)} tokens, the model {shape['vocab_size']}")
    # No pad token (see train_throughput.make_model: a zero embedding row turns the gradients NaN).
    config = LlamaConfig(
        **shape, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=None
    )
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"parameters": sum(p.numel() for p in model.parameters()), **shape}


# ---------------------------------------------------------------- results


def rule_names() -> list[str]:
    """The workflow's rule names, read from the rule files (longest first, for prefix matching)."""
    names = set()
    for path in [ROOT / "Snakefile", *sorted((ROOT / "rules").glob("*.smk"))]:
        names.update(re.findall(r"^rule\s+(\w+)\s*:", path.read_text(), flags=re.MULTILINE))
    return sorted(names, key=len, reverse=True)


def rule_of(relative: Path, rules: list[str]) -> str:
    """The rule a benchmark TSV belongs to: its stem if that is a rule name, else the longest rule name the
    stem starts with (a wildcard added to the file name, as `train_demo` or `train.demo`), else a folder named
    after a rule (`benchmarks/train/demo.tsv`), else the stem itself."""
    stem = relative.stem
    if stem in rules:
        return stem
    for name in rules:  # longest first: `base_model_x` is base_model's, not a shorter rule's
        if re.match(rf"{re.escape(name)}(?![A-Za-z0-9])", stem):
            return name
    for part in reversed(relative.parent.parts):
        if part in rules:
            return part
    return stem


def rules_from_log(log_text: str) -> dict:
    """{benchmark path: rule} as Snakemake printed them: each job's `rule NAME:` (or `localrule NAME:`) block
    lists its `benchmark:` path. The surest mapping; rule_of's guess from the path is the fallback."""
    found, rule = {}, None
    for line in log_text.splitlines():
        if match := re.match(r"^(?:local)?rule (\w+):\s*$", line):
            rule = match.group(1)
        elif rule and (match := re.match(r"^\s+benchmark: (\S+)\s*$", line)):
            found[match.group(1)] = rule
    return found


def job_timeline(log_text: str) -> list[dict]:
    """Each job Snakemake ran: its rule, its start and end in seconds after the first job's start (Snakemake's
    timestamps: to the second; no end for a job that did not finish) and the jobs whose outputs it reads, in
    start order (a job's `index` in this list)."""
    stamp, block, jobs, producers = None, None, {}, {}
    for line in log_text.splitlines():
        if match := LOG_STAMP.match(line.strip()):
            stamp = datetime.strptime(match.group(1), "%a %b %d %H:%M:%S %Y")
        elif match := re.match(r"^(?:local)?rule (\w+):\s*$", line):
            block = {"rule": match.group(1), "start": stamp, "end": None, "input": [], "output": []}
        elif block and (match := re.match(r"^\s+(input|output): (.*)$", line)):
            block[match.group(1)] = match.group(2).split(", ")
        elif block and (match := re.match(r"^\s+jobid: (\d+)\s*$", line)):
            jobs[match.group(1)] = block
            producers.update(dict.fromkeys(block.pop("output"), match.group(1)))
            block = None
        elif (match := re.match(r"^Finished jobid: (\d+)", line)) and match.group(1) in jobs:
            jobs[match.group(1)]["end"] = stamp
    if not jobs:
        return []
    first = min(job["start"] for job in jobs.values())
    order = sorted(jobs, key=lambda jobid: jobs[jobid]["start"])
    index = {jobid: position for position, jobid in enumerate(order)}

    def seconds(when):
        return None if when is None else (when - first).total_seconds()

    return [
        {
            "index": index[jobid],
            "rule": jobs[jobid]["rule"],
            "start": seconds(jobs[jobid]["start"]),
            "end": seconds(jobs[jobid]["end"]),
            "after": sorted({index[producers[path]] for path in jobs[jobid]["input"] if path in producers}),
        }
        for jobid in order
    ]


def critical_path(timeline: list[dict]) -> list[dict]:
    """The chain of jobs that set the total, first job first, each with its seconds: from the job that ended
    last, back through the job each one waited for: the input it read that was written last, where it started
    then (to the log's second); else the cores it waited for, those of the job that ended last before it
    started (jobs queued for cores, as on a small machine)."""
    finished = [job for job in timeline if job["end"] is not None]

    def latest(job):  # of jobs ending in the same second, the one started later
        return job["end"], job["index"]

    path, job = [], max(finished, key=latest, default=None)
    while job is not None:
        path.append({key: job[key] for key in ("rule", "start", "end")} | {"seconds": job["end"] - job["start"]})
        inputs = [timeline[index] for index in job["after"] if timeline[index]["end"] is not None]
        read_last = max(inputs, key=latest, default=None)
        if read_last is not None and read_last["end"] >= job["start"] - 1:
            job = read_last
        else:  # an earlier-started job only: jobs of zero seconds would otherwise lead back to each other
            before = [other for other in finished if other["index"] < job["index"] and other["end"] <= job["start"]]
            job = max(before, key=latest, default=None)
    return path[::-1]


def benchmark_rows(work: Path, log_text: str = "") -> dict:
    """Every Snakemake benchmark TSV under work/benchmarks: {relative path: {rule, seconds, ...}}. A TSV with
    several rows (benchmark repeats) gives the mean and keeps the rows."""
    rules = rule_names()
    logged = rules_from_log(log_text)
    found = {}
    for path in sorted((work / "benchmarks").glob("**/*.tsv")):
        relative = path.relative_to(work / "benchmarks")
        rule = logged.get(str(path.relative_to(work))) or rule_of(relative, rules)
        lines = [line.split("\t") for line in path.read_text().splitlines() if line.strip()]
        if len(lines) < 2:
            found[str(relative)] = {"rule": rule, "error": "no rows"}
            continue
        header, rows = lines[0], lines[1:]
        parsed = []
        for row in rows:
            values = dict(zip(header, row, strict=False))
            parsed.append({out: _number(values.get(field)) for field, out in TSV_FIELDS.items()})
        entry = {"rule": rule}
        for key in TSV_FIELDS.values():
            numbers = [row[key] for row in parsed if row[key] is not None]
            entry[key] = round(sum(numbers) / len(numbers), 3) if numbers else None
        if len(parsed) > 1:
            entry["repeats"] = parsed
        found[str(relative)] = entry
    return found


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def per_rule_seconds(benchmarks: dict) -> dict:
    """Seconds by rule name, summed over the TSVs of a rule (several when a rule runs for several wildcards)."""
    totals = {}
    for entry in benchmarks.values():
        if entry.get("seconds") is not None:
            totals[entry["rule"]] = round(totals.get(entry["rule"], 0.0) + entry["seconds"], 3)
    return totals


def merge(into: dict, extra: dict) -> dict:
    """Deep-merge `extra` into `into` (as Snakemake merges config files)."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value
    return into


def gpu_name() -> str:
    try:
        names = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "none (CPU)"
    names = [name.strip() for name in names if name.strip()]
    return ", ".join(names) if names else "none (CPU)"


def archive_logs(work: Path, archive: Path) -> list[str]:
    """Snakemake's log, every rule log and benchmark TSV, and the results' JSON records under 3 MB (timings,
    stats, counts) of a work folder, in one .tar.gz: what the per-rule analysis reads, as one file (a GPU
    machine may hand back only a few). Returns the archived paths, relative to `work`."""
    import tarfile

    wanted = [
        work / "snakemake_run.log",
        *sorted((work / "logs").rglob("*.log")),
        *sorted((work / "benchmarks").rglob("*.tsv")),
    ]
    if (work / "results").exists():
        wanted += [path for path in sorted((work / "results").rglob("*.json")) if path.stat().st_size < 3 << 20]
    names = [str(path.relative_to(work)) for path in wanted if path.is_file()]
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for name in names:
            tar.add(work / name, arcname=name)
    return names


def tail(path: Path, chars: int = 6000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def train_breakdown(rule_seconds: float | None, timing: dict) -> dict:
    """The training rule's seconds cut into start (interpreter, imports), load (blocks, model, LoRA, compile
    wrappers), warm-up (the first steps: compilation, CUDA-graph capture), work (the other steps) and save."""
    total, setup, save = (timing.get(key) for key in ("total_seconds", "setup_seconds", "save_seconds"))
    warmup = timing.get("warmup_seconds")
    if None in (total, setup, save, warmup):
        return {"rule_seconds": rule_seconds, "note": "timing.json has no setup/save seconds (older train.py)"}
    return {
        "rule_seconds": rule_seconds,
        "start": round(rule_seconds - total, 2) if rule_seconds else None,
        "load": setup,
        "warmup": warmup,
        "work": round(total - setup - save - warmup, 2),
        "save": save,
    }


def breakdown(work: Path, per_rule: dict) -> dict:
    """Train, generate, base_samples, base_eval and metrics: their rule seconds and where they went, as far as
    their outputs say (train's timing.json; a `timing` record in the samples', base_samples', base_eval's or
    metrics' JSON)."""
    results = work / "results"
    found = {"train": {}, "generate": {}, "base_samples": {}, "base_eval": {}, "metrics": {}}
    timing = next(results.glob("**/timing.json"), None) if results.exists() else None
    found["train"] = train_breakdown(per_rule.get("train"), json.loads(timing.read_text()) if timing else {})
    patterns = (
        ("generate", "**/samples.json"),
        ("base_samples", "**/base_samples.json"),
        ("base_eval", "**/base_eval.json"),
        ("metrics", "**/metrics.json"),
    )
    for rule, pattern in patterns:
        found[rule] = {"rule_seconds": per_rule.get(rule)}
        for path in sorted(results.glob(pattern)) if results.exists() else []:
            try:
                record = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(record, dict) and isinstance(record.get("timing"), dict):
                found[rule][str(path.relative_to(work))] = record["timing"]
    return found


# ---------------------------------------------------------------- the run


def cpu_model() -> str | None:
    """The CPU's model name (Linux): GPU nodes of one kind differ in it, and the CPU-bound stages with them."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), None)


def workflow_environment(env: dict, bytecode_cache: str | None) -> dict:
    """The workflow's environment: `env`, and with `bytecode_cache` Python writes and reads the bytecode of what
    it imports there (PYTHONPYCACHEPREFIX; a PYTHONDONTWRITEBYTECODE of the image cleared). For images like
    the lent GPU nodes', where torch ships no .pyc files and writing them is off: there every process compiled
    torch's sources again (import torch 2.6-3.5 s against 1.1 s with the cache; bench/README.md)."""
    if not bytecode_cache:
        return env
    cleared = {key: value for key, value in env.items() if key != "PYTHONDONTWRITEBYTECODE"}
    return {**cleared, "PYTHONPYCACHEPREFIX": str(Path(bytecode_cache).resolve())}


def installed_code_dirs() -> list[Path]:
    """The standard library and every site-packages folder on this Python's path (PYTHONPATH's included), none
    inside another, leaving out this repository: its own modules get their bytecode from the first stage that
    imports them, as on a user's first run."""
    import site
    import sysconfig

    paths = sysconfig.get_paths()
    candidates = [paths["stdlib"], paths["purelib"], paths["platlib"], *site.getsitepackages(), *sys.path]
    dirs = []
    for candidate in candidates:
        path = Path(candidate).resolve() if candidate else None
        if path and path.is_dir() and path not in dirs and not path.is_relative_to(ROOT):
            dirs.append(path)
    return [path for path in dirs if not any(path != other and path.is_relative_to(other) for other in dirs)]


def compile_bytecode(dirs: list[Path], workers: int) -> dict:
    """Compile every Python source under `dirs` where this process keeps bytecode (sys.pycache_prefix, from
    PYTHONPYCACHEPREFIX): what `pip install` does at install time and the lent GPU nodes' image left undone."""
    import compileall

    started = time.perf_counter()
    for folder in dirs:  # False where some file does not compile (a package's test data): nothing to do about it
        compileall.compile_dir(folder, quiet=2, workers=workers)
    return {"dirs": [str(folder) for folder in dirs], "seconds": round(time.perf_counter() - started, 2)}


def make_inputs(raw: Path, model_dir: Path, rows: int, smoke: bool, env: dict, result: dict) -> bool:
    """Generate the raw file and build the random-weight model folder, side by side in two processes (neither
    part of the workflow's time); their seconds, or the error, go to `result`. True when both were made."""
    python = sys.executable
    t0 = time.perf_counter()
    catalog = subprocess.Popen(
        [python, str(ROOT / "scripts" / "make_catalog.py"), "--rows", str(rows), "--out", str(raw)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    model_cmd = [python, __file__, "model", "--out", str(model_dir)] + (["--tiny"] if smoke else [])
    model = subprocess.run(model_cmd, capture_output=True, text=True, env=env)
    result["model_seconds"] = round(time.perf_counter() - t0, 2)
    catalog_out, _ = catalog.communicate()
    result["inputs_seconds"] = round(time.perf_counter() - t0, 2)
    if model.returncode or catalog.returncode:
        result["error"] = f"inputs failed: model rc {model.returncode}, catalog rc {catalog.returncode}"
        result["inputs_log"] = (model.stdout + model.stderr)[-4000:] + catalog_out[-2000:]
        return False
    result["model"] = json.loads(model.stdout.strip().splitlines()[-1])
    inputs_record(raw).write_text(json.dumps({"rows": rows, "model": result["model"]}) + "\n")
    return True


def inputs_record(raw: Path) -> Path:
    """What make_inputs made (rows, the model's description), kept in the work folder for --inputs-from."""
    return raw.parent / "inputs.json"


def reuse_inputs(earlier_work: Path, raw: Path, model_dir: Path) -> dict:
    """Link the raw file and the model folder of an earlier run's work folder (kept with --keep-work) into
    this one: a second run of the same inputs (the warm-cache run) skips making them again. Returns the
    earlier run's record of them (rows, model)."""
    record = earlier_work / inputs_record(raw).name
    links = ((earlier_work / raw.name, raw), (earlier_work / model_dir.relative_to(raw.parent), model_dir))
    for made in (record, *(made for made, _ in links)):
        if not made.exists():
            raise SystemExit(
                f"time_to_report: {made} is missing (--inputs-from takes a work folder kept with --keep-work)"
            )
    for made, link in links:
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(made.resolve())
    return json.loads(record.read_text())


def run(args) -> dict:
    if args.compile_bytecode and not args.bytecode_cache:
        raise SystemExit("time_to_report: --compile-bytecode needs --bytecode-cache (the folder to compile into)")
    cores = args.cores or len(os.sched_getaffinity(0))
    rows = args.rows if args.rows is not None else (3000 if args.smoke else 1_000_000)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="time_to_report-"))
    if work.exists() and any(work.iterdir()):
        raise SystemExit(f"time_to_report: the work folder {work} is not empty (the run needs a fresh one)")
    work.mkdir(parents=True, exist_ok=True)
    out_path = Path(args.results_dir) / (
        args.out or ("time_to_report_cpu_smoke.json" if args.smoke else "time_to_report.json")
    )
    result = {
        "gpu": gpu_name(),
        "cores_given": cores,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "rows": rows,
        "smoke": args.smoke,
        "work": str(work),
    }

    def save():
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(result, indent=2) + "\n")

    python = sys.executable
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if args.compile_cache:  # shared between runs: the second finds the first's compiled graphs
        env["TORCHINDUCTOR_CACHE_DIR"] = str(Path(args.compile_cache).resolve())
        result["compile_cache"] = env["TORCHINDUCTOR_CACHE_DIR"]
    raw, model_dir = work / "trn.json", work / "model" / "tinyllama-random"
    if args.inputs_from:
        result.update(reuse_inputs(Path(args.inputs_from), raw, model_dir))
        result["inputs_from"] = str(Path(args.inputs_from).resolve())
    elif not make_inputs(raw, model_dir, rows, args.smoke, env, result):
        save()
        return result
    result["raw_bytes"] = raw.stat().st_size

    overrides = {"data": {"raw": str(raw)}, "model": {"source": str(model_dir)}}
    if args.smoke:
        for section, values in SMOKE_OVERRIDES.items():
            overrides.setdefault(section, {}).update(values)
    if args.extra_config:
        import yaml

        merge(overrides, yaml.safe_load(args.extra_config))
    (work / "overrides.yaml").write_text(json.dumps(overrides, indent=2) + "\n")  # JSON is YAML
    shutil.copy(ROOT / "config.yaml", work / "config.yaml")  # the Snakefile's `configfile:` is read from there
    command = [python, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work)]
    command += ["--cores", str(cores), "--configfile", str(ROOT / "presets" / "tinyllama.yaml")]
    command += [str(work / "overrides.yaml"), "--printshellcmds", "--nocolor", "results/report.html"]
    result["command"] = " ".join(command)
    result["overrides"] = overrides
    # Only the workflow's processes use the bytecode cache: the inputs' processes (which import torch too)
    # leave it as cold as the workflow found it.
    workflow_env = workflow_environment(env, args.bytecode_cache)
    if args.bytecode_cache:
        result["bytecode_cache"] = workflow_env["PYTHONPYCACHEPREFIX"]
    if args.compile_bytecode:  # before the clock starts, as an install's own compile step
        compiled = subprocess.run(
            [python, __file__, "bytecode", "--workers", str(cores)],
            capture_output=True,
            text=True,
            env=workflow_env,
            check=True,
        )
        result["bytecode_compiled"] = json.loads(compiled.stdout.strip().splitlines()[-1])
        result["bytecode_compiled"]["pyc_files"] = sum(1 for _ in Path(args.bytecode_cache).rglob("*.pyc"))
    save()
    log_path = work / "snakemake_run.log"
    started = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=workflow_env, start_new_session=True
        )
        try:
            result["returncode"] = process.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)  # Snakemake and the jobs it started (its own process group)
            process.wait()
            result["returncode"] = None
            result["error"] = f"timed out after {args.timeout} s: the rules below are those that finished"
    result["total_seconds"] = round(time.perf_counter() - started, 2)
    log_text = log_path.read_text(errors="replace")
    result["benchmarks"] = benchmark_rows(work, log_text)
    result["critical_path"] = critical_path(job_timeline(log_text))
    result["per_rule_seconds"] = per_rule_seconds(result["benchmarks"])
    result["report_written"] = (work / "results" / "report.html").exists()
    if result["returncode"] != 0:
        result.setdefault("error", f"snakemake exited with {result['returncode']}")
        result["log_tail"] = tail(log_path)
        for rule_log in sorted((work / "logs").glob("**/*.log")):
            if "Error" in (text := tail(rule_log, 3000)) or "Traceback" in text:
                result.setdefault("rule_log_tails", {})[str(rule_log.relative_to(work))] = text
    timing = next((work / "results").glob("**/timing.json"), None) if (work / "results").exists() else None
    if timing:
        train = json.loads(timing.read_text())
        keys = ("steps", "median_step_seconds", "tokens_per_second", "warmup_seconds", "total_seconds", "device")
        result["train_timing"] = {key: train.get(key) for key in keys}
    result["breakdown"] = breakdown(work, result["per_rule_seconds"])
    save()
    print(json.dumps({k: v for k, v in result.items() if k not in ("benchmarks",)}, indent=2), flush=True)
    logs = out_path.with_name(out_path.stem + ".logs.tgz")
    print(f"{len(archive_logs(work, logs))} logs and records in {logs}", flush=True)
    if not args.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    go = sub.add_parser("run", help="time the workflow from raw file to report")
    go.add_argument("--rows", type=int, default=None, help="raw lines to generate (default 1,000,000; smoke 3,000)")
    go.add_argument("--cores", type=int, default=None, help="snakemake --cores (default: the CPUs usable)")
    go.add_argument("--smoke", action="store_true", help="CPU smoke test: few rows, a 2-layer model, few steps")
    go.add_argument(
        "--extra-config",
        help="YAML merged into the overrides, e.g. '{train: {speed: {fused_dropout_lora: false}}}'",
    )
    go.add_argument(
        "--compile-cache",
        help="a compile-cache folder shared between runs (default: the workflow's own, inside the fresh work "
        "folder, so every run starts cold); run twice with the same folder to see the warm time",
    )
    go.add_argument(
        "--bytecode-cache",
        help="a folder where the workflow's Python processes keep the bytecode of what they import, for images "
        "that ship packages without .pyc files and turn writing them off (empty: cold). Python then ignores the "
        ".pyc files beside the sources: on a normal install it makes a cold run slower",
    )
    go.add_argument(
        "--compile-bytecode",
        action="store_true",
        help="with --bytecode-cache: before the clock starts, compile the standard library's and every installed "
        "package's bytecode into it, as `pip install` does at install time (this repository's own modules are "
        "left to the first stage that imports them)",
    )
    go.add_argument(
        "--inputs-from",
        help="the work folder of an earlier run (kept with --keep-work) whose raw file and model folder this run "
        "uses instead of making them again (--rows is then theirs)",
    )
    go.add_argument("--timeout", type=float, default=None, help="stop the workflow after this many seconds")
    go.add_argument("--work", help="the work folder (default: a new temporary folder)")
    go.add_argument("--keep-work", action="store_true", help="keep the work folder")
    go.add_argument("--results-dir", default=str(ROOT / "bench" / "results"))
    go.add_argument("--out", help="file name of the results JSON")
    compile_step = sub.add_parser("bytecode", help="compile the installed packages' bytecode (run by `run`)")
    compile_step.add_argument("--workers", type=int, default=1)
    build = sub.add_parser("model", help="build the random-weight model folder (run by `run` in its own process)")
    build.add_argument("--out", required=True)
    build.add_argument("--tiny", action="store_true")
    args = parser.parse_args()
    if args.command == "model":
        print(json.dumps(build_model(Path(args.out), args.tiny)))
    elif args.command == "bytecode":
        print(json.dumps(compile_bytecode(installed_code_dirs(), args.workers)))
    else:
        run(args)


if __name__ == "__main__":
    main()
