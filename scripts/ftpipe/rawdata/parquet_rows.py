"""Parquet catalogs (read with pyarrow): the mapped columns only, one record batch at a time, each row as a
JSON object of its source column names, parsed as a JSON line would be.

Parquet is read from its footer, so a compressed Parquet file is first decompressed into a temporary file.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import orjson

from ftpipe.rawdata import repairs
from ftpipe.rawdata.columns import choose_columns
from ftpipe.rawdata.raw_input import InputError

BATCH_ROWS = 4096


def parquet_catalog(path: Path, stream, head: bytes, kind: str | None, columns: dict | None, stack: ExitStack):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ftpipe.rawdata.raw_records import Catalog

    source = path
    if kind is not None:
        source = stack.enter_context(tempfile.TemporaryFile(prefix="prepare-parquet-"))
        source.write(head)
        shutil.copyfileobj(stream, source, 8 << 20)
        source.seek(0)
    try:
        table = pq.ParquetFile(source)
    except (pa.ArrowException, OSError) as err:
        raise InputError(f"{path}: a Parquet file that cannot be read ({err})") from None
    chosen, detected = choose_columns(path, table.schema_arrow.names, columns, "Parquet columns")
    wanted = list(dict.fromkeys(name for name in chosen.values() if name is not None))

    def items():
        number = 0
        try:
            for batch in table.iter_batches(batch_size=BATCH_ROWS, columns=wanted):
                for row in batch.to_pylist():
                    number += 1
                    yield number, orjson.dumps(row, default=str)
        except (pa.ArrowException, OSError) as err:
            raise InputError(
                f"{path}: row {number + 1} and on cannot be read: a damaged Parquet file ({err})"
            ) from None

    return Catalog("parquet", items(), partial(repairs.parse_json_record, columns=chosen), chosen, detected)
