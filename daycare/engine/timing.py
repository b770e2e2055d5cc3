"""Time as the schedulers see it: a clock and a sleep that tests replace with fakes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from daycare.storage.clock import now_ms

# The current time in Unix milliseconds.
Clock = Callable[[], int]
# Waits the given number of milliseconds.
Sleep = Callable[[int], Awaitable[None]]

__all__ = ["Clock", "Sleep", "file_time", "now_ms", "sleep_ms"]

FILE_TIME_POLL = 0.01  # seconds between two reads of a clock file while sleeping


async def sleep_ms(ms: int) -> None:
    """Waits `ms` milliseconds of real time."""
    await asyncio.sleep(max(0, ms) / 1000)


def file_time(path: Path) -> tuple[Clock, Sleep]:
    """A clock read from `path` (Unix ms as text) and a sleep that waits until that clock moves on.

    For tests of engines in other processes (`engine.clockFile`): they move time by rewriting the file.
    """

    def clock() -> int:
        try:
            return int(path.read_text(encoding="utf-8").strip())
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"engine.clockFile {path} holds no time in Unix ms ({exc})") from None

    async def sleep(ms: int) -> None:
        until = clock() + max(0, ms)
        while clock() < until:
            await asyncio.sleep(FILE_TIME_POLL)

    return clock, sleep
