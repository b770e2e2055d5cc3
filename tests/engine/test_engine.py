"""Engine: one database, services wired to it in the legacy order, and the end-to-end paths."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from daycare.config import HOME_VARIABLE
from daycare.engine import Engine
from daycare.engine import engine as engine_module
from daycare.engine.channels import Channels
from daycare.engine.crons import Crons
from daycare.engine.delayed_signals import DelayedSignals
from daycare.engine.exposes import Exposes
from daycare.engine.heartbeats import Heartbeats
from daycare.engine.processes import Processes
from daycare.storage.errors import DatabaseRefused
from daycare.storage.facade import Storage
from daycare.storage.repositories.context import Context
from tests.engine.helpers import (
    FakeTime,
    agent_create,
    engine_config,
    eventually,
    inbox_items,
    location_execute,
    location_query,
    location_snapshot,
    migration_count,
    on_postgres,
    system_agent_id,
    task_create,
)
from tests.sqlite_files import file_query, file_sha256


async def test_start_migrates_and_stop_closes(database_url: str, tmp_path: Path) -> None:
    async with Engine(engine_config(database_url, tmp_path)) as engine:
        owner = await engine.storage.db.connection().execute_query_dict("SELECT count(*) AS n FROM users")
        assert owner == [{"n": 1}]
    with pytest.raises(RuntimeError, match="not started"):
        _ = engine.storage
    assert await location_query(database_url, "SELECT count(*) FROM aerich") == [(migration_count(database_url),)]


async def test_a_second_engine_on_the_same_database_only_opens_it(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(HOME_VARIABLE, str(tmp_path / "home"))  # where PostgreSQL backups would go
    async with Engine(engine_config(database_url, tmp_path)):
        pass
    snapshot = await location_snapshot(database_url)
    sha = None if on_postgres(database_url) else file_sha256(Path(database_url))
    async with Engine(engine_config(database_url, tmp_path)):
        pass
    assert await location_snapshot(database_url) == snapshot
    if sha is not None:
        assert file_sha256(Path(database_url)) == sha
    assert not list(tmp_path.glob("*.bak-*"))
    assert not list(tmp_path.rglob("*.dump*"))


@pytest.mark.sqlite_only  # a legacy file: PostgreSQL has none (its drift is refused in the next test)
async def test_a_refused_file_fails_start_and_leaves_nothing_open(legacy_copy: Callable[[str], Path]) -> None:
    path = legacy_copy("populated.db")
    connection = sqlite3.connect(path)
    connection.execute("DROP INDEX idx_users_nametag")
    connection.commit()
    connection.close()
    sha = file_sha256(path)
    engine = Engine(engine_config(path, path.parent))
    with pytest.raises(DatabaseRefused):
        await engine.start()
    assert file_sha256(path) == sha
    with pytest.raises(RuntimeError):
        _ = engine.storage
    await engine.stop()  # stopping an engine that never started is harmless


async def test_a_drifted_database_fails_start_and_changes_nothing(database_url: str, tmp_path: Path) -> None:
    async with Engine(engine_config(database_url, tmp_path)):
        pass
    if on_postgres(database_url):
        definition = "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND indexname = '{}'"
    else:
        definition = "SELECT sql FROM sqlite_master WHERE name = '{}'"
    ((index_create,),) = await location_query(database_url, definition.format("idx_users_nametag"))
    await location_execute(database_url, "DROP INDEX idx_users_nametag")
    snapshot = await location_snapshot(database_url)
    engine = Engine(engine_config(database_url, tmp_path))
    with pytest.raises(DatabaseRefused, match="idx_users_nametag"):
        await engine.start()
    assert await location_snapshot(database_url) == snapshot
    with pytest.raises(RuntimeError):
        _ = engine.storage
    await engine.stop()
    # Nothing was left open or locked: with the index back, the next engine starts.
    await location_execute(database_url, index_create)
    async with Engine(engine_config(database_url, tmp_path)) as again:
        assert await again.storage.users.find_owner() is not None


async def test_start_and_stop_follow_the_legacy_order(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def recording(owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls.append(label)
            return await original(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)

    recording(engine_module, "database_migrate", "migrate")
    recording(engine_module, "owner_ensure", "owner")
    recording(Channels, "load", "channels.load")
    services = (
        (Crons, "crons"),
        (Heartbeats, "heartbeats"),
        (DelayedSignals, "delayed signals"),
        (Processes, "processes"),
        (Exposes, "exposes"),
    )
    for cls, label in services:
        recording(cls, "start", f"{label}.start")
        recording(cls, "stop", f"{label}.stop")
    recording(engine_module, "database_close", "close")

    engine = Engine(engine_config(database_url, tmp_path))
    await engine.start()
    assert engine.started_services == [
        "signals",
        "channels",
        "crons",
        "heartbeats",
        "delayed signals",
        "processes",
        "exposes",
    ]
    await engine.stop()
    assert calls == [
        "migrate",
        "owner",
        "channels.load",
        "crons.start",
        "heartbeats.start",
        "delayed signals.start",
        "processes.start",
        "exposes.start",
        "exposes.stop",
        "processes.stop",
        "delayed signals.stop",
        "heartbeats.stop",
        "crons.stop",
        "close",
    ]
    await engine.stop()
    assert calls[-1] == "close"  # a second stop closes nothing more
    assert calls.count("close") == 1


async def test_a_failure_during_start_stops_what_started_and_closes_the_database(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Engine(engine_config(database_url, tmp_path)):
        pass

    # The heartbeats fail to start, after the crons started (a bad row no longer fails a load: it is skipped).
    async def refuse(self: Heartbeats) -> None:
        raise ValueError("the heartbeats cannot start")

    monkeypatch.setattr(Heartbeats, "start", refuse)
    closed: list[str] = []
    original_close = engine_module.database_close

    async def close(db: Any) -> None:
        closed.append(db.location.display)
        await original_close(db)

    monkeypatch.setattr(engine_module, "database_close", close)
    before = {task.get_name() for task in asyncio.all_tasks()}

    engine = Engine(engine_config(database_url, tmp_path))
    with pytest.raises(ValueError, match="^the heartbeats cannot start$"):
        await engine.start()

    assert closed == [database_url]
    assert {task.get_name() for task in asyncio.all_tasks()} == before  # the cron loop is gone
    assert engine.started_services == []
    with pytest.raises(RuntimeError, match="not started"):
        _ = engine.services
    monkeypatch.undo()
    async with Engine(engine_config(database_url, tmp_path)) as again:  # the database was left usable
        assert again.started_services[-1] == "exposes"


async def test_start_creates_the_owner_when_the_database_has_none(database_url: str, tmp_path: Path) -> None:
    async with Engine(engine_config(database_url, tmp_path)):
        pass
    await location_execute(database_url, "DELETE FROM users")
    async with Engine(engine_config(database_url, tmp_path)) as engine:
        owner = await engine.storage.users.find_owner()
        assert owner is not None and owner.is_owner
    assert await location_query(database_url, "SELECT count(*) FROM users WHERE is_owner") == [(1,)]


async def test_a_delayed_signal_reaches_the_subscribed_agents_inbox(database_url: str, tmp_path: Path) -> None:
    """End to end: schedule for a subscribed agent, move the clock, find the signal in its inbox."""
    time = FakeTime()
    async with Engine(engine_config(database_url, tmp_path), clock=time.now, sleep=time.sleep) as engine:
        storage = engine.storage
        await agent_create(storage, "agent-1")
        await engine.services.signals.subscribe(Context("user-1", "agent-1"), "reminder:*")
        scheduled = await engine.services.delayed_signals.schedule(
            "reminder:standup", time.now() + 90_000, {"type": "system", "userId": "user-1"}, {"room": "ops"}
        )
        await time.advance(89_999)
        assert await inbox_items(storage, "agent-1") == []

        await time.advance(1)
        await eventually(lambda: _inbox_size(storage, "agent-1", 1))

        (item,) = await inbox_items(storage, "agent-1")
        assert item["type"] == "signal" and item["subscriptionPattern"] == "reminder:*"
        signal = item["signal"]
        assert (signal["type"], signal["source"], signal["data"]) == (
            "reminder:standup",
            {"type": "system", "userId": "user-1"},
            {"room": "ops"},
        )
        assert signal["createdAt"] == scheduled.deliver_at
        assert engine.services.delayed_signals.list() == []
        assert await storage.delayed_signals.find_all() == []
        assert [s.type for s in await engine.services.signals.list_all()] == ["reminder:standup"]


async def test_a_due_cron_trigger_posts_its_task_and_records_the_run(database_url: str, tmp_path: Path) -> None:
    """End to end: a trigger falls due, its task lands in its agent's inbox, last_run_at is written."""
    time = FakeTime()
    async with Engine(engine_config(database_url, tmp_path), clock=time.now, sleep=time.sleep) as engine:
        storage = engine.storage
        await task_create(storage, "digest", title="Daily digest", code="print('digest')")
        ctx = Context("user-1", "agent-1")
        trigger = await engine.services.crons.add_task(ctx, task_id="digest", schedule="*/5 * * * *", id="digest-5")
        assert await system_agent_id(storage, "user-1", "cron") is None

        await time.advance(5 * 60_000)
        await eventually(lambda: _cron_ran(storage, "digest-5"))

        agent_id = await system_agent_id(storage, "user-1", "cron")
        assert agent_id is not None
        (item,) = await inbox_items(storage, agent_id)
        assert item == {
            "type": "system_message",
            "text": "[cron]\ntriggerId: digest-5\ntaskId: digest\ntaskName: Daily digest",
            "code": ["print('digest')"],
            "origin": "cron",
            "execute": True,
            "context": {},
        }
        assert trigger.last_run_at is None
    last_run = await location_query(database_url, "SELECT last_run_at FROM tasks_cron WHERE id = 'digest-5'")
    assert last_run == [(time.now(),)]


