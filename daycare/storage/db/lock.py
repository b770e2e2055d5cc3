"""One process at a time on a database: an OS lock on a SQLite file, an advisory lock on a PostgreSQL schema.

An engine holds the lock from before it opens the database until after it closes it, and `daycare
upgrade` for the whole upgrade; the inspection commands take none.

SQLite: the lock is `flock` on `<name>.lock` beside the file, so the OS drops it when the holder
dies: a crash never leaves a stale lock. The holder writes its pid, what it does and its command
line into the file, so a refused process can name it. The file stays when the lock is released
(emptied): removing it would let two processes lock two different files of the same name.

PostgreSQL: the lock is a session-level advisory lock (`pg_try_advisory_lock`) held on a
connection of its own, outside Tortoise's pool, keyed by the schema that holds Daycare's tables,
so two schemas of one database are independent. The server drops it when that session ends,
whether the holder released it, died or lost its network. The connection's `application_name`
(`daycare engine pid=123 host=box`) names the holder to a refused process, through `pg_locks` and
`pg_stat_activity`. A lock whose connection is lost calls the holder's `watch` callback: the
engine stops, since another engine may now take the schema.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import shlex
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daycare.storage.db import postgres
from daycare.storage.db.backend import private_folder_create
from daycare.storage.db.database import database_failure
from daycare.storage.db.location import DatabaseLocation
from daycare.storage.errors import StorageError

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger("daycare.storage")

ENGINE = "engine"
UPGRADE = "upgrade"
SCRIPT = "script"  # storage_open: a script writing without the engine
UPGRADE_WAIT = 30.0  # seconds a process waits for another process's upgrade to finish
_POLL = 0.1  # seconds between two attempts while waiting
_NAMELESS_TRIES = 5  # attempts 10 ms apart while the lock is held by a process that names no one

# PostgreSQL: the engine lock's first key ("dayc"), so pg_locks tells ours from others'; the second key is a hash
# of the schema (postgres_lock_key).
LOCK_CLASS = postgres.ENGINE_LOCK_CLASS
CONNECT_TIMEOUT = 10.0  # seconds to open the lock's connection
WATCH_INTERVAL = 5.0  # seconds between two checks that the lock's connection is alive
WATCH_TIMEOUT = 10.0  # a check that takes longer counts as a lost connection
# The server ends the session of a holder whose host vanished (no FIN, no RST) after about idle + interval * count
# seconds, so its lock does not outlive it by long.
_KEEPALIVES = {"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5", "tcp_keepalives_count": "3"}
_APPLICATION_NAME_LENGTH = 63  # PostgreSQL truncates application_name to NAMEDATALEN - 1 bytes
_APPLICATION_NAME = re.compile(r"^daycare (\S+) pid=(\d+)(?: host=(\S+))?")


def lock_path(database: Path) -> Path:
    """The lock file of the database at `database`: `<name>.lock` beside it."""
    return database.with_name(database.name + ".lock")


@dataclass(frozen=True)
class LockHolder:
    """Who holds a lock: what the holder wrote into the lock file, or (PostgreSQL) what its session shows."""

    pid: int | None
    purpose: str  # ENGINE, UPGRADE, or what another holder wrote
    command: str
    host: str | None = None  # PostgreSQL: the holder's host name, from its application_name
    since: datetime | None = None  # PostgreSQL: when its session began
    session: int | None = None  # PostgreSQL: the server process of its session

    def describe(self) -> str:
        """E.g. `an engine (pid 123: daycare start --db x.db)` or `an engine (pid 123 on box, since ...)`."""
        what = {ENGINE: "an engine", UPGRADE: "an upgrade", SCRIPT: "a script"}.get(self.purpose, "a process")
        here = self.host is None or _host_name().startswith(self.host)  # application_name may cut the host short
        own = ", this process" if self.pid == os.getpid() and here else ""
        details = f"pid {self.pid}" if self.pid is not None else "pid unknown"
        if self.host:
            details += f" on {self.host}"
        details += own
        if self.command:
            details += f": {self.command}"
        if self.since is not None:
            details += f", since {self.since.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
        if self.session is not None:
            details += f", PostgreSQL session {self.session}"
        return f"{what} ({details})"


def lock_holder_text(holder: LockHolder | None) -> str:
    """How messages name a lock's holder: `holder.describe()`, or "another process" when it is unknown."""
    return holder.describe() if holder is not None else "another process"


