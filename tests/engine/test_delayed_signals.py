"""DelayedSignals: the legacy delayedSignals.spec tests on a fake clock, plus the two fixed flaws."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from daycare.engine import Engine
from daycare.engine.delayed_signals import DelayedSignals
from daycare.engine.signals import Signal
from daycare.storage.facade import Storage
from daycare.storage.repositories.delayed_signals import DelayedSignalRecord
from daycare.storage.repositories.signal_events import ABSENT
from tests.engine.helpers import FakeTime, engine_config, eventually, settle

SYSTEM = {"type": "system", "userId": "user-1"}


class FakeSignals:
    """Records what would have been generated; fails while `failing` is set."""

    def __init__(self, failing: bool = False) -> None:
        self.failing = failing
        self.attempts: list[tuple[str, Any, Any]] = []

    async def generate(self, type: str, source: Mapping[str, Any], data: Any = ABSENT) -> Signal:
        self.attempts.append((type, source, data))
        if self.failing:
            raise RuntimeError("delivery failed")
        return Signal("signal-id", type, source, 0, data)


def delayed_build(storage: Storage, signals: FakeSignals, time: FakeTime, **options: Any) -> DelayedSignals:
    return DelayedSignals(
        delayed_signals=storage.delayed_signals, signals=signals, clock=time.now, sleep=time.sleep, **options
    )


async def test_replaces_scheduled_items_by_repeat_key_and_persists_queue(database_url: str, tmp_path: Path) -> None:
    """Legacy: "replaces scheduled items by repeat key and persists queue" (the restore is a second Engine)."""
    time = FakeTime()
    config = engine_config(database_url, tmp_path)
    async with Engine(config, clock=time.now, sleep=time.sleep) as engine:
        delayed = engine.services.delayed_signals
        first = await delayed.schedule("reminder", time.now() + 60_000, SYSTEM, repeat_key="job")
        second = await delayed.schedule("reminder", time.now() + 120_000, SYSTEM, repeat_key="job")
        assert first.id != second.id
        assert [item.id for item in delayed.list()] == [second.id]

    async with Engine(config, clock=time.now, sleep=time.sleep) as restored:
        delayed = restored.services.delayed_signals
        assert [item.id for item in delayed.list()] == [second.id]
        assert await delayed.cancel_by_repeat_key("reminder", "job") == 1
        assert delayed.list() == []
    async with Engine(config, clock=time.now, sleep=time.sleep) as again:
        assert again.services.delayed_signals.list() == []


async def test_keeps_due_events_scheduled_when_delivery_fails(storage: Storage) -> None:
    """Legacy: "keeps due events scheduled when delivery fails"; the retry waits failure_retry_ms."""
    time = FakeTime()
    signals = FakeSignals(failing=True)
    delayed = delayed_build(storage, signals, time, failure_retry_ms=20)
    await delayed.start()
    await delayed.schedule("notify.fail", time.now() + 5, SYSTEM)
    await time.advance(5)
    await eventually(lambda: len(signals.attempts) == 1)
    await time.advance(19)
    assert len(signals.attempts) == 1
    await time.advance(1)
    await eventually(lambda: len(signals.attempts) == 2)
    await delayed.stop()
    assert [item.type for item in delayed.list()] == ["notify.fail"]
    assert len(await storage.delayed_signals.find_all()) == 1


async def test_removes_events_from_queue_only_after_successful_delivery(storage: Storage) -> None:
    """Legacy: "removes events from queue only after successful delivery"."""
    time = FakeTime()
    signals = FakeSignals()
    delayed = delayed_build(storage, signals, time, failure_retry_ms=20)
    await delayed.start()
    await delayed.schedule(
        "notify.ok", time.now() + 5, {"type": "process", "id": "tests", "userId": "user-1"}, {"ok": True}
    )
    await time.advance(4)
    assert signals.attempts == [] and len(delayed.list()) == 1
    await time.advance(1)
    await eventually(lambda: delayed.list() == [])
    await delayed.stop()
    assert signals.attempts == [("notify.ok", {"type": "process", "id": "tests", "userId": "user-1"}, {"ok": True})]
    assert await storage.delayed_signals.find_due(time.now() + 10**9) == []


async def test_throws_a_validation_error_when_scheduled_source_user_id_is_missing(storage: Storage) -> None:
    """Legacy: "throws a validation error when scheduled source userId is missing at runtime", and the other checks."""
    time = FakeTime()
    delayed = delayed_build(storage, FakeSignals(), time)
    await delayed.load()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"source": {"type": "system"}}, "Signal source userId is required"),
        ({"type": " "}, "Delayed signal type is required"),
        ({"deliver_at": float("nan")}, "Delayed signal deliverAt must be a finite unix timestamp"),
        ({"deliver_at": float("inf")}, "Delayed signal deliverAt must be a finite unix timestamp"),
        ({"deliver_at": -0.5}, "Delayed signal deliverAt must be positive"),
    ]
    for override, message in cases:
        arguments: dict[str, Any] = {"type": "notify", "deliver_at": time.now() + 5, "source": SYSTEM, **override}
        with pytest.raises(ValueError, match=f"^{message}$"):
            await delayed.schedule(**arguments)
    with pytest.raises(ValueError, match="^Delayed signal repeatKey is required$"):
        await delayed.cancel_by_repeat_key("notify", "  ")
    assert delayed.list() == [] and await storage.delayed_signals.find_all() == []


async def test_schedule_floors_deliver_at_drops_a_blank_repeat_key_and_stores_legacy_json(storage: Storage) -> None:
    time = FakeTime()
    delayed = delayed_build(storage, FakeSignals(), time)
    scheduled = await delayed.schedule(
        " tick ", 1234.9, {"type": "webhook", "userId": "user-1", "id": "gh"}, repeat_key="  "
    )
    assert (scheduled.type, scheduled.deliver_at, scheduled.repeat_key, scheduled.data) == ("tick", 1234, None, ABSENT)
    rows = await storage.db.connection().execute_query_dict("SELECT source, data, repeat_key FROM signals_delayed")
    assert rows == [{"source": '{"type":"webhook","id":"gh","userId":"user-1"}', "data": None, "repeat_key": None}]


async def test_cancel_by_repeat_key_matches_every_user(storage: Storage) -> None:
    time = FakeTime()
    delayed = delayed_build(storage, FakeSignals(), time)
    for user in ("user-1", "user-2"):
        await delayed.schedule("reminder", time.now() + 10, {"type": "system", "userId": user}, repeat_key="job")
    await delayed.schedule("reminder", time.now() + 10, SYSTEM, repeat_key="other")
    assert await delayed.cancel_by_repeat_key("reminder", "job") == 2
    assert [item.repeat_key for item in delayed.list()] == ["other"]


async def test_a_due_row_missing_from_memory_is_delivered_once(storage: Storage) -> None:
    """Legacy flaw: a due row written by someone else was generated again on every tick and never deleted."""
    time = FakeTime()
    signals = FakeSignals()
    delayed = delayed_build(storage, signals, time)
    await delayed.start()
    outside = DelayedSignalRecord("outside", "user-1", "from.elsewhere", time.now() + 5, SYSTEM, None, 1, 1)
    await storage.delayed_signals.create(outside)
    for step in range(1, 4):
        await delayed.schedule(f"ours.{step}", time.now() + 5, SYSTEM)
        await time.advance(5)
        await eventually(lambda: delayed.list() == [])
    await delayed.stop()
    assert [attempt[0] for attempt in signals.attempts].count("from.elsewhere") == 1
    assert await storage.delayed_signals.find_by_id("outside") is None


async def test_a_due_entry_whose_row_is_gone_is_dropped_without_a_busy_loop(storage: Storage) -> None:
    time = FakeTime()
    signals = FakeSignals()
    delayed = delayed_build(storage, signals, time)
    await delayed.start()
    scheduled = await delayed.schedule("gone", time.now() + 5, SYSTEM)
    # The loop must be asleep until the due time before the clock moves, or it would sleep 5 ms past it.
    await eventually(lambda: time.sleeping == 1)
    await storage.delayed_signals.delete(scheduled.id)  # delivered or cancelled by another engine
    await time.advance(5)
    await eventually(lambda: delayed.list() == [])
    await settle()
    await delayed.stop()
    assert signals.attempts == []
    assert len(time.sleeps) <= 3  # it waited for the due time once, then for new work: no spinning


async def test_stop_then_start_runs_the_loop_again_and_waits_are_capped(storage: Storage) -> None:
    """An engine that loses scheduler leadership stops the loop, and starts it again when it leads again."""
    time = FakeTime()
    delayed = delayed_build(storage, FakeSignals(), time, max_timer_ms=1000)
    await delayed.start()
    await delayed.schedule("later", time.now() + 3_600_000, SYSTEM)
    await settle()
    assert time.sleeps and max(time.sleeps) == 1000
    await delayed.stop()
    await settle()
    assert time.sleeping == 0
    await delayed.start()
    await settle()
    assert time.sleeping == 1
    await delayed.stop()
    await settle()
    assert time.sleeping == 0
