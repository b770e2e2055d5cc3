"""Engines sharing one PostgreSQL schema: the shared lock, leadership and its loss, change notices, reconnection.

These run two engines in the test process (each with its own pool, caches and coordination
connection); tests/engine/test_engines_shared_schedulers.py runs them as separate processes.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from daycare.config import Config, config_load
from daycare.engine.engine import LEADER_SERVICES, SCHEDULERS, Engine
from daycare.storage.db.location import database_location
from daycare.storage.db.lock import UPGRADE, DatabaseInUse, database_lock_wait
from daycare.storage.errors import StorageError
from daycare.storage.repositories.context import Context
from tests.engine.helpers import FakeTime, agent_create, inbox_items, system_agent_id, task_create
from tests.postgres_server import postgres_connection


async def waited_for(check: Callable[[], bool | Awaitable[bool]], timeout: float = 20) -> None:
    """Polls `check` until it is true; fails after `timeout` seconds (leadership is retried every second)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the condition never became true within {timeout} s")
        await asyncio.sleep(0.02)


def shared(url: str) -> str:
    return url + ("&" if "?" in url else "?") + "shared=true"


def engine_at(url: str, tmp_path: Path, name: str) -> Engine:
    return Engine(Config(url, tmp_path / name, "test"))


async def session_cut(url: str, engine: Engine) -> int:
    """Ends the engine's coordination session from the server side (as a network cut or a server restart would)."""
    coordinator = engine._coordinator
    assert coordinator is not None and coordinator.session is not None
    session = coordinator.session
    async with postgres_connection(url) as connection:
        assert await connection.fetchval("SELECT pg_terminate_backend($1)", session)
    return session


async def test_shared_engines_each_hold_the_lock_and_exactly_one_leads(postgres_url: str, tmp_path: Path) -> None:
    url = shared(postgres_url)
    first, second = engine_at(url, tmp_path, "a"), engine_at(url, tmp_path, "b")
    async with first, second:
        assert (first.leads, second.leads) == (True, False)
        assert set(LEADER_SERVICES) <= set(first.started_services)
        assert not set(LEADER_SERVICES) & set(second.started_services)
        assert {"signals", "channels"} <= set(second.started_services)
        assert (await first.summary()).line().endswith("this engine leads (it runs the schedulers)")
        assert "this engine follows" in (await second.summary()).line()
        owners = [user for user in await second.storage.users.find_all() if user.is_owner]
        assert len(owners) == 1


async def test_a_leader_whose_connection_is_cut_stops_scheduling_and_another_engine_leads(
    postgres_url: str, tmp_path: Path
) -> None:
    url = shared(postgres_url)
    leader, follower = engine_at(url, tmp_path, "a"), engine_at(url, tmp_path, "b")
    async with leader, follower:
        assert leader.leads
        cut = await session_cut(postgres_url, leader)
        await waited_for(lambda: not leader.leads and not set(LEADER_SERVICES) & set(leader.started_services))
        # The engine whose connection held is first in line: the cut one competes again only later.
        await waited_for(lambda: bool(follower.leads) and set(SCHEDULERS) <= set(follower.started_services))
        # The old leader reconnects as a follower and keeps serving.
        coordinator = leader._coordinator
        assert coordinator is not None
        await waited_for(lambda: coordinator.session not in (None, cut))
        assert not leader.leads and not leader.failed.is_set()
        assert await leader.storage.users.find_owner() is not None


async def test_when_the_leader_stops_another_engine_leads_within_the_retry_interval(
    postgres_url: str, tmp_path: Path
) -> None:
    url = shared(postgres_url)
    leader, follower = engine_at(url, tmp_path, "a"), engine_at(url, tmp_path, "b")
    await leader.start()
    async with follower:
        assert leader.leads and not follower.leads
        await leader.stop()
        stopped = time.monotonic()
        await waited_for(lambda: bool(follower.leads) and set(SCHEDULERS) <= set(follower.started_services))
        print(f"took over {time.monotonic() - stopped:.2f} s after the leader stopped")


