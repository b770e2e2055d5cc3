"""The engine on PostgreSQL: it holds the schema's advisory lock while it runs, and stops if it loses it."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

import pytest

from daycare.engine import Engine
from daycare.engine.crons import Crons
from daycare.engine.delayed_signals import DelayedSignals
from daycare.engine.exposes import Exposes
from daycare.engine.heartbeats import Heartbeats
from daycare.engine.processes import Processes
from daycare.storage.db.location import database_location
from daycare.storage.db.lock import ENGINE, DatabaseInUse, PostgresLock, postgres_lock_try
from tests.engine.helpers import engine_config
from tests.postgres_server import postgres_connection


async def test_a_second_engine_on_the_same_schema_is_refused_while_the_first_runs(
    postgres_url: str, tmp_path: Path
) -> None:
    where = re.escape(database_location(postgres_url).display)
    async with Engine(engine_config(postgres_url, tmp_path)) as first:
        second = Engine(engine_config(postgres_url, tmp_path))
        with pytest.raises(
            DatabaseInUse, match=rf"{where} is in use by an engine \(pid {os.getpid()} on .*this process"
        ):
            await second.start()
        with pytest.raises(RuntimeError, match="not started"):
            _ = second.storage
        assert await first.storage.users.find_owner() is not None  # the first engine is untouched
    async with Engine(engine_config(postgres_url, tmp_path)) as again:  # stop() released the lock
        assert await again.storage.users.find_owner() is not None
    (await postgres_lock_try(database_location(postgres_url), ENGINE)).release()  # and the last one too


async def test_an_engine_that_loses_its_lock_stops_its_schedulers_first_and_says_why(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stopped: list[str] = []
    for cls, label in (
        (Crons, "crons"),
        (Heartbeats, "heartbeats"),
        (DelayedSignals, "delayed signals"),
        (Processes, "processes"),
        (Exposes, "exposes"),
    ):
        original = cls.stop

        async def stop(self: Any, original: Any = original, label: str = label) -> None:
            stopped.append(label)
            await original(self)

        monkeypatch.setattr(cls, "stop", stop)
    engine = Engine(engine_config(postgres_url, tmp_path))
    await engine.start()
    try:
        lock = engine._lock
        assert isinstance(lock, PostgresLock) and not engine.failed.is_set()
        async with postgres_connection(postgres_url) as admin:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", lock.session)
        await asyncio.wait_for(engine.failed.wait(), timeout=10)
        assert engine.failure is not None and "the engine lost its lock on" in engine.failure
        assert stopped[:3] == ["crons", "heartbeats", "delayed signals"]
        assert sorted(stopped[3:]) == ["exposes", "processes"]
        with pytest.raises(RuntimeError, match="not started"):
            _ = engine.storage
    finally:
        await engine.stop()  # after it stopped by itself: harmless
    async with Engine(engine_config(postgres_url, tmp_path)) as successor:  # the schema is free for another engine
        assert not successor.failed.is_set() and successor.failure is None
