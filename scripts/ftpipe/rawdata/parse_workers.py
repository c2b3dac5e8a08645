"""Parsing a catalog's records in worker processes, with every record's outcome the one-process outcome.

Blocks of records go to a pool of forked workers, at most 2 x `processes` blocks ahead of the consumer
(memory stays bounded); the records come back in input order, so deduplication, sampling and writing stay
with the caller.
"""

from __future__ import annotations

import multiprocessing
import pickle
from collections import deque

PARSE_BLOCK_LINES = 4096  # records per task of a parsing worker


def parse_in_processes(lines, processes: int, parse, max_bytes: int, block_lines: int | None = None):
    """`parse` in `processes` worker processes: returns (the same (number, raw) records, a `parsed(raw)` that
    gives each record's result). A block's records are yielded once its results are back, and `parsed` hands
    those out in order, one per record of at most `max_bytes` (the ones the caller parses); what `parse`
    raised for a record is raised again by `parsed`."""
    results = deque()
    block_lines = block_lines or PARSE_BLOCK_LINES

    def numbered_lines():
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            in_flight = deque()
            block = []
            for item in lines:
                block.append(item)
                if len(block) == block_lines:
                    in_flight.append((block, _submit(pool, block, parse, max_bytes)))
                    block = []
                    if len(in_flight) > 2 * processes:
                        yield from _finished(in_flight.popleft(), results)
            if block:
                in_flight.append((block, _submit(pool, block, parse, max_bytes)))
            while in_flight:
                yield from _finished(in_flight.popleft(), results)

    def parsed(raw):
        result = results.popleft()
        if isinstance(result, Exception):  # what parsing raised for this record, raised here as in one process
            raise result
        return result

    return numbered_lines(), parsed


def _submit(pool, block: list, parse, max_bytes: int):
    return pool.apply_async(_parse_block, ([raw for _, raw in block], parse, max_bytes))


def _finished(block_and_result, results):
    block, result = block_and_result
    results.extend(result.get())
    return block


def _parse_block(raws: list[bytes], parse, max_bytes: int) -> list:
    """A worker's task: `parse` of each record of at most `max_bytes`, or the exception it raised (one that
    does not survive pickling becomes a RuntimeError with its text)."""
    results = []
    for raw in raws:
        if len(raw) > max_bytes:
            continue
        try:
            results.append(parse(raw))
        except Exception as err:
            try:
                pickle.loads(pickle.dumps(err))
            except Exception:
                err = RuntimeError(f"{type(err).__name__}: {err}")
            results.append(err)
    return results
