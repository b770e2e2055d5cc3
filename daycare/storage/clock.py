"""The storage clock: integer Unix milliseconds, the unit of every legacy timestamp."""

from __future__ import annotations

import time


def now_ms() -> int:
    """The current time in Unix milliseconds, like JS `Date.now()`."""
    return time.time_ns() // 1_000_000
