"""A background loop that runs one step, waits as long as the step asks, and runs it again.

Every scheduler of the engine runs on one: the step does the due work and returns how many
milliseconds to wait (None: until poked). `poke()` cuts a wait short, so new work is seen at
once. Waiting goes through the injected `Sleep`, so tests drive the loop with a fake clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from daycare.engine.timing import Sleep

log = logging.getLogger("daycare.engine")

Step = Callable[[], Awaitable[int | None]]


class Ticker:
    """Runs `step` in a task until `stop()`; a step that raises is logged and retried after `error_delay_ms`."""

    def __init__(self, name: str, step: Step, sleep: Sleep, *, error_delay_ms: int = 1000) -> None:
        self.name = name
        self._step = step
        self._sleep = sleep
        self._error_delay_ms = error_delay_ms
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Starts the loop; a second call does nothing, a call after stop() starts it again."""
        if self._task is None and not self._stopping:
            self._task = asyncio.create_task(self._run(), name=f"daycare-{self.name}")

    def poke(self) -> None:
        """Ends the current wait, so the step runs again now (or right after the running one)."""
        self._wake.set()

    async def stop(self) -> None:
        """Lets a running step finish, then ends the loop; never interrupts a step mid-way."""
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        try:
            if task is not None:
                await task
        finally:
            self._stopping = False  # a later start() runs the loop again (an engine that leads again)

    async def _run(self) -> None:
        delay: int | None = 0
        while True:
            if delay != 0:
                await self._wait(delay)
            if self._stopping:
                return
            # Cleared before the step: a poke during the step makes the next wait end at once.
            self._wake.clear()
            try:
                delay = await self._step()
            except Exception:
                log.exception("%s: step failed; retrying in %d ms", self.name, self._error_delay_ms)
                delay = self._error_delay_ms
            if delay is not None and delay <= 0:
                # Yield once even when more work is due, so one busy loop cannot starve the others.
                await asyncio.sleep(0)
                delay = 0

    async def _wait(self, delay: int | None) -> None:
        woken = asyncio.ensure_future(self._wake.wait())
        if delay is None:
            await woken
            return
        slept = asyncio.ensure_future(self._sleep(delay))
        try:
            await asyncio.wait({woken, slept}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (woken, slept):
                if not waiter.done():
                    waiter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await waiter
