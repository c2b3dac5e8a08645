"""Seconds per named part of a stage, for its log and its timing record."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager

log = logging.getLogger("ftpipe.timing")


class Stopwatch:
    """Seconds per named part of a stage, in the order they ran; each part is logged as it ends."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def part(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 3)
            log.info("timing: %s %.2f s", name, self.seconds[name])