async def test_changes_of_another_engine_reach_the_cache_and_a_reconnected_engine_reads_afresh(
    postgres_url: str, tmp_path: Path
) -> None:
    url = shared(postgres_url)
    writer, reader = engine_at(url, tmp_path, "a"), engine_at(url, tmp_path, "b")
    async with writer, reader:
        owner = await writer.storage.users.find_owner()
        assert owner is not None
        await agent_create(writer.storage, "agent-1", owner.id)
        assert (await reader.storage.agents.find_by_id("agent-1")).lifecycle == "active"  # type: ignore[union-attr]
        await writer.storage.agents.update("agent-1", lifecycle="sleeping")

        async def sleeping() -> bool:
            record = await reader.storage.agents.find_by_id("agent-1")
            return record is not None and record.lifecycle == "sleeping"

        await waited_for(sleeping)
        # Cut the reader off: what changes meanwhile is announced to no one; reconnected, it must not serve stale rows.
        coordinator = reader._coordinator
        assert coordinator is not None
        cut = await session_cut(postgres_url, reader)
        await writer.storage.agents.update("agent-1", lifecycle="active")
        await waited_for(lambda: coordinator.session not in (None, cut))
        record = await reader.storage.agents.find_by_id("agent-1")
        assert record is not None and record.lifecycle == "active"


async def test_a_committed_change_is_announced_with_its_key_and_a_rolled_back_one_is_not(
    postgres_url: str, tmp_path: Path
) -> None:
    schema = database_location(postgres_url).schema
    async with engine_at(shared(postgres_url), tmp_path, "a"):
        pass  # migrates the schema and creates the owner
    notices: asyncio.Queue[str] = asyncio.Queue()
    async with postgres_connection(postgres_url) as listener, postgres_connection(postgres_url) as writer:
        # The channel is the database's: other schemas' changes (other tests) come too.
        await listener.add_listener(
            "daycare_changes",
            lambda *notice: notices.put_nowait(notice[-1]) if notice[-1].startswith(f"{schema} ") else None,
        )
        owner = await writer.fetchval("SELECT id FROM users")
        rolled_back = writer.transaction()
        await rolled_back.start()
        await writer.execute("UPDATE users SET name = 'rolled back'")
        await rolled_back.rollback()
        await writer.execute("UPDATE users SET name = 'kept'")
        # Notices come in commit order: had the rolled-back update announced itself, it would come first.
        assert await asyncio.wait_for(notices.get(), timeout=10) == f"{schema} users {owner}"
        await asyncio.sleep(0.5)
        assert notices.empty()


async def test_only_an_engine_alone_on_its_schema_skips_the_change_notices(postgres_url: str, tmp_path: Path) -> None:
    """No one listens to an unshared engine's schema; anyone else's writes (a shared engine, psql) announce."""
    schema = database_location(postgres_url).schema
    notices: asyncio.Queue[str] = asyncio.Queue()
    async with postgres_connection(postgres_url) as listener:
        await listener.add_listener(
            "daycare_changes",
            lambda *notice: notices.put_nowait(notice[-1]) if notice[-1].startswith(f"{schema} ") else None,
        )
        async with engine_at(postgres_url, tmp_path, "alone") as alone:
            owner = await alone.storage.users.find_owner()
            assert owner is not None
            await agent_create(alone.storage, "agent-alone", owner.id)
        async with postgres_connection(postgres_url) as writer:
            await writer.execute("UPDATE agents SET lifecycle = 'sleeping'")
        assert await asyncio.wait_for(notices.get(), timeout=10) == f"{schema} agents agent-alone"
        assert notices.empty()  # the unshared engine's owner, agent and session announced nothing
        async with engine_at(shared(postgres_url), tmp_path, "shared") as engine:
            await engine.storage.agents.update("agent-alone", lifecycle="active")
            assert await asyncio.wait_for(notices.get(), timeout=10) == f"{schema} agents agent-alone"


async def test_shared_and_unshared_use_of_a_schema_exclude_each_other(postgres_url: str, tmp_path: Path) -> None:
    location = database_location(postgres_url)
    async with engine_at(shared(postgres_url), tmp_path, "a"):
        with pytest.raises(DatabaseInUse) as refused:
            await engine_at(postgres_url, tmp_path, "b").start()
        assert "shared=true" in str(refused.value) and "Nothing was changed" in str(refused.value)
        with pytest.raises(DatabaseInUse):
            await database_lock_wait(location, UPGRADE, wait=0)
    async with engine_at(postgres_url, tmp_path, "c"):
        with pytest.raises(DatabaseInUse) as refused:
            await engine_at(shared(postgres_url), tmp_path, "d").start()
        assert "does not share it" in str(refused.value)


