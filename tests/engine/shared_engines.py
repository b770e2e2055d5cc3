"""Engines in processes of their own (`daycare start --settings`) on one shared PostgreSQL schema, on a clock the
test moves through a file: the builders of tests/engine/test_engines_shared_schedulers.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import pytest

from daycare.storage.db import postgres
from tests.engine_process import STARTED, LineReader

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0  # seconds an engine may take to log its startup line (five start at once on two cores)
STOP_TIMEOUT = 30.0  # seconds an engine may take to exit after SIGTERM or SIGKILL
POLL = 0.05  # seconds between two looks at the database while waiting for something
LEADS = "shared database: this engine leads"
FOLLOWS = "shared database: this engine follows"
RAN = "daycare.engine.cron: running cron trigger "
_ENGINE_PID = re.compile(r"^daycare engine pid=(\d+)")

T = TypeVar("T")


class ClockFile:
    """The time the engines read (`engine.clockFile`): Unix ms in a file, replaced atomically on each change."""

    def __init__(self, path: Path, start_ms: int) -> None:
        self.path = path
        self.now_ms = start_ms
        self.set(start_ms)

    def set(self, ms: int) -> None:
        """Writes `ms`; an engine reading at the same moment sees the old time or the new one, never half a file."""
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(str(ms), encoding="utf-8")
        os.replace(partial, self.path)
        self.now_ms = ms

    def advance(self, ms: int) -> int:
        """Moves the time on by `ms`; returns the new time."""
        self.set(self.now_ms + ms)
        return self.now_ms


def settings_write(
    path: Path, url: str, *, data_dir: Path, clock: ClockFile | None, shared: bool | None = True
) -> Path:
    """A settings.json for `daycare start --settings`: the database `url`, `engine.db.shared` unless None."""
    db: dict[str, Any] = {"url": url}
    if shared is not None:
        db["shared"] = shared
    engine: dict[str, Any] = {"db": db, "dataDir": str(data_dir), "sandbox": "none"}
    if clock is not None:
        engine["clockFile"] = str(clock.path)
    path.write_text(json.dumps({"engine": engine}), encoding="utf-8")
    return path


def schema_of(url: str) -> str:
    """The `?schema=` of a test schema URL."""
    return dict(parse_qsl(urlsplit(url).query))["schema"]


def engine_environment(home: Path) -> dict[str, str]:
    """This process's environment without DAYCARE_DB_URL, with DAYCARE_HOME at `home` (backups go there)."""
    result = {key: value for key, value in os.environ.items() if key != "DAYCARE_DB_URL"}
    result["DAYCARE_HOME"] = str(home)
    return result


@dataclass
class EngineProcess:
    """One `daycare start` process and what it wrote to stderr; `started` is its startup line once read."""

    process: subprocess.Popen[str]
    stderr: LineReader
    started: str = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def startup_wait(self, timeout: float = START_TIMEOUT) -> str:
        """Its startup line, waiting for it; fails the test with what it wrote if none comes."""
        if not self.started:
            self.started = self.stderr.until(STARTED, timeout=timeout)
        return self.started

    @property
    def leads_at_start(self) -> bool:
        """Whether its startup line says it leads (it must say one or the other)."""
        assert LEADS in self.started or FOLLOWS in self.started, self.started
        return LEADS in self.started

    def text(self) -> str:
        return self.stderr.text()

    def cron_runs(self) -> int:
        """How many cron runs it logged (each run it began, claimed or not)."""
        return sum(1 for line in self.text().splitlines() if RAN in line)


