"""Time as the schedulers see it: a clock and a sleep that tests replace with fakes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from daycare.storage.clock import now_ms

# The current time in Unix milliseconds.
Clock = Callable[[], int]
# Waits the given number of milliseconds.
Sleep = Callable[[int], Awaitable[None]]

__all__ = ["Clock", "Sleep", "now_ms", "sleep_ms"]


async def sleep_ms(ms: int) -> None:
    """Waits `ms` milliseconds of real time."""
    await asyncio.sleep(max(0, ms) / 1000)