def lock_holder_read(path: Path) -> LockHolder | None:
    """The holder the lock file at `path` names; None when it names none (empty, unreadable, not ours)."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
        pid = content.get("pid")
        return LockHolder(
            pid if isinstance(pid, int) else None, str(content.get("purpose", "")), str(content.get("command", ""))
        )
    except (OSError, ValueError, AttributeError):
        return None


class DatabaseInUse(StorageError):
    """Another process holds the database's lock: an engine runs on it, or an upgrade."""

    def __init__(
        self, database: Path | DatabaseLocation, holder: LockHolder | None, *advice: str, schema: str | None = None
    ) -> None:
        who = lock_holder_text(holder)
        if isinstance(database, DatabaseLocation):
            problem = (
                f"{database.display} is in use by {who}, which holds Daycare's lock on the schema"
                f" {schema or database.schema or 'public'} (a PostgreSQL advisory lock)."
            )
            rule = "One engine, upgrade or script may write a Daycare schema at a time (or engines sharing it)"
        else:
            problem = f"{database} is in use by {who}, which holds its lock file {lock_path(database)}."
            rule = "Only one engine, upgrade or script may write a database file at a time"
        super().__init__(
            problem,
            *advice,
            f"Nothing was changed. {rule}: stop that one first. daycare db status and daycare db check work meanwhile.",
        )
        self.database = database
        self.holder = holder


class DatabaseLock:
    """A held lock on one database file; `release()` (or leaving its `with` block, or exiting) gives it up."""

    def __init__(self, database: Path, descriptor: int) -> None:
        self.database = database
        self.path = lock_path(database)
        self._descriptor: int | None = descriptor

    @property
    def held(self) -> bool:
        return self._descriptor is not None

    def release(self) -> None:
        """Empties the lock file and releases the lock; safe to call twice."""
        descriptor, self._descriptor = self._descriptor, None
        if descriptor is None:
            return
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(descriptor, 0)
        finally:
            os.close(descriptor)  # closing the last descriptor releases the flock

    async def aclose(self) -> None:
        """`release()`, for code that holds either kind of lock."""
        self.release()

    def watch(self, on_lost: Callable[[], None]) -> None:
        """Nothing to watch: an OS lock is held as long as its descriptor is open."""

    def __enter__(self) -> DatabaseLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    async def __aenter__(self) -> DatabaseLock:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()


def _command_line() -> str:
    command = shlex.join(getattr(sys, "orig_argv", sys.argv))
    return command if len(command) <= 300 else command[:297] + "..."


def database_lock_try(database: Path, purpose: str) -> DatabaseLock:
    """Takes the lock of the database at `database` at once, or raises DatabaseInUse naming the holder.

    Creates the database's folder (0700) and the lock file (0600) when missing; a folder that
    cannot be written raises DatabaseNotWritable.
    """
    path = lock_path(database)
    try:
        private_folder_create(path.parent)
        descriptor = os.open(
            path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), 0o600
        )
    except OSError as exc:
        failure = database_failure(database, exc, outcome="Nothing was changed")  # a read-only folder, a full disk
        raise failure or StorageError(
            f"Cannot open the lock file {path}: {exc.strerror}.", "Nothing was changed."
        ) from None
    for attempt in range(_NAMELESS_TRIES):
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(descriptor)
                raise StorageError(f"Cannot lock {path}: {exc.strerror}.", "Nothing was changed.") from None
            named = lock_holder_read(path)
            if named is not None or attempt == _NAMELESS_TRIES - 1:
                os.close(descriptor)
                raise DatabaseInUse(database, named) from None
            # A holder that names no one is writing its name, or releasing: try again shortly.
            time.sleep(0.01)
    holder = {"pid": os.getpid(), "purpose": purpose, "command": _command_line(), "since": int(time.time())}
    with contextlib.suppress(OSError):  # the pid is for messages only; the flock is the lock
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, (json.dumps(holder) + "\n").encode(), 0)
    return DatabaseLock(database, descriptor)