async def test_a_sqlite_file_cannot_be_shared(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="Only a PostgreSQL database can be shared"):
        database_location(f"sqlite://{tmp_path / 'daycare.db'}?shared=true")
    with pytest.raises(StorageError, match="only a PostgreSQL database can"):
        await Engine(Config(str(tmp_path / "daycare.db"), tmp_path, "test", db_shared=True)).start()
    assert not (tmp_path / "daycare.db").exists()
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"engine": {"dbPath": str(tmp_path / "x.db"), "db": {"shared": True}}}))
    with pytest.raises(StorageError, match="engine.db.shared is true, but the database is not PostgreSQL"):
        config_load(settings=settings, environ={})
    settings.write_text(json.dumps({"engine": {"db": {"url": "postgres://h/d", "shared": "yes"}}}))
    with pytest.raises(StorageError, match="engine.db.shared must be true or false"):
        config_load(settings=settings, environ={})
    with pytest.raises(StorageError, match="Invalid shared='maybe'"):
        database_location("postgres://h/d?shared=maybe")


async def test_db_status_lists_the_engines_of_a_shared_schema_and_the_leader(postgres_url: str, tmp_path: Path) -> None:
    url = shared(postgres_url)
    async with engine_at(url, tmp_path, "a"), engine_at(url, tmp_path, "b"):
        result = subprocess.run(
            [sys.executable, "-m", "daycare", "db", "status", "--db", postgres_url],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    start = lines.index("Engines:  2 connected (a shared database):")
    engines = lines[start + 1 : start + 3]
    assert [line.endswith("(leads the schedulers)") for line in engines] == [True, False]
    assert all(line.startswith("  - an engine (pid ") for line in engines)


async def test_a_heartbeat_round_runs_once_per_interval_whichever_engine_leads(
    postgres_url: str, tmp_path: Path
) -> None:
    """Two engines on one fake clock: the leader runs each round; after it stops, the other runs the next, once."""
    url = shared(postgres_url)
    time_ = FakeTime()

    def engine(name: str) -> Engine:
        config = Config(url, tmp_path / name, "test")
        return Engine(config, clock=time_.now, sleep=time_.sleep, heartbeat_interval_ms=60_000)

    leader, follower = engine("a"), engine("b")
    await leader.start()
    try:
        owner = await leader.storage.users.find_owner()
        assert owner is not None
        await task_create(leader.storage, "task-beat", owner.id)
        await leader.services.heartbeats.add_task(Context(owner.id), task_id="task-beat", id="beat")
        await follower.start()
        assert leader.leads and not follower.leads

        async def rounds() -> int:
            agent_id = await system_agent_id(follower.storage, owner.id, "heartbeat")
            items = await inbox_items(follower.storage, agent_id) if agent_id else []
            return sum(1 for item in items if item.get("origin") == "heartbeat")

        for expected in (1, 2):
            await time_.advance(60_000)
            await waited_for(lambda expected=expected: _equals(rounds(), expected))  # type: ignore[misc]
        await leader.stop()
        await waited_for(lambda: bool(follower.leads) and "heartbeats" in follower.started_services)
        await time_.advance(60_000)
        await waited_for(lambda: _equals(rounds(), 3))
        await time_.advance(1)  # nothing more falls due: no second run of that round
        await asyncio.sleep(0.3)
        assert await rounds() == 3
        run = await follower.storage.trigger_runs.find_by_id("heartbeat")
        assert run is not None and run.engine == follower.name and run.occurrence_at <= time_.now()
    finally:
        await leader.stop()
        await follower.stop()


async def _equals(count: Awaitable[int], expected: int) -> bool:
    return await count == expected


async def test_an_engine_that_cannot_rejoin_because_an_upgrade_took_the_schema_stops(
    postgres_url: str, tmp_path: Path
) -> None:
    engine = engine_at(shared(postgres_url), tmp_path, "a")
    await engine.start()
    try:
        upgrade = None
        for _ in range(5):  # the engine reconnects 0.2 s after the cut: the upgrade must come first
            await session_cut(postgres_url, engine)
            deadline = time.monotonic() + 0.15
            while upgrade is None and time.monotonic() < deadline:
                try:  # the server may still be ending the cut session, which holds the lock until it has
                    upgrade = await database_lock_wait(database_location(postgres_url), UPGRADE, wait=0)
                except DatabaseInUse:
                    await asyncio.sleep(0.01)
            if upgrade is not None:
                break
            await waited_for(lambda: engine._coordinator is not None and engine._coordinator.session is not None)
        try:
            await asyncio.wait_for(engine.failed.wait(), timeout=30)
        finally:
            assert upgrade is not None
            await upgrade.aclose()
        assert engine.failure is not None and "an upgrade" in engine.failure and "the engine stopped" in engine.failure
        assert engine.started_services == [] and engine.leads is None
    finally:
        await engine.stop()
