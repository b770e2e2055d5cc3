"""Group commit on SQLite: concurrent writes share one COMMIT, fail alone, and are acknowledged only once durable.

Each test makes the group it talks about deterministic: a transaction holds the connection
(`GroupHold`) while the other tasks queue for it, so every one of them joins the group that
transaction opened, and the group commits only after the last of them (the connection's lock
is first come, first served). COMMITs are counted with SQLite's own statement trace.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from tortoise.exceptions import IntegrityError, OperationalError

from daycare.storage.db.backend import DaycareSqliteClient
from daycare.storage.db.database import Database, database_close, database_open
from daycare.storage.db.group_commit import StatementKind, statement_kind
from daycare.storage.db.location import database_location
from daycare.storage.errors import StorageError
from daycare.storage.facade import Storage
from daycare.storage.migrations.migrate import database_migrate
from daycare.storage.repositories.history import HistoryRecord
from tests.storage.helpers import agent_record, owner_id

pytestmark = pytest.mark.sqlite_only

TURNS = 50  # yields that let every started task reach the connection's queue (the yielding backend takes up to 7)
TABLES = """
CREATE TABLE w (n INTEGER PRIMARY KEY, pad TEXT);
CREATE TABLE parent (id INTEGER PRIMARY KEY);
CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL REFERENCES parent (id));
"""


def client_of(db: Database) -> DaycareSqliteClient:
    client = db.connection()
    assert isinstance(client, DaycareSqliteClient)
    return client


class Commits:
    """The COMMITs the database's connection ran, from SQLite's statement trace."""

    def __init__(self, db: Database) -> None:
        self.count = 0
        connection = client_of(db)._connection
        assert connection is not None
        connection.set_trace_callback(self._seen)

    def _seen(self, statement: str) -> None:
        self.count += statement.strip().upper() == "COMMIT"


async def turns() -> None:
    for _ in range(TURNS):
        await asyncio.sleep(0)


class GroupHold:
    """A transaction that opens a group and holds the connection until `release()`, so that the writes
    started meanwhile queue and join its group."""

    def __init__(self, db: Database, body: Callable[[Any], Awaitable[None]] | None = None) -> None:
        self.db = db
        self.body = body
        self.inside = asyncio.Event()
        self.go = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async with self.db.in_transaction() as tx:
            if self.body is not None:
                await self.body(tx)
            self.inside.set()
            await self.go.wait()

    async def start(self) -> GroupHold:
        self.task = asyncio.create_task(self._run())
        await self.inside.wait()
        return self

    async def release(self) -> None:
        """Lets the transaction end; returns once it did (its COMMIT waits for the others)."""
        await turns()
        self.go.set()
        assert self.task is not None
        await self.task


def rows_committed(path: Path, query: str = "SELECT n FROM w ORDER BY n") -> list[Any]:
    """What another connection reads from the file: only committed rows."""
    connection = sqlite3.connect(path)
    try:
        return [row[0] for row in connection.execute(query)]
    finally:
        connection.close()


@asynccontextmanager
async def database_at(path: Path, parameters: str = "") -> AsyncIterator[Database]:
    db = await database_open(f"sqlite:///{path}?group_commit=on{parameters}")
    try:
        await db.connection().execute_script(TABLES)
        yield db
    finally:
        await database_close(db)


@pytest.fixture
async def gdb(tmp_path: Path) -> AsyncIterator[Database]:
    async with database_at(tmp_path / "g.db") as db:
        yield db


async def insert(db: Database, n: int, pad: str | None = None) -> None:
    await db.connection().execute_query("INSERT INTO w (n, pad) VALUES (?, ?)", [n, pad])


def test_statements_are_sorted_by_their_first_keyword() -> None:
    assert statement_kind("SELECT 1") is StatementKind.READ
    assert statement_kind("  (SELECT 1)") is StatementKind.READ
    assert statement_kind('INSERT INTO "w" VALUES (1) RETURNING n') is StatementKind.WRITE
    assert statement_kind("update w set n = 1") is StatementKind.WRITE
    assert statement_kind("WITH x AS (SELECT 1) DELETE FROM w") is StatementKind.WRITE
    for alone in ("PRAGMA foreign_keys=OFF", "VACUUM INTO 'x'", "CREATE TABLE x (y)", "BEGIN", "-- x\nSELECT 1"):
        assert statement_kind(alone) is StatementKind.ALONE, alone


def test_the_url_turns_it_on_or_off_and_refuses_anything_else(tmp_path: Path) -> None:
    assert dict(database_location(f"sqlite:///{tmp_path}/a.db?group_commit=off").pragmas) == {"group_commit": "OFF"}
    with pytest.raises(StorageError, match="group_commit"):
        database_location(f"sqlite:///{tmp_path}/a.db?group_commit=maybe")


async def test_off_in_the_url_commits_each_write_alone(tmp_path: Path) -> None:
    db = await database_open(f"sqlite:///{tmp_path}/off.db?group_commit=off")
    try:
        assert not client_of(db).group_commit
        await db.connection().execute_script(TABLES)
        await asyncio.gather(*(insert(db, n) for n in range(5)))
        assert rows_committed(tmp_path / "off.db") == [0, 1, 2, 3, 4]
    finally:
        await database_close(db)


async def test_writes_that_queue_share_one_commit_and_each_returns_once_it_is_in_the_file(
    gdb: Database, tmp_path: Path
) -> None:
    commits = Commits(gdb)
    seen: dict[int, list[int]] = {}

    async def writer(n: int) -> None:
        await insert(gdb, n)
        seen[n] = rows_committed(tmp_path / "g.db")  # another connection: the row is committed already

    hold = await GroupHold(gdb, lambda tx: tx.execute_query("INSERT INTO w (n) VALUES (0)")).start()
    writers = [asyncio.create_task(writer(n)) for n in range(1, 21)]
    await hold.release()
    await asyncio.gather(*writers)
    assert commits.count == 1
    assert rows_committed(tmp_path / "g.db") == list(range(21))
    assert all(n in rows for n, rows in seen.items())


async def test_a_failing_write_rolls_back_alone_and_its_caller_gets_the_error(storage_file: Storage) -> None:
    storage = storage_file
    owner = await owner_id(storage)
    agents = [(await storage.create_agent_with_session(agent_record(f"agent-{n}", owner))).agent for n in range(3)]
    commits = Commits(storage.db)

    async def append(number: int) -> None:
        await storage.append_history(agents[number % 3].id, HistoryRecord("note", number, {"text": str(number)}))

    hold = await GroupHold(storage.db).start()
    appends = [asyncio.create_task(append(number)) for number in range(10)]
    orphan = asyncio.create_task(storage.history.append("no-such-session", HistoryRecord("note", 99, {})))
    kept = asyncio.create_task(storage.inbox.insert("item-2", agents[0].id, 2, "message", "{}"))
    await hold.release()
    await asyncio.gather(*appends, kept)
    with pytest.raises(IntegrityError):
        await orphan
    assert commits.count == 1
    for number, agent in enumerate(agents):
        history = await storage.history.find_by_agent_id(agent.id)
        assert sorted(record.at for record in history) == list(range(number, 10, 3))
    assert [item.id for item in await storage.inbox.find_by_agent_id(agents[0].id)] == ["item-2"]


async def test_a_transaction_is_one_unit_kept_or_rolled_back_whole(gdb: Database, tmp_path: Path) -> None:
    commits = Commits(gdb)

    async def transaction(first: int, second: int) -> None:
        async with gdb.in_transaction() as tx:
            await tx.execute_query("INSERT INTO w (n) VALUES (?)", [first])
            await asyncio.sleep(0)  # the unit holds the connection across its awaits
            await tx.execute_query("INSERT INTO w (n) VALUES (?)", [second])

    hold = await GroupHold(gdb, lambda tx: tx.execute_query("INSERT INTO w (n) VALUES (0)")).start()
    good = asyncio.create_task(transaction(1, 2))
    bad = asyncio.create_task(transaction(3, 0))  # its second row collides with the hold's
    single = asyncio.create_task(insert(gdb, 4))
    await hold.release()
    await asyncio.gather(good, single)
    with pytest.raises(IntegrityError):
        await bad
    assert commits.count == 1
    assert rows_committed(tmp_path / "g.db") == [0, 1, 2, 4]


async def test_a_read_sees_the_open_group_and_returns_only_once_it_committed(gdb: Database, tmp_path: Path) -> None:
    async def read() -> tuple[int, list[int]]:
        rows = await gdb.connection().execute_query_dict("SELECT count(*) AS n FROM w")
        return rows[0]["n"], rows_committed(tmp_path / "g.db")

    hold = await GroupHold(gdb, lambda tx: tx.execute_query("INSERT INTO w (n) VALUES (0)")).start()
    writers = [asyncio.create_task(insert(gdb, n)) for n in (1, 2)]
    await turns()  # the writers queue first
    reader = asyncio.create_task(read())
    await hold.release()
    await asyncio.gather(*writers)
    count, committed = await reader
    assert count == 3  # the group's uncommitted rows, as a read inside one transaction sees them
    assert committed == [0, 1, 2]  # and by the time the read returned, they were committed
    assert await gdb.connection().execute_query_dict("SELECT count(*) AS n FROM w") == [{"n": 3}]  # no group open


async def test_a_failed_commit_fails_every_caller_of_the_group_readers_included_and_keeps_nothing(
    gdb: Database, tmp_path: Path
) -> None:
    """A deferred foreign key is checked at COMMIT: the real SQLite error at commit time."""

    async def orphan(tx: Any) -> None:
        await tx.execute_query("PRAGMA defer_foreign_keys=ON")
        await tx.execute_query("INSERT INTO child (id, parent_id) VALUES (1, 99)")

    hold = await GroupHold(gdb, orphan).start()
    writers = [asyncio.create_task(insert(gdb, n)) for n in range(10)]
    reader = asyncio.create_task(gdb.connection().execute_query_dict("SELECT n FROM w"))  # would see 0..9
    await turns()
    assert hold.task is not None
    hold.go.set()
    outcomes = await asyncio.gather(hold.task, *writers, reader, return_exceptions=True)
    assert all(isinstance(outcome, IntegrityError) for outcome in outcomes), outcomes
    assert "FOREIGN KEY" in str(outcomes[0])
    assert rows_committed(tmp_path / "g.db") == []
    assert rows_committed(tmp_path / "g.db", "SELECT id FROM child") == []
    await insert(gdb, 42)  # the connection goes on, with foreign keys checked at once again
    with pytest.raises(IntegrityError):
        await gdb.connection().execute_query("INSERT INTO child (id, parent_id) VALUES (2, 99)")
    assert rows_committed(tmp_path / "g.db") == [42]


async def test_a_waiting_caller_cancelled_is_told_nothing_and_its_write_commits_with_the_group(
    gdb: Database, tmp_path: Path
) -> None:
    hold = await GroupHold(gdb, lambda tx: tx.execute_query("INSERT INTO w (n) VALUES (0)")).start()
    waiting = asyncio.create_task(insert(gdb, 1))
    await turns()  # `waiting` queues first
    blocker = GroupHold(gdb, lambda tx: tx.execute_query("INSERT INTO w (n) VALUES (2)"))
    blocker_started = asyncio.create_task(blocker.start())
    await turns()
    hold.go.set()  # hold joins and leads; `waiting` joins; the blocker then holds the connection
    await blocker_started
    await turns()
    assert not waiting.done()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await blocker.release()
    assert hold.task is not None
    await hold.task
    assert rows_committed(tmp_path / "g.db") == [0, 1, 2]


async def test_a_cancelled_leader_hands_the_commit_on(gdb: Database, tmp_path: Path) -> None:
    commits = Commits(gdb)
    leader = await GroupHold(gdb, lambda tx: tx.execute_query("INSERT INTO w (n) VALUES (0)")).start()
    blocker = GroupHold(gdb, lambda tx: tx.execute_query("INSERT INTO w (n) VALUES (1)"))
    blocker_started = asyncio.create_task(blocker.start())
    await turns()  # the blocker queues first
    writer = asyncio.create_task(insert(gdb, 2))
    await turns()
    leader.go.set()  # the leader joins, then waits for the connection behind the blocker and the writer
    await blocker_started
    await turns()
    assert leader.task is not None and not leader.task.done()
    leader.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader.task
    await blocker.release()
    await writer
    assert commits.count == 1
    assert rows_committed(tmp_path / "g.db") == [0, 1, 2]


async def test_a_statement_that_cannot_share_a_transaction_commits_the_group_first(
    gdb: Database, tmp_path: Path
) -> None:
    """VACUUM INTO refuses to run inside a transaction; queued behind a group, it runs after its COMMIT."""
    copy = tmp_path / "copy.db"
    hold = await GroupHold(gdb, lambda tx: tx.execute_query("INSERT INTO w (n) VALUES (0)")).start()
    writer = asyncio.create_task(insert(gdb, 1))
    await turns()  # they queue in this order
    vacuum = asyncio.create_task(gdb.connection().execute_query("VACUUM INTO ?", [str(copy)]))
    await turns()
    late = asyncio.create_task(insert(gdb, 2))
    await hold.release()
    await asyncio.gather(writer, vacuum, late)
    assert rows_committed(copy) == [0, 1]
    assert rows_committed(tmp_path / "g.db") == [0, 1, 2]


def tmpfs_mount(folder: Path, size: str) -> None:
    """Mounts a tmpfs of `size` on `folder`, or skips the test saying why."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full disk needs a tmpfs of its own: mounting one takes root and mount(8)")
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")