async def test_the_summary_names_the_database_its_state_counts_and_services(database_url: str, tmp_path: Path) -> None:
    async with Engine(engine_config(database_url, tmp_path)) as engine:
        line = (await engine.summary()).line()
    applied = migration_count(database_url)
    assert line == (
        f"engine started on {database_url} (schema aerich: {applied} migration{'s' * (applied != 1)} applied,"
        " none pending); "
        "1 user, 0 agents, 0 cron triggers, 0 heartbeat triggers; "
        "services: signals, channels, crons, heartbeats, delayed signals, processes, exposes"
    )


async def _inbox_size(storage: Storage, agent_id: str, size: int) -> bool:
    return len(await storage.inbox.find_by_agent_id(agent_id)) == size


async def _cron_ran(storage: Storage, trigger_id: str) -> bool:
    record = await storage.cron_tasks.find_by_id(trigger_id)
    return record is not None and record.last_run_at is not None


class RecordingAgentSystem:
    """A runtime's own agent loop, reduced to what it was handed."""

    def __init__(self) -> None:
        self.posts: list[tuple[Context, Any, dict[str, Any]]] = []

    async def agent_exists(self, agent_id: str) -> bool:
        return agent_id == "agent-runtime"

    async def context_for_agent_id(self, agent_id: str) -> Context | None:
        return Context("user-runtime", agent_id) if agent_id == "agent-runtime" else None

    async def post(self, ctx: Context, target: Any, item: Any) -> None:
        self.posts.append((ctx, target, dict(item)))

    async def target_prepare(self, ctx: Context, target: Any) -> Any:
        return target


