"""The PostgreSQL lock: an advisory lock per schema on a connection of its own, named through pg_stat_activity."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from datetime import UTC, datetime, timedelta

import pytest

from daycare.storage.db.location import database_location
from daycare.storage.db.lock import (
    ENGINE,
    LOCK_CLASS,
    UPGRADE,
    DatabaseInUse,
    PostgresLock,
    database_lock_wait,
    postgres_lock_key,
    postgres_lock_try,
)
from daycare.storage.errors import DatabaseRefused, StorageError
from tests.postgres_server import PostgresServer, postgres_connection, postgres_schema
from tests.storage.db.lock_holder import lock_held


async def lock_taken_within(url: str, seconds: float) -> float:
    """Takes and gives back the lock of `url`, retrying while it is held; returns how long that took."""
    started = time.monotonic()
    while True:
        try:
            lock = await postgres_lock_try(database_location(url), ENGINE)
        except DatabaseInUse:
            if time.monotonic() - started > seconds:
                raise
            await asyncio.sleep(0.05)
            continue
        await lock.aclose()
        return time.monotonic() - started


async def session_names(url: str) -> dict[int, str]:
    """application_name of every session on the server, by its pid."""
    async with postgres_connection(url) as connection:
        rows = await connection.fetch("SELECT pid, application_name FROM pg_stat_activity")
    return {row["pid"]: row["application_name"] for row in rows}


async def test_a_second_process_is_refused_naming_the_holder_and_its_death_frees_the_lock(postgres_url: str) -> None:
    location = database_location(postgres_url)
    with lock_held(postgres_url, ENGINE) as holder:
        with pytest.raises(DatabaseInUse) as refused:
            await postgres_lock_try(location, ENGINE)
        message = str(refused.value)
        assert message.startswith(f"{location.display} is in use by an engine (pid {holder.pid} on "), message
        assert (
            f", PostgreSQL session {holder.session}), which holds Daycare's lock on the schema {location.schema} "
            in message
        )
        assert "(a PostgreSQL advisory lock)" in message and "Nothing was changed" in message
        named = refused.value.holder
        assert named is not None and (named.pid, named.purpose, named.session) == (holder.pid, ENGINE, holder.session)
        assert named.host and socket.gethostname().startswith(named.host)
        assert named.since is not None and datetime.now(UTC) - named.since < timedelta(minutes=5)
        assert ", this process" not in message
        holder.kill()  # SIGKILL: nothing unlocks; the server ends the session when its socket closes
        assert await lock_taken_within(postgres_url, 10) < 10


async def test_another_schema_of_the_same_database_is_not_locked(
    postgres_url: str, postgres_server: PostgresServer
) -> None:
    with lock_held(postgres_url, ENGINE):
        async with postgres_schema(postgres_server) as other:
            lock = await postgres_lock_try(database_location(other), ENGINE)
            assert lock.held and lock.key != postgres_lock_key(database_location(postgres_url).schema or "")
            await lock.aclose()
        with pytest.raises(DatabaseInUse):
            await postgres_lock_try(database_location(postgres_url), ENGINE)


def test_the_key_is_daycare_s_class_and_a_hash_of_the_schema() -> None:
    assert postgres_lock_key("t_a") == postgres_lock_key("t_a")
    assert postgres_lock_key("t_a")[0] == postgres_lock_key("t_b")[0] == LOCK_CLASS
    assert postgres_lock_key("t_a")[1] != postgres_lock_key("t_b")[1]
    assert all(0 <= part < 2**31 for part in postgres_lock_key("t_a"))


async def test_the_lock_s_connection_names_the_process_and_closing_it_frees_the_lock_at_once(
    postgres_url: str,
) -> None:
    location = database_location(postgres_url)
    lock = await database_lock_wait(location, ENGINE)
    assert isinstance(lock, PostgresLock) and lock.held and lock.schema == location.schema
    session = lock.session
    assert session is not None
    expected = f"daycare engine pid={os.getpid()} host={socket.gethostname()}"[:63]
    assert (await session_names(postgres_url))[session] == expected
    with pytest.raises(DatabaseInUse, match=rf"in use by an engine \(pid {os.getpid()} on [^,]+, this process"):
        await postgres_lock_try(location, UPGRADE)
    await lock.aclose()
    await lock.aclose()  # twice is harmless
    assert not lock.held and session not in await session_names(postgres_url)
    again = await postgres_lock_try(location, UPGRADE)  # no retry: the unlock ran before the close returned
    again.release()  # drops the connection at once; the server frees the lock when it sees it go
    assert await lock_taken_within(postgres_url, 10) < 10


async def test_a_running_engine_is_not_waited_for(postgres_url: str) -> None:
    with lock_held(postgres_url, ENGINE):
        started = time.monotonic()
        with pytest.raises(DatabaseInUse, match="in use by an engine"):
            await database_lock_wait(database_location(postgres_url), UPGRADE, wait=30)
        assert time.monotonic() - started < 5


async def test_an_upgrade_is_waited_for_saying_so_once(postgres_url: str) -> None:
    location = database_location(postgres_url)
    said: list[str] = []
    with lock_held(postgres_url, UPGRADE) as holder:
        waiting = asyncio.create_task(database_lock_wait(location, ENGINE, wait=30, notify=said.append))
        await asyncio.sleep(0.5)
        assert not waiting.done()
        assert len(said) == 1 and said[0].startswith(f"Waiting up to 30 s for an upgrade (pid {holder.pid} on ")
        assert said[0].endswith(f"to finish upgrading {location.display}")
        await asyncio.to_thread(holder.release)
        lock = await asyncio.wait_for(waiting, timeout=10)
    assert isinstance(lock, PostgresLock) and lock.held
    await lock.aclose()
    assert len(said) == 1


async def test_an_upgrade_that_outlasts_the_wait_is_named(postgres_url: str) -> None:
    with (
        lock_held(postgres_url, UPGRADE),
        pytest.raises(DatabaseInUse, match=r"in use by an upgrade[\s\S]*Waited 0.3 s for that upgrade to finish"),
    ):
        await database_lock_wait(database_location(postgres_url), UPGRADE, wait=0.3)


async def test_a_holder_that_is_not_daycare_is_named_by_its_application_name(postgres_url: str) -> None:
    location = database_location(postgres_url)
    assert location.schema is not None
    async with postgres_connection(postgres_url) as other:
        await other.execute("SET application_name = 'reporting job'")
        await other.execute("SELECT pg_advisory_lock($1::int4, $2::int4)", *postgres_lock_key(location.schema))
        session = await other.fetchval("SELECT pg_backend_pid()")
        with pytest.raises(DatabaseInUse) as refused:
            await postgres_lock_try(location, ENGINE)
    assert "in use by a process (pid unknown: application_name 'reporting job', from 127.0.0.1" in str(refused.value)
    assert f"PostgreSQL session {session})" in str(refused.value)


async def test_a_lost_connection_is_noticed_and_reported_once(postgres_url: str) -> None:
    lost: list[str] = []
    lock = await postgres_lock_try(database_location(postgres_url), ENGINE)
    lock.watch(lambda: lost.append("lost"))
    async with postgres_connection(postgres_url) as admin:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", lock.session)
    for _ in range(100):
        if lost:
            break
        await asyncio.sleep(0.05)
    assert lost == ["lost"] and not lock.held
    await lock.aclose()  # after a loss, closing is harmless
    assert lost == ["lost"]
    assert await lock_taken_within(postgres_url, 10) < 10


async def test_connection_failures_are_explained(postgres_url: str) -> None:
    location = database_location(postgres_url)
    assert location.server is not None
    missing = postgres_url.replace("/daycare_test?", "/daycare_no_such_database?")
    with pytest.raises(DatabaseRefused, match="The database daycare_no_such_database does not exist") as refused:
        await postgres_lock_try(database_location(missing), ENGINE)
    assert "createdb" in str(refused.value)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound but not listening: connections to it are refused
        closed = f"postgres://postgres@127.0.0.1:{port}/daycare_test"
        with pytest.raises(StorageError, match=f"Cannot reach the PostgreSQL server at {closed}"):
            await postgres_lock_try(database_location(closed), ENGINE)


async def test_storage_open_holds_the_schema_s_lock_as_a_script(postgres_url: str) -> None:
    from daycare.storage import storage_open

    with lock_held(postgres_url, ENGINE) as holder, pytest.raises(DatabaseInUse) as refused:
        async with storage_open(postgres_url):
            pass
    assert f"in use by an engine (pid {holder.pid} on " in str(refused.value)
    async with storage_open(postgres_url, backup=False) as storage:
        assert await storage.users.find_owner() is not None
        with pytest.raises(DatabaseInUse, match=r"in use by a script \(pid \d+ on [^,]+, this process"):
            await postgres_lock_try(database_location(postgres_url), ENGINE)
    (await postgres_lock_try(database_location(postgres_url), ENGINE)).release()  # given back on exit
