"""Builders for the engine tests: a clock the test moves, agents and tasks, inbox reads."""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from daycare.config import Config
from daycare.storage.facade import Storage
from daycare.storage.migrations.loader import migrations_load
from daycare.storage.repositories.agents import AgentRecord
from daycare.storage.repositories.tasks import TaskRecord
from tests.postgres_server import postgres_connection
from tests.sqlite_files import file_dicts

# 2024-01-15 10:30:00 local time, the moment the legacy cron specs froze the clock at (as UTC).
LOCAL_START_MS = int(datetime(2024, 1, 15, 10, 30, 0).timestamp() * 1000)
ASYNCPG_DIR = str(Path(asyncpg.__file__).parent)
SERVER_TIMEOUT = 30.0  # seconds a wait in loop turns may spend on a database server's answers


class FakeTime:
    """A clock that only moves when the test says so, and a sleep that waits for it."""

    def __init__(self, start_ms: int = LOCAL_START_MS) -> None:
        self.now_ms = start_ms
        self._sleepers: list[tuple[int, asyncio.Future[None]]] = []
        self.sleeps: list[int] = []

    def now(self) -> int:
        return self.now_ms

    async def sleep(self, ms: int) -> None:
        self.sleeps.append(ms)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (self.now_ms + ms, future)
        self._sleepers.append(entry)
        try:
            await future
        finally:
            self._sleepers.remove(entry)

    @property
    def sleeping(self) -> int:
        return len(self._sleepers)

    async def advance(self, ms: int) -> None:
        """Lets pending tasks reach their sleeps, moves the clock, wakes every sleep that is now over,
        then lets the woken tasks run.

        A sleep takes its deadline when its coroutine first runs, a few loop turns after it was
        started; moving the clock before that would push the deadline past the new time.
        """
        await settle()
        self.now_ms += ms
        for deadline, future in list(self._sleepers):
            if deadline <= self.now_ms and not future.done():
                future.set_result(None)
        await settle()


def server_waited_on() -> bool:
    """Whether a task of the running loop awaits a database server's answer (asyncpg code is in its await chain).

    SQLite answers within the loop turn that asks; a server answers in real time, however many turns pass.
    """
    for task in asyncio.all_tasks():
        awaited: Any = task.get_coro()
        while awaited is not None:
            code = getattr(awaited, "cr_code", None) or getattr(awaited, "gi_code", None)
            code = code or getattr(awaited, "ag_code", None)
            if code is not None and code.co_filename.startswith(ASYNCPG_DIR):
                return True
            awaited = _awaited_by(awaited)
    return False


def _awaited_by(awaitable: Any) -> Any:
    """What a suspended coroutine (or generator) awaits; through the wrapper of an `__await__` method too."""
    for name in ("cr_await", "gi_yieldfrom", "ag_await"):
        if hasattr(awaitable, name):
            return getattr(awaitable, name)
    if isinstance(awaitable, asyncio.Future):
        return None
    # A coroutine_wrapper (`await queryset` returns one) or an async generator's asend: the object inside.
    for found in gc.get_referents(awaitable):
        if inspect.iscoroutine(found) or inspect.isgenerator(found) or inspect.isasyncgen(found):
            return found
    return None


async def _turn(deadline: float) -> bool:
    """One turn of the loop; False if a database server was being waited on (that turn does not count)."""
    await asyncio.sleep(0)
    if not server_waited_on():
        return True
    if time.monotonic() > deadline:
        raise AssertionError(f"the database server did not answer within {SERVER_TIMEOUT} s")
    return False


async def settle(turns: int = 200) -> None:
    """Gives the other tasks of the loop `turns` chances to run (no clock time passes); turns spent waiting
    for a database server's answer do not count."""
    deadline = time.monotonic() + SERVER_TIMEOUT
    done = 0
    while done < turns:
        done += 1 if await _turn(deadline) else 0


