"""prepare's time and memory with and without near-duplicate grouping, and what each setting does to the split.

    python bench/splits.py --rows 200000 --baseline bd35725 --settings '{"threshold": 0.7}' '{"threshold": null}'

Generates an AmazonTitles-shaped catalog (scripts/make_catalog.py, seed 11, 5% quirky rows; or --raw FILE),
then runs prepare on every row once per setting of data.near_duplicates, each in its own process (its own peak
RSS), and with --baseline also prepare as it was at that git revision (its scripts/ from `git archive`, run the
same way, without the setting). Prints and writes, per run: wall and CPU seconds (CPU counts the signature
thread too and is the steadier number on a shared machine), input lines a second, peak RSS, the split sizes,
counts.json's grouping and contamination. Writes bench/results/<--out>.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(scripts: str, raw: str, out: str, setting: str | None) -> None:
    """One prepare run in this process; prints its measurements as one JSON line."""
    import resource

    sys.path.insert(0, scripts)
    from prepare import build_parser, prepare

    from ftpipe.stage import namespace

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    extra = {"near_duplicates": json.loads(setting)} if setting else {}
    args = namespace(
        build_parser(),
        raw=raw,
        **{name: str(folder / f"{name}.jsonl") for name in ("train", "validation", "test", "rejects")},
        counts=str(folder / "counts.json"),
        **extra,
    )
    wall, cpu = time.perf_counter(), time.process_time()
    counts = prepare(args)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    result = {
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "lines_per_cpu_s": round(counts["input_lines"] / cpu),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "splits": counts["splits"],
        "grouping": counts["grouping"],
        "contamination": counts.get("contamination"),
    }
    print(json.dumps(result))


def run(scripts: Path, raw: Path, out: Path, setting: str | None) -> dict:
    command = [sys.executable, __file__, "child", str(scripts), str(raw), str(out), setting or ""]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child(*sys.argv[2:5], sys.argv[5] or None)
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000, help="lines of the generated catalog")
    parser.add_argument("--raw", type=Path, help="a catalog file instead of a generated one")
    parser.add_argument("--settings", nargs="+", default=['{"threshold": 0.7}', '{"threshold": null}'])
    parser.add_argument("--baseline", help="a git revision whose prepare runs first, for comparison")
    parser.add_argument("--out", default="splits.json", help="file name of the results JSON")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "scripts"))
    from make_catalog import generate_records, write_jsonl

    with tempfile.TemporaryDirectory() as tmp:
        raw = args.raw
        if raw is None:
            raw = Path(tmp) / "trn.json"
            write_jsonl(raw, generate_records(args.rows, seed=11, quirk_rate=0.05))
        result = {"raw": str(args.raw or f"generated, {args.rows} lines"), "cpu_cores": os.cpu_count(), "runs": {}}
        if args.baseline:
            base = Path(tmp) / "baseline"
            base.mkdir()
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline, "scripts"], capture_output=True)
            subprocess.run(["tar", "-x", "-C", str(base)], input=archive.stdout, check=True)
            result["runs"][f"baseline {args.baseline}"] = run(base / "scripts", raw, Path(tmp) / "out-base", None)
        for number, setting in enumerate(args.settings):
            result["runs"][setting] = run(ROOT / "scripts", raw, Path(tmp) / f"out-{number}", setting)
            print(setting, json.dumps({k: v for k, v in result["runs"][setting].items() if k != "contamination"}))
    out = ROOT / "bench" / "results" / args.out
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