@contextlib.contextmanager
def database_lock(database: Path | None, purpose: str = "") -> Iterator[DatabaseLock | None]:
    """Holds the database's lock for the `with` block, or raises DatabaseInUse at once; None for memory."""
    if database is None:
        yield None
        return
    with database_lock_try(database, purpose) as lock:
        yield lock


async def database_lock_wait(
    database: DatabaseLocation | Path | None,
    purpose: str,
    *,
    wait: float = UPGRADE_WAIT,
    notify: Callable[[str], None] | None = None,
) -> DatabaseLock | PostgresLock | None:
    """Takes the database's lock, waiting up to `wait` seconds while an upgrade holds it; None for memory.

    `database` is a location (a SQLite file, memory or a PostgreSQL schema) or a file's path.
    An upgrade is short and its end is what the caller wants, so it is waited for, saying so
    once through `notify`; a running engine is not: DatabaseInUse is raised at once.
    """
    if isinstance(database, DatabaseLocation):
        if database.server is not None:
            return await _postgres_lock(database, purpose, wait=wait, notify=notify)
        database = database.path
    if database is None:
        return None
    deadline = time.monotonic() + wait
    waiting = False
    while True:
        try:
            return database_lock_try(database, purpose)
        except DatabaseInUse as exc:
            upgrading = exc.holder is not None and exc.holder.purpose == UPGRADE
            if not upgrading:
                raise
            if time.monotonic() >= deadline:
                raise DatabaseInUse(
                    database,
                    exc.holder,
                    f"Waited {wait:g} s for that upgrade to finish; run this command again once it has.",
                ) from None
            if not waiting and notify is not None:
                assert exc.holder is not None
                notify(f"Waiting up to {wait:g} s for {exc.holder.describe()} to finish upgrading {database}")
            waiting = True
        await asyncio.sleep(_POLL)


# PostgreSQL


_SHARED_ADVICE = (
    "Several engines may share a PostgreSQL schema when every one of them says so: shared=true in the database URL,"
    " or engine.db.shared in settings.json."
)
_SHARED_REFUSED = (
    "This engine runs on a shared database; the holder does not share it (an upgrade, a script, or an engine"
    " without shared=true) and must stop first."
)


def postgres_lock_key(schema: str) -> tuple[int, int]:
    """The advisory lock key of `schema`: LOCK_CLASS and 31 bits of a hash of its name."""
    return LOCK_CLASS, postgres.name_hash(schema)