def disk_fill(folder: Path) -> Path:
    """Writes a file until the disk holding `folder` is full; returns it."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as stream:
        try:
            while True:
                stream.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


async def test_a_full_disk_at_commit_fails_every_caller_of_the_group_and_keeps_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "small"
    tmpfs_mount(folder, "2m")
    try:
        # No checkpoint: the -wal only grows, so the group's COMMIT needs new space on the disk.
        async with database_at(folder / "g.db", "&wal_autocheckpoint=0") as db:
            await insert(db, 0)
            filler = disk_fill(folder)
            pad = "x" * 3000  # each row takes a page of its own: the COMMIT writes a dozen pages
            hold = await GroupHold(db, lambda tx: tx.execute_query("INSERT INTO w VALUES (1, ?)", [pad])).start()
            writers = [asyncio.create_task(insert(db, n, pad)) for n in range(2, 12)]
            await turns()
            assert hold.task is not None
            hold.go.set()
            outcomes = await asyncio.gather(hold.task, *writers, return_exceptions=True)
            assert all(isinstance(outcome, OperationalError) for outcome in outcomes), outcomes
            assert "full" in str(outcomes[0])
            filler.unlink()
            assert rows_committed(folder / "g.db") == [0]
            await insert(db, 12, pad)  # with space again, the connection goes on
            assert rows_committed(folder / "g.db") == [0, 12]
    finally:
        subprocess.run(["umount", str(folder)], check=True)


WRITER = """
import asyncio, sys
from daycare.storage.db.database import database_open

