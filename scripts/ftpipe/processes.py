"""Blockwise work in forked worker processes, results in task order, memory bounded."""

from __future__ import annotations

import multiprocessing
from collections import deque

_work = None  # the function the workers run: inherited through fork, so it need not be picklable


def map_in_processes(function, tasks, processes: int):
    """`function` of each task in `processes` forked workers: the results in task order, at most 2 x `processes`
    tasks ahead of the consumer (memory stays bounded). `function` may be a closure: the workers inherit it."""
    global _work
    _work = function
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        in_flight = deque()
        for task in tasks:
            in_flight.append(pool.apply_async(_run, (task,)))
            if len(in_flight) > 2 * processes:
                yield in_flight.popleft().get()
        while in_flight:
            yield in_flight.popleft().get()


def _run(task):
    return _work(task)
