"""Waiting for another process's lock on the event loop: other tasks go on, the wait has a limit.

Another process (plain sqlite3) holds the lock until the test tells it to let go, so nothing
here depends on timing: a waiting statement must still be pending after other tasks have run
many times, and finish once the lock is released.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import pytest

from daycare.storage.db.backend import DaycareSqliteClient, lock_timeout_parse
from daycare.storage.db.database import Database, database_close, database_open
from daycare.storage.errors import DatabaseLocked, StorageError, TransactionConflict
from daycare.storage.migrations.migrate import database_migrate
from tests.sqlite_files import file_query

pytestmark = pytest.mark.sqlite_only  # about SQLite's file locks, held by another sqlite3 process

# Runs its arguments as statements, says "locked", and holds on until a line arrives on stdin.
HOLDER = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
for statement in sys.argv[2:]:
    connection.execute(statement).fetchall()
print("locked", flush=True)
sys.stdin.readline()
connection.execute("COMMIT")
"""
TICKS = 20  # turns other tasks get while a statement waits


class LockHolder:
    """A second process that holds a lock on the database file until `release()`."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, path: Path, *statements: str) -> LockHolder:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", HOLDER, str(path), *statements, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert process.stdout is not None
        assert (await process.stdout.readline()).strip() == b"locked"
        return cls(process)

    async def release(self) -> None:
        if self.process.returncode is None:
            assert self.process.stdin is not None
            self.process.stdin.write(b"go\n")
            await self.process.stdin.drain()
        assert await self.process.wait() == 0

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()


@pytest.fixture
async def holders() -> AsyncIterator[list[LockHolder]]:
    """Lock holders a test starts; any still running at the end are killed."""
    started: list[LockHolder] = []
    yield started
    for holder in started:
        holder.kill()
        await holder.process.wait()


async def holder_start(holders: list[LockHolder], path: Path, *statements: str) -> LockHolder:
    holder = await LockHolder.start(path, *(statements or ("BEGIN IMMEDIATE",)))
    holders.append(holder)
    return holder


async def database(path: Path, lock_timeout: int = 60_000) -> Database:
    """The file opened with a lock timeout far longer than any test waits, unless one is given."""
    return await database_open(f"sqlite:///{path}?lock_timeout={lock_timeout}")


@pytest.fixture
async def db_lock(tmp_path: Path) -> AsyncIterator[Database]:
    """A new WAL file with one table `w`, opened with a long lock timeout."""
    db = await database(tmp_path / "lock.db")
    await db.connection().execute_script("CREATE TABLE w (n INTEGER);")
    yield db
    await database_close(db)


async def still_waiting(waiter: asyncio.Task[Any]) -> int:
    """Lets other tasks run TICKS times, checking each time that `waiter` has not finished; counts the turns."""
    ticks = 0
    for _ in range(TICKS):
        await asyncio.sleep(0.001)
        assert not waiter.done(), "the waiting statement finished (or failed) while the lock was held"
        ticks += 1
    return ticks


def pending(awaitable: Awaitable[Any]) -> asyncio.Task[Any]:
    async def run() -> Any:
        return await awaitable

    return asyncio.create_task(run())


async def rows_w(db: Database) -> list[int]:
    rows = await db.connection().execute_query_dict("SELECT n FROM w ORDER BY n")
    return [row["n"] for row in rows]


def test_the_lock_timeout_is_whole_milliseconds() -> None:
    assert lock_timeout_parse("5000") == 5.0
    assert lock_timeout_parse(0) == 0.0
    for wrong in ("-1", "1.5", "five", ""):
        with pytest.raises(StorageError, match="lock_timeout"):
            lock_timeout_parse(wrong)


async def test_the_lock_timeout_comes_from_the_url_and_defaults_to_five_seconds(tmp_path: Path) -> None:
    for url, seconds in ((str(tmp_path / "a.db"), 5.0), (f"sqlite:///{tmp_path / 'b.db'}?lock_timeout=250", 0.25)):
        db = await database_open(url)
        try:
            client = db.connection()
            assert isinstance(client, DaycareSqliteClient)
            assert client.lock_timeout == seconds
            assert "lock_timeout" not in client.pragmas
        finally:
            await database_close(db)


async def test_a_writer_waits_for_another_process_without_blocking_the_loop(
    db_lock: Database, tmp_path: Path, holders: list[LockHolder]
) -> None:
    holder = await holder_start(holders, tmp_path / "lock.db")
    writer = pending(db_lock.connection().execute_query("INSERT INTO w VALUES (1)"))
    assert await still_waiting(writer) == TICKS
    assert file_query(tmp_path / "lock.db", "SELECT count(*) FROM w") == [(0,)]
    await holder.release()
    await writer
    assert await rows_w(db_lock) == [1]


async def test_a_writer_gives_up_after_the_limit_naming_the_file(tmp_path: Path, holders: list[LockHolder]) -> None:
    path = tmp_path / "lock.db"
    db = await database(path, lock_timeout=30)
    try:
        await db.connection().execute_script("CREATE TABLE w (n INTEGER);")
        holder = await holder_start(holders, path)
        with pytest.raises(DatabaseLocked) as raised:
            await db.connection().execute_query("INSERT INTO w VALUES (1)")
        assert isinstance(raised.value, StorageError)
        assert str(path) in raised.value.problem
        assert "Another process holds the write lock" in raised.value.problem
        assert "lock_timeout" in str(raised.value)
        with pytest.raises(DatabaseLocked):  # a transaction gives up at BEGIN, and frees the connection
            async with db.in_transaction() as tx:
                await tx.execute_query("INSERT INTO w VALUES (2)")
        await holder.release()
        await db.connection().execute_query("INSERT INTO w VALUES (3)")  # nothing was left half-done
        assert await rows_w(db) == [3]
    finally:
        await database_close(db)


async def test_a_lock_timeout_of_zero_gives_up_at_once(tmp_path: Path, holders: list[LockHolder]) -> None:
    path = tmp_path / "lock.db"
    db = await database(path, lock_timeout=0)
    try:
        await db.connection().execute_script("CREATE TABLE w (n INTEGER);")
        await holder_start(holders, path)
        with pytest.raises(DatabaseLocked):
            await db.connection().execute_query("INSERT INTO w VALUES (1)")
    finally:
        await database_close(db)


async def test_a_transaction_waits_at_begin_then_commits(
    db_lock: Database, tmp_path: Path, holders: list[LockHolder]
) -> None:
    holder = await holder_start(holders, tmp_path / "lock.db")
    entered = asyncio.Event()

    async def transaction() -> None:
        async with db_lock.in_transaction() as tx:
            entered.set()
            await tx.execute_query("INSERT INTO w VALUES (1)")
            await tx.execute_query("INSERT INTO w VALUES (2)")

    writer = asyncio.create_task(transaction())
    assert await still_waiting(writer) == TICKS
    assert not entered.is_set()  # it waits at BEGIN, before the body runs
    await holder.release()
    await writer
    assert await rows_w(db_lock) == [1, 2]


async def test_a_transaction_holds_the_write_lock_from_begin(db_lock: Database, tmp_path: Path) -> None:
    async with db_lock.in_transaction() as tx:
        await tx.execute_query_dict("SELECT count(*) AS n FROM w")  # a read only, so far
        other = sqlite3.connect(tmp_path / "lock.db", isolation_level=None, timeout=0)
        try:
            with pytest.raises(sqlite3.OperationalError, match="database is locked"):
                other.execute("INSERT INTO w VALUES (9)")
        finally:
            other.close()
        await tx.execute_query("INSERT INTO w VALUES (1)")  # so no other write can make this one stale
    assert await rows_w(db_lock) == [1]


def other_process_write(path: Path, n: int) -> None:
    code = "import sqlite3, sys; sqlite3.connect(sys.argv[1], isolation_level=None).execute(sys.argv[2])"
    subprocess.run([sys.executable, "-c", code, str(path), f"INSERT INTO w VALUES ({n})"], check=True)


async def test_a_stale_read_snapshot_is_reported_not_waited_for(db_lock: Database, tmp_path: Path) -> None:
    # A deferred transaction (Daycare's own begin with BEGIN IMMEDIATE) reads, another process
    # commits, then the transaction writes: waiting cannot help, so it fails at once, clearly.
    conn = db_lock.connection()
    await conn.execute_query("BEGIN")
    await conn.execute_query_dict("SELECT count(*) AS n FROM w")
    other_process_write(tmp_path / "lock.db", 7)
    with pytest.raises(TransactionConflict, match="run it again") as raised:
        await conn.execute_query("INSERT INTO w VALUES (1)")
    assert str(tmp_path / "lock.db") in raised.value.problem
    await conn.execute_query("ROLLBACK")
    assert await rows_w(db_lock) == [7]


async def test_a_stale_transaction_is_rolled_back_and_frees_the_connection(
    db_lock: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = db_lock.connection()
    assert isinstance(client, DaycareSqliteClient)
    monkeypatch.setattr(client, "begin_statement", "BEGIN")  # a deferred transaction, as a plain BEGIN gives
    with pytest.raises(TransactionConflict):
        async with db_lock.in_transaction() as tx:
            await tx.execute_query_dict("SELECT count(*) AS n FROM w")
            other_process_write(tmp_path / "lock.db", 7)
            await tx.execute_query("INSERT INTO w VALUES (1)")
    monkeypatch.undo()
    async with db_lock.in_transaction() as tx:  # the next transaction runs
        await tx.execute_query("INSERT INTO w VALUES (2)")
    assert await rows_w(db_lock) == [2, 7]


async def test_a_script_waits_for_the_lock_and_applies_whole(
    db_lock: Database, tmp_path: Path, holders: list[LockHolder]
) -> None:
    holder = await holder_start(holders, tmp_path / "lock.db")
    script = pending(db_lock.connection().execute_script("INSERT INTO w VALUES (1); INSERT INTO w VALUES (2);"))
    assert await still_waiting(script) == TICKS
    await holder.release()
    await script
    assert await rows_w(db_lock) == [1, 2]


async def test_execute_many_waits_for_the_lock(db_lock: Database, tmp_path: Path, holders: list[LockHolder]) -> None:
    holder = await holder_start(holders, tmp_path / "lock.db")
    writer = pending(db_lock.connection().execute_many("INSERT INTO w VALUES (?)", [[1], [2], [3]]))
    assert await still_waiting(writer) == TICKS
    await holder.release()
    await writer
    assert await rows_w(db_lock) == [1, 2, 3]


async def test_migrations_wait_for_the_lock(tmp_path: Path, holders: list[LockHolder]) -> None:
    path = tmp_path / "daycare.db"
    db = await database(path)
    try:
        holder = await holder_start(holders, path)
        migrate = pending(database_migrate(db))
        assert await still_waiting(migrate) == TICKS
        await holder.release()
        assert await migrate
        assert file_query(path, "SELECT count(*) FROM sqlite_master WHERE name = 'agents'") == [(1,)]
    finally:
        await database_close(db)


def rollback_journal_file(path: Path) -> None:
    """A file in rollback-journal mode (not WAL) with a table `w`: its COMMIT waits for readers."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("CREATE TABLE w (n INTEGER)")
    connection.close()