async def eventually(check: Callable[[], bool | Awaitable[bool]], turns: int = 5000) -> None:
    """Waits (in loop turns, not time; turns spent waiting for a database server do not count) until `check()`
    (sync or async) is true; fails the test otherwise."""
    deadline = time.monotonic() + SERVER_TIMEOUT
    done = 0
    while done < turns:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        done += 1 if await _turn(deadline) else 0
    raise AssertionError("the condition never became true")


def engine_config(location: str | Path, data_dir: Path) -> Config:
    """An engine's configuration: the database at `location` (a file or a postgres:// URL), its files in `data_dir`."""
    return Config(str(location), data_dir, "test")


def on_postgres(location: str | Path) -> bool:
    """Whether `location` (a `database_url` fixture value) is a PostgreSQL URL rather than a file."""
    return str(location).startswith(("postgres://", "postgresql://"))


def migration_count(location: str | Path) -> int:
    """How many migrations the chain of `location`'s dialect holds (a fresh database gets them all)."""
    return len(migrations_load(dialect="postgres" if on_postgres(location) else "sqlite"))


async def location_dicts(location: str | Path, sql: str) -> list[dict[str, Any]]:
    """Runs one read on the database at `location` with the test's own client (sqlite3 or asyncpg), not Daycare's."""
    if on_postgres(location):
        async with postgres_connection(str(location)) as connection:
            return [dict(row) for row in await connection.fetch(sql)]
    return file_dicts(Path(location), sql)


async def location_query(location: str | Path, sql: str) -> list[tuple[Any, ...]]:
    """Like `location_dicts`, rows as tuples."""
    return [tuple(row.values()) for row in await location_dicts(location, sql)]


async def location_execute(location: str | Path, sql: str) -> None:
    """Runs one write on the database at `location` with the test's own client, committed (the database is closed)."""
    if on_postgres(location):
        async with postgres_connection(str(location)) as connection:
            await connection.execute(sql)
        return
    connection = sqlite3.connect(location)
    try:
        connection.execute(sql)
        connection.commit()
    finally:
        connection.close()


async def agent_create(storage: Storage, agent_id: str, user_id: str = "user-1", lifecycle: str = "active") -> str:
    """A stored agent of `user_id` with its first session."""
    record = AgentRecord(
        id=agent_id,
        user_id=user_id,
        type="permanent",
        descriptor={"type": "permanent", "id": agent_id, "name": agent_id, "description": "", "systemPrompt": ""},
        active_session_id=None,
        permissions={"workingDir": "/", "writeDirs": []},
        tokens=None,
        stats={},
        lifecycle=lifecycle,
        created_at=1,
        updated_at=1,
    )
    await storage.create_agent_with_session(record)
    return agent_id


async def task_create(
    storage: Storage, task_id: str, user_id: str = "user-1", *, title: str = "", code: str = ""
) -> None:
    await storage.tasks.create(TaskRecord(task_id, user_id, title or task_id, None, code or f"run {task_id}", 1, 1))


async def inbox_items(storage: Storage, agent_id: str) -> list[dict[str, Any]]:
    """The agent's inbox items, parsed, oldest first."""
    return [json.loads(row.data) for row in await storage.inbox.find_by_agent_id(agent_id)]


async def system_agent_id(storage: Storage, user_id: str, tag: str) -> str | None:
    """The user's system agent with this tag, if any."""
    for record in await storage.agents.find_by_user_id(user_id):
        if record.descriptor == {"type": "system", "tag": tag}:
            return record.id
    return None


async def location_snapshot(location: str | Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows, sorted, by table name: equal snapshots mean nothing was written in between."""
    if on_postgres(location):
        async with postgres_connection(str(location)) as connection:
            names = await connection.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
            )
            return {
                name: sorted((tuple(row) for row in await connection.fetch(f'SELECT * FROM "{name}"')), key=repr)
                for (name,) in names
            }
    connection = sqlite3.connect(f"file:{location}?mode=ro", uri=True)
    try:
        names = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        return {name: sorted(connection.execute(f'SELECT * FROM "{name}"').fetchall(), key=repr) for (name,) in names}
    finally:
        connection.close()