@dataclass
class EngineGroup:
    """The engine processes of one test: started together, and all killed when the test ends, however it ends."""

    home: Path
    engines: list[EngineProcess] = field(default_factory=list)

    def spawn(self, settings: Path) -> EngineProcess:
        """Starts `daycare start --settings SETTINGS` without waiting for it."""
        process = subprocess.Popen(
            [sys.executable, "-m", "daycare", "start", "--settings", str(settings)],
            cwd=ROOT,
            env=engine_environment(self.home),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        engine = EngineProcess(process, LineReader(process))
        self.engines.append(engine)
        return engine

    def start(self, settings: list[Path]) -> list[EngineProcess]:
        """Starts one engine per settings file, all at once, then waits for each startup line."""
        started = [self.spawn(path) for path in settings]
        for engine in started:
            engine.startup_wait()
        return started

    def kill(self, engine: EngineProcess) -> None:
        """SIGKILL: the engine ends at once, without stopping anything."""
        engine.process.send_signal(signal.SIGKILL)
        engine.process.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        """SIGTERM to every running engine; each must exit 0 without a traceback."""
        running = [engine for engine in self.engines if engine.running]
        for engine in running:
            engine.process.send_signal(signal.SIGTERM)
        for engine in running:
            code = engine.process.wait(timeout=STOP_TIMEOUT)
            assert code == 0, f"engine {engine.pid} exited {code}:\n{engine.text()}"
            assert "Traceback" not in engine.text(), engine.text()

    def kill_all(self) -> None:
        for engine in self.engines:
            if engine.running:
                engine.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                engine.process.wait(timeout=STOP_TIMEOUT)

    def by_pid(self, pid: int) -> EngineProcess:
        (engine,) = [engine for engine in self.engines if engine.pid == pid]
        return engine


@contextlib.contextmanager
def engine_group(home: Path) -> Iterator[EngineGroup]:
    """An EngineGroup whose processes are killed on exit (the test stops them itself when it passes)."""
    group = EngineGroup(home)
    try:
        yield group
    finally:
        group.kill_all()


async def until(check: Callable[[], Awaitable[T | None]], *, timeout: float, what: str) -> T:
    """Polls `check()` until it returns something other than None (or False); fails saying `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g} s")
        await asyncio.sleep(POLL)


# Who holds the scheduler leadership of the schema $2: the sessions holding the advisory lock (class "dayl", $1).
_LEADERS = """
SELECT activity.pid AS session, activity.application_name
FROM pg_locks AS locks JOIN pg_stat_activity AS activity ON activity.pid = locks.pid
WHERE locks.locktype = 'advisory' AND locks.granted AND locks.objsubid = 2
  AND locks.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND locks.classid::int8 = $1 AND locks.objid::int8 = $2
"""


@dataclass(frozen=True)
class LeaderSession:
    """The engine that holds the leadership lock: its OS pid (from its application_name) and its server session."""

    pid: int
    session: int


async def leader_sessions(connection: Any, schema: str) -> list[LeaderSession]:
    """The sessions holding the leadership lock of `schema`, each with the OS pid of its engine."""
    rows = await connection.fetch(_LEADERS, postgres.LEADER_LOCK_CLASS, postgres.name_hash(schema))
    found = []
    for row in rows:
        named = _ENGINE_PID.match(row["application_name"] or "")
        assert named is not None, f"the leadership lock is held by a session named {row['application_name']!r}"
        found.append(LeaderSession(int(named.group(1)), row["session"]))
    return found


async def leader_session(connection: Any, schema: str) -> LeaderSession | None:
    """The one session that leads `schema`; None while none does (two leaders fail the test)."""
    sessions = await leader_sessions(connection, schema)
    assert len(sessions) <= 1, f"several engines lead at once: {sessions}"
    return sessions[0] if sessions else None


async def leader_pid(connection: Any, schema: str) -> int | None:
    """The OS pid of the one engine that leads `schema`; None while none does."""
    session = await leader_session(connection, schema)
    return session.pid if session is not None else None


@dataclass(frozen=True)
class InboxRow:
    agent_id: str
    posted_at: int
    item: dict[str, Any]


async def inbox_rows(connection: Any) -> list[InboxRow]:
    """Every inbox row, oldest first, its item parsed."""
    rows = await connection.fetch("SELECT agent_id, posted_at, data FROM inbox ORDER BY posted_at, id")
    return [InboxRow(row["agent_id"], row["posted_at"], json.loads(row["data"])) for row in rows]


async def cron_inbox(connection: Any) -> list[InboxRow]:
    """The inbox rows that cron runs posted (origin `cron`), oldest first."""
    return [row for row in await inbox_rows(connection) if row.item.get("origin") == "cron"]