def _host_name() -> str:
    """This machine's name as application_name carries it (PostgreSQL keeps printable ASCII only)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())


def _application_name(purpose: str) -> str:
    """`daycare <purpose> pid=<pid> host=<host>`: what a refused process reads from pg_stat_activity."""
    return f"daycare {purpose} pid={os.getpid()} host={_host_name()}"[:_APPLICATION_NAME_LENGTH]


def lock_holder_parse(row: Any) -> LockHolder:
    name = str(row["application_name"] or "")
    since = row["backend_start"]
    found = _APPLICATION_NAME.match(name)
    if found is None:  # not a Daycare process: show what it calls itself, and where it connects from
        client = f"from {row['client']}" if row["client"] else ""
        command = ", ".join(part for part in (f"application_name {name!r}" if name else "", client) if part)
        return LockHolder(None, "", command, since=since, session=row["pid"])
    return LockHolder(int(found.group(2)), found.group(1), "", found.group(3), since, row["pid"])


class PostgresLock:
    """A held advisory lock on one PostgreSQL schema, on a connection of its own.

    `aclose()` (or leaving its `async with` block) unlocks it and closes the connection; `release()`
    drops the connection at once, and the server then frees the lock.
    """

    def __init__(
        self, location: DatabaseLocation, connection: asyncpg.Connection, schema: str, *, shared: bool = False
    ) -> None:
        self.location = location
        self.schema = schema
        self.shared = shared  # held in shared mode, beside other engines of a shared database
        self.key = postgres_lock_key(schema)
        self._connection: asyncpg.Connection | None = connection
        self._on_lost: Callable[[], None] | None = None
        self._busy = asyncio.Lock()  # one statement at a time on the connection: a check, or the unlock
        connection.add_termination_listener(self._terminated)
        self._watcher: asyncio.Task[None] | None = asyncio.get_running_loop().create_task(self._watch())

    @property
    def held(self) -> bool:
        return self._connection is not None

    @property
    def session(self) -> int | None:
        """The server process of the lock's session (pg_stat_activity.pid)."""
        return self._connection.get_server_pid() if self._connection is not None else None

    def watch(self, on_lost: Callable[[], None]) -> None:
        """Calls `on_lost` (once, in the event loop) if the lock's connection is lost while it is held."""
        self._on_lost = on_lost

    async def fetchval(self, sql: str, *args: object) -> object:
        """Runs one statement on the lock's connection, between the checks; a failure counts as a lost connection."""
        async with self._busy:
            connection = self._connection
            if connection is None:
                raise StorageError(f"Daycare's lock on {self.location.display} is not held any more.")
            try:
                return await connection.fetchval(sql, *args, timeout=WATCH_TIMEOUT)
            except Exception as exc:
                self._lost(f"a statement on its connection failed: {exc or type(exc).__name__}")
                raise

    async def listen(self, channel: str, on_notice: Callable[[str], None]) -> None:
        """LISTENs on `channel` on the lock's connection: `on_notice(payload)` for every notification."""
        assert self._connection is not None
        await self._connection.add_listener(channel, lambda *notice: on_notice(str(notice[-1])))

    def _terminated(self, connection: object) -> None:
        if self._connection is not None:  # not released by us: the server or the network ended the session
            self._lost("the server closed its connection")

    def _lost(self, why: str) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        watcher, self._watcher = self._watcher, None
        if watcher is not None and watcher is not asyncio.current_task():
            watcher.cancel()
        connection.remove_termination_listener(self._terminated)
        if not connection.is_closed():
            connection.terminate()
        log.error(
            "Lost Daycare's lock on the schema %s of %s (%s): another engine may take it now",
            self.schema,
            self.location.display,
            why,
        )
        if self._on_lost is not None:
            self._on_lost()

    async def _watch(self) -> None:
        """Checks the connection every WATCH_INTERVAL seconds: a network that drops packets closes nothing."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            connection = self._connection
            if connection is None:
                return
            try:
                async with self._busy:
                    if self._connection is None:
                        return
                    await connection.fetchval(postgres.LOCK_PING, timeout=WATCH_TIMEOUT)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: the lock can no longer be trusted
                self._lost(f"a check of its connection failed: {exc or type(exc).__name__}")
                return

    def release(self) -> None:
        """Drops the connection at once (the server frees the lock when it sees it go); safe to call twice."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        connection.remove_termination_listener(self._terminated)
        connection.terminate()

    async def aclose(self) -> None:
        """Unlocks and closes the connection, so the lock is free when this returns; safe to call twice."""
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        async with self._busy:
            connection, self._connection = self._connection, None
        if connection is None:
            return
        connection.remove_termination_listener(self._terminated)
        try:
            # Closing the session frees every advisory lock it holds (a leader's too); unlocking first says so.
            unlock = postgres.ADVISORY_UNLOCK_SHARED if self.shared else postgres.ADVISORY_UNLOCK
            await connection.fetchval(unlock, *self.key, timeout=WATCH_TIMEOUT)
            await connection.close(timeout=WATCH_TIMEOUT)
        except Exception as exc:  # the server frees the lock when the session ends
            log.info("Unlocking %s failed (%s); its connection is dropped instead", self.location.display, exc)
            connection.terminate()
        except BaseException:
            connection.terminate()
            raise

    async def __aenter__(self) -> PostgresLock:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def _postgres_connect(location: DatabaseLocation, purpose: str) -> asyncpg.Connection:
    """A new connection to `location`'s database that names this process and `purpose`, outside any pool."""
    import asyncpg  # only when PostgreSQL is used

    from daycare.storage.db.database import postgres_connect_arguments
    from daycare.storage.db.postgres_backend import postgres_connect_failure

    try:
        return await asyncpg.connect(
            **postgres_connect_arguments(location),
            timeout=CONNECT_TIMEOUT,
            server_settings={"application_name": _application_name(purpose), **_KEEPALIVES},
        )
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise postgres_connect_failure(location, exc) from None