async def test_a_runtime_plugs_its_own_agent_system_into_the_engine(database_url: str, tmp_path: Path) -> None:
    agents = RecordingAgentSystem()
    async with Engine(engine_config(database_url, tmp_path), agent_system=agents) as engine:
        assert engine.services.agent_system is agents
        signals = engine.services.signals
        await signals.subscribe(Context("user-runtime", "agent-runtime"), "build:*")
        await signals.generate("build:done", {"type": "system", "userId": "user-runtime"}, {"ok": True})
    assert [(ctx.agent_id, item["type"], item["subscriptionPattern"]) for ctx, _, item in agents.posts] == [
        ("agent-runtime", "signal", "build:*")
    ]
    # Nothing reached the durable inbox: the default agent system was not used.
    assert await location_query(database_url, "SELECT count(*) FROM inbox") == [(0,)]


@pytest.mark.sqlite_only  # a text in an integer column: only SQLite's type affinity stores one
async def test_an_unreadable_owner_row_does_not_stop_the_engine(
    legacy_copy: Callable[[str], Path], caplog: pytest.LogCaptureFixture
) -> None:
    path = legacy_copy("populated.db")
    connection = sqlite3.connect(path)
    connection.execute("UPDATE users SET created_at = 'abc' WHERE is_owner = 1")
    connection.commit()
    connection.close()
    async with Engine(engine_config(path, path.parent)) as engine:
        assert await engine.storage.users.find_owner() is None
        assert engine.started_services[-1] == "exposes"
    assert "the owner's row cannot be read" in caplog.text
    assert file_query(path, "SELECT count(*) FROM users WHERE is_owner = 1") == [(1,)]  # no second owner
