"""DelayedSignals: signals generated at a wall-clock time, persisted until delivered.

Scheduled signals live in `signals_delayed` and in memory; memory drives the timer, the
table decides what is due. A due signal is deleted and generated through `Signals` in one
transaction, so of several engines one delivers it, once; if generating fails the delete is
undone and it is retried after `failure_retry_ms`. `changed()` (another engine wrote the table)
reloads the queue.

Two legacy flaws are fixed. A due row missing from memory (written by another engine on the
same file) was generated on every tick and never deleted: now it is generated once and deleted
like any other. A due entry in memory whose row is gone (delivered or cancelled elsewhere)
made the timer fire in a busy loop: now it is dropped from memory.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from daycare.engine.events import EngineEvents
from daycare.engine.signals import Signal, signal_source_normalize, signal_type_require
from daycare.engine.ticker import Ticker
from daycare.engine.timing import Clock, Sleep, now_ms, sleep_ms
from daycare.storage.identifiers import cuid_create
from daycare.storage.repositories.delayed_signals import DelayedSignalRecord, DelayedSignalsRepository
from daycare.storage.repositories.signal_events import ABSENT

log = logging.getLogger("daycare.engine.signals")


class SignalGenerator(Protocol):
    """The part of `Signals` that delayed signals use."""

    async def generate(self, type: str, source: Mapping[str, Any], data: Any = ABSENT) -> Signal: ...


@dataclass(frozen=True, slots=True)
class DelayedSignal:
    """A scheduled signal as callers see it (the legacy public shape: no user id)."""

    id: str
    type: str
    deliver_at: int
    source: Mapping[str, Any]
    repeat_key: str | None
    created_at: int
    updated_at: int
    data: Any = ABSENT


def _public(record: DelayedSignalRecord) -> DelayedSignal:
    return DelayedSignal(
        record.id,
        record.type,
        record.deliver_at,
        record.source,
        record.repeat_key,
        record.created_at,
        record.updated_at,
        record.data,
    )


def _deliver_at_check(deliver_at: float) -> int:
    if isinstance(deliver_at, bool) or not isinstance(deliver_at, int | float) or not math.isfinite(deliver_at):
        raise ValueError("Delayed signal deliverAt must be a finite unix timestamp")
    floored = math.floor(deliver_at)
    if floored < 0:
        raise ValueError("Delayed signal deliverAt must be positive")
    return floored


def _optional_trim(value: str | None) -> str | None:
    trimmed = value.strip() if isinstance(value, str) else ""
    return trimmed or None


class DelayedSignals:
    """The queue of delayed signals and the loop that delivers them."""

    def __init__(
        self,
        *,
        delayed_signals: DelayedSignalsRepository,
        signals: SignalGenerator,
        events: EngineEvents | None = None,
        clock: Clock = now_ms,
        sleep: Sleep = sleep_ms,
        failure_retry_ms: int = 1_000,
        max_timer_ms: int = 60_000,
    ) -> None:
        self._repository = delayed_signals
        self._signals = signals
        self._events = events or EngineEvents()
        self._clock = clock
        self._failure_retry_ms = max(10, math.floor(failure_retry_ms))
        self._max_timer_ms = max(1_000, math.floor(max_timer_ms))
        self._lock = asyncio.Lock()
        # The timer queue, the service's own state (not a copy of the repository's cache): what this
        # engine waits for and lists; rows other engines write are found when due (`find_due`).
        self._entries: dict[str, DelayedSignalRecord] = {}
        self._loaded = False
        self._changes = 0  # changes other engines made, as heard (see `changed`)
        self._reloading: asyncio.Task[None] | None = None
        self._ticker = Ticker("delayed-signals", self._step, sleep, error_delay_ms=self._failure_retry_ms)

    async def load(self) -> None:
        """Reads the queue from the table once (legacy `ensureDir`)."""
        async with self._lock:
            await self._load_unlocked()

    async def start(self) -> None:
        """Loads the queue and starts delivering; calling it again does nothing."""
        await self.load()
        self._ticker.start()

    async def stop(self) -> None:
        """Stops the loop after a delivery in progress; the queue stays in the table."""
        await self._ticker.stop()

    def list(self) -> list[DelayedSignal]:
        """Scheduled signals by deliver_at, then type, then id."""
        records = sorted(self._entries.values(), key=lambda record: (record.deliver_at, record.type, record.id))
        return [_public(record) for record in records]

    async def schedule(
        self,
        type: str,
        deliver_at: float,
        source: Mapping[str, Any],
        data: Any = ABSENT,
        repeat_key: str | None = None,
    ) -> DelayedSignal:
        """Schedules a signal at `deliver_at` (Unix ms); a repeat key replaces the user's earlier one of this type."""
        signal_type = signal_type_require(type, "Delayed signal type is required")
        when = _deliver_at_check(deliver_at)
        key = _optional_trim(repeat_key)
        normalized = signal_source_normalize(source, id_first=True)
        user_id = normalized["userId"]
        now = self._clock()
        async with self._lock:
            await self._load_unlocked()
            record = DelayedSignalRecord(
                id=cuid_create(),
                user_id=user_id,
                type=signal_type,
                deliver_at=when,
                source=normalized,
                repeat_key=key,
                created_at=now,
                updated_at=now,
                data=data,
            )
            # One transaction deletes the user's earlier signals of this type and repeat key, and stores this one.
            await self._repository.create(record)
            if key:
                for entry_id, entry in list(self._entries.items()):
                    if entry.user_id == user_id and entry.type == signal_type and entry.repeat_key == key:
                        del self._entries[entry_id]
            self._entries[record.id] = record
        scheduled = _public(record)
        self._events.emit("signal.delayed.scheduled", scheduled)
        self._ticker.poke()
        return scheduled

    async def cancel_by_repeat_key(self, type: str, repeat_key: str) -> int:
        """Cancels the scheduled signals of this type and repeat key, of every user; returns how many."""
        signal_type = signal_type_require(type, "Delayed signal type is required")
        key = _optional_trim(repeat_key)
        if not key:
            raise ValueError("Delayed signal repeatKey is required")
        removed = 0
        async with self._lock:
            await self._load_unlocked()
            for entry in [e for e in self._entries.values() if e.type == signal_type and e.repeat_key == key]:
                if await self._repository.delete(entry.id):
                    removed += 1
                self._entries.pop(entry.id, None)
        if removed:
            self._events.emit("signal.delayed.cancelled", {"type": signal_type, "repeatKey": key, "removed": removed})
        self._ticker.poke()
        return removed

    def changed(self) -> None:
        """Another engine changed the table: the queue is read again, at once when this engine delivers
        (its timer looks again), else shortly (so that `list()` shows it)."""
        self._loaded = False
        self._changes += 1
        if self._ticker.running:
            self._ticker.poke()
        elif self._reloading is None or self._reloading.done():
            self._reloading = asyncio.get_running_loop().create_task(self._reload_soon())

    async def _reload_soon(self) -> None:
        await asyncio.sleep(0.05)  # changes come in bursts: one read for a burst
        try:
            await self.load()
        except Exception:
            log.warning("delayed signals: reading the queue again failed", exc_info=True)

    async def _load_unlocked(self) -> None:
        if self._loaded:
            return
        changes = self._changes
        records = await self._repository.find_all()
        self._entries = {record.id: record for record in records}
        self._loaded = changes == self._changes  # a change heard meanwhile means reading again

    async def _step(self) -> int | None:
        """Delivers what is due; returns how long to wait before looking again (None: until poked)."""
        if not self._loaded:
            await self.load()
        retry = False
        if self._entries:
            now = self._clock()
            if any(entry.deliver_at <= now for entry in self._entries.values()):
                try:
                    retry = await self._deliver_due(now)
                except Exception:
                    log.warning("delayed signals: delivery round failed", exc_info=True)
                    retry = True
        if not self._entries:
            return None
        earliest = min(entry.deliver_at for entry in self._entries.values())
        wait = max(self._failure_retry_ms if retry else 0, earliest - self._clock())
        return min(self._max_timer_ms, wait)

    async def _deliver_due(self, now: int) -> bool:
        """Generates every due signal of the table; returns True when one failed (retry later)."""
        due = await self._repository.find_due(now)
        due_ids = {record.id for record in due}
        async with self._lock:
            for entry_id, entry in list(self._entries.items()):
                if entry.deliver_at <= now and entry_id not in due_ids:
                    del self._entries[entry_id]  # its row is gone: delivered or cancelled elsewhere
        retry = False
        for record in due:
            try:
                # The row's delete commits with the signal it generates: one engine delivers it, once.
                async with self._repository.delivering(record.id) as removed:
                    if removed:
                        await self._signals.generate(record.type, record.source, record.data)
            except Exception:
                retry = True
                log.warning("delayed signal %s (%s): delivery failed", record.id, record.type, exc_info=True)
                continue
            async with self._lock:
                self._entries.pop(record.id, None)
            if removed:
                self._events.emit(
                    "signal.delayed.delivered",
                    {
                        "delayedSignalId": record.id,
                        "type": record.type,
                        "repeatKey": record.repeat_key,
                        "deliverAt": record.deliver_at,
                    },
                )
        return retry