async def _postgres_holder(connection: asyncpg.Connection, key: tuple[int, int]) -> LockHolder | None:
    rows = await connection.fetch(postgres.ADVISORY_LOCK_HOLDER, *key)
    return lock_holder_parse(rows[0]) if rows else None


async def _postgres_lock(
    location: DatabaseLocation,
    purpose: str,
    *,
    wait: float | None,
    notify: Callable[[str], None] | None,
    shared: bool = False,
) -> PostgresLock:
    """Takes the advisory lock of `location`'s schema; waits up to `wait` seconds for an upgrade (None: never).

    `shared`: in shared mode, which every engine of a shared database holds at once, and which excludes the
    others (an upgrade, a script, an engine of an unshared database).
    """
    import asyncpg

    from daycare.storage.db.postgres_backend import postgres_connect_failure

    connection = await _postgres_connect(location, purpose)
    try:
        schema = location.schema or str(await connection.fetchval(postgres.LOCK_CURRENT_SCHEMA) or "public")
        key = postgres_lock_key(schema)
        deadline = time.monotonic() + (wait or 0.0)
        waiting = False
        nameless = 0
        while True:
            if await connection.fetchval(
                postgres.ADVISORY_LOCK_SHARED_TRY if shared else postgres.ADVISORY_LOCK_TRY, *key
            ):
                return PostgresLock(location, connection, schema, shared=shared)
            holder = await _postgres_holder(connection, key)
            if holder is None and nameless < _NAMELESS_TRIES:
                nameless += 1  # the holder has just released it, or its row is not visible yet: try again
                await asyncio.sleep(0.01)
                continue
            upgrading = holder is not None and holder.purpose == UPGRADE
            if not upgrading or wait is None:
                advice = [] if purpose != ENGINE else [_SHARED_ADVICE if not shared else _SHARED_REFUSED]
                raise DatabaseInUse(location, holder, *advice, schema=schema)
            assert holder is not None
            if time.monotonic() >= deadline:
                raise DatabaseInUse(
                    location,
                    holder,
                    f"Waited {wait:g} s for that upgrade to finish; run this command again once it has.",
                    schema=schema,
                )
            if not waiting and notify is not None:
                notify(f"Waiting up to {wait:g} s for {holder.describe()} to finish upgrading {location.display}")
            waiting = True
            await asyncio.sleep(_POLL)
    except BaseException as exc:
        if isinstance(exc, Exception):  # refused: say goodbye, so the server logs no lost client
            with contextlib.suppress(Exception):
                await connection.close(timeout=WATCH_TIMEOUT)
        connection.terminate()
        if isinstance(exc, (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)):
            raise postgres_connect_failure(location, exc) from None
        raise


async def postgres_lock_shared(
    location: DatabaseLocation, *, wait: float | None = UPGRADE_WAIT, notify: Callable[[str], None] | None = None
) -> PostgresLock:
    """The engine lock of a shared database, in shared mode; waits up to `wait` seconds for an upgrade."""
    return await _postgres_lock(location, ENGINE, wait=wait, notify=notify, shared=True)


async def postgres_lock_try(location: DatabaseLocation, purpose: str) -> PostgresLock:
    """Takes the advisory lock of `location`'s schema at once, or raises DatabaseInUse naming the holder."""
    return await _postgres_lock(location, purpose, wait=None, notify=None)
