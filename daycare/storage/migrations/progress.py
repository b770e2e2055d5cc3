"""How long migration work reports how far it got: a label, a count done, and a total.

A `Progress` is any callable `(label, done, total)`. It is called once with `done == 0` when
the work starts, as the work advances, and once with `done == total` when it ends. The CLI
draws a bar from it; the engine logs it quietly (`ProgressLog`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

Progress = Callable[[str, int, int], None]

log = logging.getLogger("daycare.storage")


def progress_none(label: str, done: int, total: int) -> None:
    """A Progress that reports nothing."""


class ProgressLog:
    """Logs the start and the end of each piece of work, and at most one line in between per `interval`."""

    def __init__(self, logger: logging.Logger = log, interval: float = 10.0) -> None:
        self.logger = logger
        self.interval = interval
        self._last = 0.0

    def __call__(self, label: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done == 0:
            self._last = now
            self.logger.info("%s: %d to go", label, total)
        elif done >= total:
            self.logger.info("%s: done (%d)", label, total)
        elif now - self._last >= self.interval:
            self._last = now
            self.logger.info("%s: %d of %d", label, done, total)


class ProgressCounter:
    """Counts one piece of work towards its total and reports it; `finish()` reports the end once.

    Work with nothing to do (a total of 0) reports nothing.
    """

    def __init__(self, progress: Progress, label: str, total: int) -> None:
        self.progress = progress if total > 0 else progress_none
        self.label = label
        self.total = max(total, 0)
        self.done = 0
        self._finished = False
        self.progress(label, 0, self.total)

    def advance(self, count: int = 1) -> None:
        self.done = min(self.done + count, self.total)
        if self.done < self.total:
            self.progress(self.label, self.done, self.total)

    def finish(self) -> None:
        if not self._finished:
            self._finished = True
            self.done = self.total
            self.progress(self.label, self.total, self.total)