async def test_a_busy_commit_waits_and_then_commits(tmp_path: Path, holders: list[LockHolder]) -> None:
    path = tmp_path / "journal.db"
    rollback_journal_file(path)
    db = await database(path)
    try:
        # A reader in another process keeps its shared lock: our COMMIT cannot write the file until it goes.
        holder = await holder_start(holders, path, "BEGIN", "SELECT count(*) FROM w")
        entered = asyncio.Event()

        async def transaction() -> None:
            async with db.in_transaction() as tx:
                await tx.execute_query("INSERT INTO w VALUES (1)")
                entered.set()

        writer = asyncio.create_task(transaction())
        assert await still_waiting(writer) == TICKS
        assert entered.is_set()  # this time the wait is at COMMIT
        await holder.release()
        await writer
        assert await rows_w(db) == [1]
        holder = await holder_start(holders, path, "BEGIN", "SELECT count(*) FROM w")
        statement = pending(db.connection().execute_query("INSERT INTO w VALUES (2)"))  # autocommit: the same wait
        assert await still_waiting(statement) == TICKS
        await holder.release()
        await statement
        assert await rows_w(db) == [1, 2]
    finally:
        await database_close(db)


async def test_opening_waits_for_an_exclusive_lock(tmp_path: Path, holders: list[LockHolder]) -> None:
    path = tmp_path / "journal.db"
    rollback_journal_file(path)
    holder = await holder_start(holders, path, "BEGIN EXCLUSIVE")
    opening = pending(database(path))
    assert await still_waiting(opening) == TICKS
    await holder.release()
    db = await opening
    try:
        assert await rows_w(db) == []
    finally:
        await database_close(db)