async def main(path):
    db = await database_open(f"sqlite:///{path}?group_commit=on")
    await db.connection().execute_script("CREATE TABLE w (n INTEGER PRIMARY KEY, pad TEXT);")
    counter = iter(range(10**9))

    async def writer():
        while True:
            n = next(counter)
            await db.connection().execute_query("INSERT INTO w (n) VALUES (?)", [n])
            sys.stdout.write(f"{n}\\n")  # acknowledged: its COMMIT returned
            sys.stdout.flush()

    await asyncio.gather(*(writer() for _ in range(50)))

asyncio.run(main(sys.argv[1]))
"""


def test_every_acknowledged_write_survives_a_kill(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    acknowledged: list[int] = []
    try:
        assert child.stdout is not None
        for line in child.stdout:
            acknowledged.append(int(line))
            if len(acknowledged) == 2000:
                break
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    stored = set(rows_committed(path))
    assert len(acknowledged) == 2000
    assert [n for n in acknowledged if n not in stored] == []


@pytest.fixture
async def storage_file(tmp_path: Path) -> AsyncIterator[Storage]:
    """A migrated database file with group commit on, as Storage."""
    db = await database_open(f"sqlite:///{tmp_path}/s.db?group_commit=on")
    try:
        await database_migrate(db, backup=False)
        yield Storage.from_database(db)
    finally:
        await database_close(db)
