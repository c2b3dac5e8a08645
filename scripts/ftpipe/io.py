"""Atomic outputs and small file helpers.

Every stage writes its outputs through `atomic_path`: the data goes to a temporary name in the same
folder and is renamed into place only when complete, so a killed job never leaves a half-written file
that looks finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(final: str | os.PathLike):
    """Yield a temporary path next to `final`; rename it to `final` if the block succeeds.

    Works for files and folders. On failure the temporary path is removed and `final` is untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{final.name}.tmp-*"):  # left by a killed job; one writer per output
        _remove(stale)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    try:
        yield tmp
        if final.is_dir() and tmp.is_dir():
            _remove(final)  # os.replace cannot replace a non-empty folder
        os.replace(tmp, final)
    finally:
        _remove(tmp)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_json(path: str | os.PathLike, obj) -> None:
    """Write `obj` as indented, key-sorted JSON (stable bytes for identical content), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def read_json(path: str | os.PathLike):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_jsonl(path: str | os.PathLike, limit: int | None = None) -> list[dict]:
    """The first `limit` rows (all when None) of a JSON Lines file."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if limit is not None and len(rows) >= limit:
                break
            rows.append(json.loads(line))
    return rows


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def save_datasets(splits: dict, path: str | os.PathLike) -> None:
    """Save named `datasets.Dataset` splits as one DatasetDict folder, atomically, one shard per split
    (an empty split saved with zero shards cannot be loaded back)."""
    import datasets

    with atomic_path(path) as tmp:
        datasets.DatasetDict(splits).save_to_disk(str(tmp), num_shards=dict.fromkeys(splits, 1))
        for name in splits:
            _content_fingerprint(Path(tmp) / name)


def _content_fingerprint(split_dir: Path) -> None:
    """datasets gives an in-memory dataset a random fingerprint; use the data's hash instead, so identical
    inputs give byte-identical folders."""
    state_file = split_dir / "state.json"
    state = json.loads(state_file.read_text(encoding="utf-8"))
    digest = hashlib.sha256()
    for entry in state["_data_files"]:
        digest.update(sha256_file(split_dir / entry["filename"]).encode())
    state["_fingerprint"] = digest.hexdigest()[:16]
    state_file.write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
