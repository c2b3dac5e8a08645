"""Data-parallel scaling of the training stage: the same recipe on 1 and on N GPUs of one machine.

    python bench/train_throughput.py prepare            # once, on any machine: bench/work/
    python bench/train_scaling.py run --gpus 1 2        # on a machine with 2 GPUs

The TinyLlama-shaped random-weight model and blocks of train_throughput.py, the reference recipe (effective
batch 64 x 128 tokens, LoRA r16 on seven projections, NF4 base) with the stage's default GPU levers. Each
count of GPUs runs `scripts/train.py`'s training function under torchrun, one process per GPU, each with its
share of every step (strong scaling: the effective batch stays 64 blocks). Writes
bench/results/train_scaling.json with tokens/s per count and the scaling efficiency
tokens/s(N) / (N x tokens/s(1)).
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "bench"))
from train_throughput import TINYLLAMA, block_tensors, make_model, stage_args, variant_summary  # noqa: E402

from ftpipe.training import distributed  # noqa: E402


def worker(args) -> None:
    """One rank of a torchrun job: the stage's training function; rank 0 writes the timing summary."""
    from train import run_training

    with tempfile.TemporaryDirectory() as out:
        stage = stage_args(Path(args.model_dir), Path(out), args.steps, {"enabled": True, **args.speed})
        timing = run_training(stage, block_tensors())
    if distributed.is_main():
        Path(args.out).write_text(json.dumps(variant_summary(timing), indent=2))


def run(args) -> None:
    if args.tiny:
        TINYLLAMA.update(
            hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
        )
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu (smoke test, gloo)"
    results = {"gpu": gpu, "visible_gpus": torch.cuda.device_count(), "speed": args.speed, "runs": {}}
    out_path = Path(args.results_dir) / (args.out if torch.cuda.is_available() else "train_scaling_cpu_smoke.json")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        make_model(tmp / "model")
        for gpus in args.gpus:
            worker_args = ["worker", "--model-dir", str(tmp / "model"), "--steps", str(args.steps)]
            worker_args += ["--speed", json.dumps(args.speed), "--out", str(tmp / f"{gpus}.json")]
            distributed.launch(gpus, __file__, worker_args)  # how the training stage starts its processes
            results["runs"][str(gpus)] = json.loads((tmp / f"{gpus}.json").read_text())
            print(gpus, results["runs"][str(gpus)], flush=True)
    one = results["runs"].get("1", {}).get("tokens_per_second")
    results["scaling_efficiency"] = {
        gpus: round(run["tokens_per_second"] / (int(gpus) * one), 3) for gpus, run in results["runs"].items() if one
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    go = sub.add_parser("run", help="measure on 1 and N GPUs")
    go.add_argument("--gpus", type=int, nargs="+", default=[1, 2])
    go.add_argument("--steps", type=int, default=30)
    go.add_argument("--speed", type=json.loads, default={}, help="JSON speed levers on top of the defaults")
    go.add_argument("--results-dir", default=str(ROOT / "bench" / "results"))
    go.add_argument("--out", default="train_scaling.json", help="file name of the results JSON")
    go.add_argument("--tiny", action="store_true", help="a 2-layer model (smoke test on CPUs)")
    one = sub.add_parser("worker", help="(internal) one torchrun rank")
    one.add_argument("--model-dir", required=True)
    one.add_argument("--steps", type=int, required=True)
    one.add_argument("--out", required=True)
    one.add_argument("--speed", type=json.loads, default={})
    args = parser.parse_args()
    worker(args) if args.command == "worker" else run(args)


if __name__ == "__main__":
    main()
