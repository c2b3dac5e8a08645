"""Data preparation speed and memory: the reference method against the project's prepare -> tokenize -> pack.

    python bench/dataprep.py --rows 2250000

Both run on the same generated AmazonTitles-shaped file (scripts/make_catalog.py, 5% quirky rows), each in
its own process so that peak RSS is its own, and both draw the same share of rows the reference trained on
(105,000 of 2,248,619), or with --every-row every usable row (the basis on which the seed recipe's method
makes about 3,000 rows/s on 2 cores). The seed recipe's method (the Colab notebook's): read every line,
silently drop what does not parse or has an empty field, sample, tokenize with padding to max_len via
`datasets.map`, then pack in a Python loop (valid tokens + EOS appended to a buffer, cut every max_len).
The project: the stage functions that Snakemake runs. Writes bench/results/dataprep.json.

    python bench/dataprep.py stages --rows 50000 --out dataprep_stages_50k.json

times each project stage (prepare, tokenize, pack) on every usable row, for three settings of the packing
mode, completion-only labels and overlong policy, each stage in its own process (its own peak RSS), and
records the sha256 of every output file but the prepared JSONL, the tokenized and packed Arrow folders and
their stats: two runs on the same code must give the same hashes, and a change that must not change the
output is checked by comparing them with `stages --compare before.json`.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
REFERENCE_SHARE = 105_000 / 2_248_619
MAX_LEN = 128


def reference_method(raw: Path, tokenizer_dir: Path, sample_size: int | None, template: dict) -> int:
    import datasets
    import pandas as pd
    from transformers import AutoTokenizer

    rows = []
    with open(raw, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # the reference loses such rows silently
    frame = pd.DataFrame([r for r in rows if isinstance(r, dict)])
    frame = frame[(frame["title"].astype(str).str.strip() != "") & (frame["content"].astype(str).str.strip() != "")]
    frame = frame.sample(n=len(frame) if sample_size is None else min(sample_size, len(frame)), random_state=42)
    texts = [
        template["instruction"].format(title=t) + template["response"].format(content=c)
        for t, c in zip(frame["title"], frame["content"], strict=True)
    ]
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    dataset = datasets.Dataset.from_dict({"text": texts}).map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=MAX_LEN, padding="max_length"),
        batched=True,
        remove_columns=["text"],
    )
    blocks, buffer = [], []
    for example in dataset:
        buffer.extend([t for t, m in zip(example["input_ids"], example["attention_mask"], strict=True) if m])
        buffer.append(tokenizer.eos_token_id)
        while len(buffer) >= MAX_LEN:
            blocks.append(buffer[:MAX_LEN])
            buffer = buffer[MAX_LEN:]
    return len(blocks)


def project_method(raw: Path, tokenizer_dir: Path, sample_size: int | None, template: dict) -> int:
    from inprocess import run_data_stages

    from ftpipe.io import read_json

    with tempfile.TemporaryDirectory() as tmp:
        run_data_stages(
            raw,
            tmp,
            tokenizer_dir,
            template["instruction"],
            template["response"],
            max_len=MAX_LEN,
            sample_size=sample_size,
        )
        return read_json(Path(tmp) / "pack_stats.json")["train"]["blocks"]


STAGE_SETTINGS = {  # name: (pack mode, completion_only, overlong)
    "boundary_completion_truncate": ("boundary", True, "truncate"),
    "boundary_completion_drop": ("boundary", True, "drop"),
    "reference_all_reference": ("seed", False, "seed"),  # the seed recipe (the name matches past results)
}


def stage_one(raw: Path, out: Path, setting: str, stage: str, template: dict) -> dict:
    """One data stage in this process (the earlier ones have written their outputs under `out`), called
    as inprocess.run_data_stages calls it: its seconds and this process's peak RSS."""
    import resource

    from inprocess import data_stage_calls

    mode, completion_only, overlong = STAGE_SETTINGS[setting]
    tokenizer_dir = ROOT / "bench" / "work" / "tokenizer"
    calls = data_stage_calls(
        raw,
        out,
        tokenizer_dir,
        template["instruction"],
        template["response"],
        max_len=MAX_LEN,
        mode=mode,
        completion_only=completion_only,
        overlong=overlong,
    )
    start = time.perf_counter()
    calls[stage]()
    seconds = round(time.perf_counter() - start, 2)
    return {"seconds": seconds, "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)}


def output_hashes(out: Path) -> dict:
    """sha256 of the stages' outputs after prepare: the tokenized and packed folders and the stats."""
    return {
        str(path.relative_to(out)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(out.rglob("*"))
        if path.is_file()
        and path.parts[len(out.parts)] in ("tokenized", "packed", "tokenize_stats.json", "pack_stats.json")
    }


def stages(rows: int, compare: Path | None, settings) -> dict:
    from make_catalog import generate_records, write_jsonl

    result = {"rows": rows, "cpu_cores": os.cpu_count(), "max_len": MAX_LEN, "settings": {}}
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "trn.json"
        write_jsonl(raw, generate_records(rows, seed=11, quirk_rate=0.05))
        for setting in settings:
            out = Path(tmp) / setting
            measured = {}
            for stage in ("prepare", "tokenize", "pack"):
                command = [sys.executable, __file__, "stage-one", str(raw), str(out), setting, stage]
                child = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
                measured[stage] = json.loads(child.stdout.strip().splitlines()[-1])
            result["settings"][setting] = {
                "seconds": {stage: m["seconds"] for stage, m in measured.items()},
                "peak_rss_gib": {stage: m["peak_rss_gib"] for stage, m in measured.items()},
                "hashes": output_hashes(out),
            }
            print(setting, {k: v for k, v in result["settings"][setting].items() if k != "hashes"}, flush=True)
    if compare is not None:
        if not compare.exists():  # a bare file name: one of bench/results
            compare = ROOT / "bench" / "results" / compare
        before = json.loads(compare.read_text())["settings"]
        result["identical_to"] = {
            "file": compare.name,
            "identical": all(before[name]["hashes"] == result["settings"][name]["hashes"] for name in settings),
        }
    return result


def measure(method: str, raw: Path, tokenizer_dir: Path, sample_size: int | None) -> dict:
    """Run one method in a child process; its wall time and peak RSS (ru_maxrss of that child alone)."""
    command = [sys.executable, __file__, "one", method, str(raw), str(tokenizer_dir), str(sample_size)]
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{method} failed")
    blocks = int(child.stdout.read().strip().splitlines()[-1])
    return {"seconds": round(seconds, 2), "peak_rss_gib": round(usage.ru_maxrss / 2**20, 3), "train_blocks": blocks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("run")
    bench.add_argument("--rows", type=int, default=200_000)
    bench.add_argument(
        "--every-row",
        action="store_true",
        help="both methods tokenize and pack every usable row instead of the seed recipe's share",
    )
    bench.add_argument("--out", default="dataprep.json", help="file name of the results JSON")
    bench.add_argument(
        "--methods",
        nargs="+",
        choices=("reference", "project"),
        default=("reference", "project"),
        help="run only some (e.g. the project's alone on sizes whose reference run would not fit in memory)",
    )
    one = sub.add_parser("one", help="(internal) run one method")
    for name in ("method", "raw", "tokenizer_dir", "sample_size"):
        one.add_argument(name)
    per_stage = sub.add_parser("stages", help="time each stage, three settings; hashes of the outputs")
    per_stage.add_argument("--rows", type=int, default=50_000)
    per_stage.add_argument("--out", default="dataprep_stages.json", help="file name of the results JSON")
    per_stage.add_argument("--compare", type=Path, help="an earlier results JSON: are the outputs identical?")
    per_stage.add_argument("--settings", nargs="+", choices=tuple(STAGE_SETTINGS), default=tuple(STAGE_SETTINGS))
    one_stage = sub.add_parser("stage-one", help="(internal) one stage of one setting of `stages`")
    for name in ("raw", "out", "setting", "stage"):
        one_stage.add_argument(name)
    args = parser.parse_args()
    import yaml

    template = yaml.safe_load((ROOT / "config.yaml").read_text())["prompt"]
    if args.command == "one":
        method = {"reference": reference_method, "project": project_method}[args.method]
        sample_size = None if args.sample_size == "None" else int(args.sample_size)  # None: every usable row
        print(method(Path(args.raw), Path(args.tokenizer_dir), sample_size, template))
        return
    if args.command == "stage-one":
        print(json.dumps(stage_one(Path(args.raw), Path(args.out), args.setting, args.stage, template)))
        return
    tokenizer_dir = ROOT / "bench" / "work" / "tokenizer"
    if not tokenizer_dir.exists():
        raise SystemExit("run `python bench/train_throughput.py prepare` first (it saves the tokenizer)")
    if args.command == "stages":
        result = stages(args.rows, args.compare, args.settings)
        out = ROOT / "bench" / "results" / args.out
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps({k: v for k, v in result.items() if k != "settings"}, indent=2))
        return
    from make_catalog import generate_records, write_jsonl

    sample_size = None if args.every_row else max(1, round(args.rows * REFERENCE_SHARE))
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "trn.json"
        write_jsonl(raw, generate_records(args.rows, seed=11, quirk_rate=0.05))
        result = {
            "rows": args.rows,
            "input_bytes": raw.stat().st_size,
            "sample_size": sample_size,
            "basis": "every usable row" if args.every_row else "the reference's share of rows",
            "cpu_cores": os.cpu_count(),
            "max_len": MAX_LEN,
        }
        for method in args.methods:
            result[method] = measure(method, raw, tokenizer_dir, sample_size)
            result[method]["rows_per_second"] = round(args.rows / result[method]["seconds"], 1)
    if len(args.methods) == 2:
        result["ratio_rows_per_second"] = round(
            result["project"]["rows_per_second"] / result["reference"]["rows_per_second"], 2
        )
    out = ROOT / "bench" / "results" / args.out
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
