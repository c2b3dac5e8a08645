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


def save_dataset_tables(splits: dict, features, path: str | os.PathLike) -> dict[str, int]:
    """`save_datasets` for splits given as iterables of Arrow tables (the columns of `features`), written as
    they come, so that no split has to fit in memory; returns the rows of each split.

    The folder is the one `save_datasets` writes for a Dataset of the concatenated tables, byte for byte: the
    metadata files come from `save_to_disk` itself (of empty splits with the same features: they do not
    depend on the rows), and the data goes through the same Arrow writer in the same record batches.
    """
    import datasets

    with atomic_path(path) as tmp:
        empty = {name: datasets.Dataset.from_dict({key: [] for key in features}, features=features) for name in splits}
        datasets.DatasetDict(empty).save_to_disk(str(tmp), num_shards=dict.fromkeys(splits, 1))
        rows = {}
        for name, tables in splits.items():
            split_dir = Path(tmp) / name
            state = json.loads((split_dir / "state.json").read_text(encoding="utf-8"))
            [data_file] = [split_dir / entry["filename"] for entry in state["_data_files"]]
            rows[name] = _write_split(data_file, features, tables)
            _content_fingerprint(split_dir)
    return rows


def _write_split(data_file: Path, features, tables) -> int:
    """Write the tables as `save_to_disk` would write them as one table; returns the number of rows."""
    from datasets import config
    from datasets.arrow_writer import get_writer_batch_size_from_data_size

    batch_rows = config.DEFAULT_MAX_BATCH_SIZE
    num_rows, num_bytes = _write_batches(data_file, features, tables, batch_rows)
    # save_to_disk uses smaller record batches when rows are large (on average over the whole split, so
    # known only now): then the file is written again from the first one, one batch at a time.
    if num_bytes > 0 and get_writer_batch_size_from_data_size(num_rows, num_bytes) < batch_rows:
        batch_rows = get_writer_batch_size_from_data_size(num_rows, num_bytes)
        first = data_file.with_name(data_file.name + ".first")
        os.replace(data_file, first)
        _write_batches(data_file, features, _read_tables(first), batch_rows)
        first.unlink()
    return num_rows


def _write_batches(data_file: Path, features, tables, batch_rows: int) -> tuple[int, int]:
    """Tables -> record batches of exactly `batch_rows` rows (the last one shorter), through datasets'
    ArrowWriter as in `save_to_disk`; returns (rows, bytes) with bytes counted as `Table.nbytes` of the
    concatenated tables (the size save_to_disk bases its batch size on).

    save_to_disk writes slices of one table, and Arrow's IPC writer then rounds a sliced buffer up to 8
    bytes with the bytes that follow it in memory (the next row's data). So a batch is written only once
    the rows after it are in the same contiguous buffer, or at the end."""
    import pyarrow as pa
    from datasets.arrow_writer import ArrowWriter

    writer = ArrowWriter(features=features, path=str(data_file), embed_local_files=True, writer_batch_size=batch_rows)
    pending, num_rows, num_bytes = None, 0, 0
    try:
        for table in tables:
            if table.num_rows == 0:
                continue
            table = pa.table(
                {
                    name: _no_empty_validity(column.chunk(0) if column.num_chunks == 1 else column.combine_chunks())
                    for name, column in zip(table.column_names, table.columns, strict=True)
                }
            )
            num_rows += table.num_rows
            num_bytes += table.nbytes
            pending = (table if pending is None else pa.concat_tables([pending, table])).combine_chunks()
            ready = _rows_ready(pending, batch_rows)
            if ready:
                writer.write_table(pending.slice(0, ready))
                pending = pending.slice(ready)
        if pending is not None and pending.num_rows:
            writer.write_table(pending)
        writer.finalize()
    finally:
        writer.close()
    return num_rows, num_bytes


def _no_empty_validity(array):
    """The array without validity bitmaps where there are no nulls (an array built from Python lists may
    have one, datasets' from_dict has none), so that `nbytes` is the size save_to_disk sees."""
    import pyarrow as pa

    if array.null_count or array.buffers()[0] is None and not pa.types.is_list(array.type):
        return array
    if pa.types.is_list(array.type):
        values = _no_empty_validity(array.values)
        return pa.Array.from_buffers(array.type, len(array), [None, array.buffers()[1]], 0, array.offset, [values])
    if pa.types.is_integer(array.type) or pa.types.is_floating(array.type):
        return pa.Array.from_buffers(array.type, len(array), [None, array.buffers()[1]], 0, array.offset)
    return array


def _rows_ready(table, batch_rows: int) -> int:
    """The most whole batches of `table` that leave data behind them in every column (see _write_batches)."""
    import pyarrow as pa

    ready = (table.num_rows - 1) // batch_rows * batch_rows
    for column in table.columns:
        [chunk] = column.chunks
        if isinstance(chunk, pa.ListArray | pa.LargeListArray):
            while ready and chunk.offsets[ready].as_py() == chunk.offsets[-1].as_py():
                ready -= batch_rows  # only empty lists after it: wait for values
    return ready


def _read_tables(data_file: Path):
    """The record batches of an Arrow stream file, one table at a time, read (not memory-mapped) so that
    memory holds one batch."""
    import pyarrow as pa

    with pa.OSFile(str(data_file)) as source:
        for batch in pa.ipc.open_stream(source):
            yield pa.Table.from_batches([batch])
