"""Tortoise SQLite backend that runs each statement on the event loop, in one step.

This is the only module allowed to import the SQLite driver. Tortoise's stock client hands
every statement to an aiosqlite thread several times (execute, fetch, close); on this kind
of machine each hand-off costs about 100 us, more than a whole WAL commit with
`synchronous=NORMAL`. The legacy TypeScript code ran SQLite synchronously on its event
loop, and so does this client: a statement is executed and fetched in one call, and a burst
of statements yields to the loop every few milliseconds so that a busy caller never starves
other tasks. `docs/storage.md` has the measurements behind this choice.

Two more departures from the stock client, both for migrations:
- `execute_script` runs statement by statement inside the current transaction (or its own)
  and never commits implicitly, so an Aerich migration file is atomic with its `aerich` row.
- transactions register on the connection handler the client belongs to, so two databases
  in one process never route a statement through each other's transaction.

Another process's write lock is waited for on the loop, never inside the driver (which would
freeze every task): the connection's busy timeout is 0, and a statement that finds the lock
taken is retried after an async backoff (1 ms, doubling up to 50 ms) for up to `lock_timeout`
milliseconds (a URL parameter, 5,000 by default); then `DatabaseLocked` names the file.
Transactions begin with `BEGIN IMMEDIATE`, so a transaction waits for the lock at its start,
where waiting is always safe, and never meets a stale read snapshot at its first write.

With group commit on (`daycare.storage.db.group_commit` says what it promises), the writes of
concurrent tasks share one transaction and one COMMIT: `_statement` and `_TransactionContext`
make each write or transaction a unit in its own SAVEPOINT, and `_group_*` run the shared transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from itertools import count
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from pypika_tortoise.dialects import SQLLiteQuery
from tortoise.backends.base.client import (
    BaseDBAsyncClient,
    Capabilities,
    ConnectionWrapper,
    NestedTransactionContext,
    TransactionalDBClient,
    TransactionContext,
)
from tortoise.backends.sqlite.executor import SqliteExecutor
from tortoise.backends.sqlite.schema_generator import SqliteSchemaGenerator
from tortoise.connection import ConnectionHandler, get_connections
from tortoise.exceptions import (
    BaseORMException,
    IntegrityError,
    OperationalError,
    TransactionManagementError,
)

from daycare.storage.db.group_commit import (
    GROUP_COMMIT,
    CommitGroup,
    Membership,
    StatementKind,
    group_commit_parse,
    statement_kind,
)
from daycare.storage.db.text import text_decode
from daycare.storage.errors import DatabaseLocked, StorageError, TransactionConflict

T = TypeVar("T")

# Statements that would break the one-transaction-per-migration rule if a script issued them.
_TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "END", "ROLLBACK")
_savepoint_names = count()
YIELD_INTERVAL = 0.002  # seconds of back-to-back statements before the client yields to the loop
LEADER_TURNS = 16  # at most this many turns of the loop a group's leader waits for units to join
LOCK_TIMEOUT = 5000  # milliseconds a statement waits for another process's lock (URL parameter lock_timeout)
LOCK_RETRY_FIRST = 0.001  # seconds before the first retry of a busy statement; doubles on each retry
LOCK_RETRY_MAX = 0.05  # the longest pause between two retries
_SQLITE_BUSY = 5  # primary result code; the extended codes (BUSY_RECOVERY, BUSY_SNAPSHOT, ...) share it
_SQLITE_BUSY_SNAPSHOT = 517  # a write in a transaction whose read snapshot another process made stale
_SQLITE_LOCKED_SHAREDCACHE = 262  # another connection to a shared-cache database holds a table lock
# The savepoint of one group-commit unit; units never nest (the connection's lock runs one at a time).
_UNIT_BEGIN, _UNIT_END, _UNIT_UNDO = "SAVEPOINT daycare_unit", "RELEASE daycare_unit", "ROLLBACK TO daycare_unit"


def lock_timeout_parse(value: object) -> float:
    """The `lock_timeout` URL parameter (whole milliseconds, 0 or more) in seconds; StorageError otherwise."""
    text = str(value).strip()
    if not text.isdigit():
        raise StorageError(
            f"Invalid lock_timeout={value!r} in the database URL.",
            "Give the longest wait for another process's lock in whole milliseconds, e.g. lock_timeout=5000.",
        )
    return int(text) / 1000


def _lock_busy(exc: sqlite3.Error) -> bool:
    """Whether the driver error means another connection holds a lock this statement needs."""
    code: int | None = getattr(exc, "sqlite_errorcode", None)
    if code is None:  # raised by the driver itself, not by SQLite
        return False
    return code & 0xFF == _SQLITE_BUSY or code == _SQLITE_LOCKED_SHAREDCACHE


def _orm_error(exc: sqlite3.Error) -> BaseORMException:
    """Tortoise's exception for a driver error."""
    return IntegrityError(exc) if isinstance(exc, sqlite3.IntegrityError) else OperationalError(exc)


def _text_undecodable(exc: sqlite3.Error) -> bool:
    """Whether a fetch failed on a TEXT value that is not UTF-8 (the driver then loses the whole result)."""
    return isinstance(exc, sqlite3.OperationalError) and str(exc).startswith("Could not decode to UTF-8")


def _tolerant(connection: sqlite3.Connection, call: Callable[[sqlite3.Connection], T]) -> T:
    """Runs a read again with text decoded by `text_decode`, so that text that is not UTF-8 spoils only
    its own row. Only reads get here (the failed call changed nothing): decoding with the driver's
    own UTF-8 decoder first keeps the common case at full speed."""
    connection.text_factory = text_decode
    try:
        return _translated(lambda: call(connection))
    finally:
        connection.text_factory = str


def _translated(call: Callable[[], T]) -> T:
    """Runs a driver call and raises Tortoise's exceptions instead of the driver's."""
    try:
        return call()
    except sqlite3.IntegrityError as exc:
        raise IntegrityError(exc) from exc
    except sqlite3.Error as exc:
        raise OperationalError(exc) from exc


def script_statements(script: str) -> Iterator[str]:
    """Splits an SQL script into complete statements; trigger bodies stay whole."""
    pending = ""
    for part in script.split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            statement = pending.strip()
            pending = ""
            if statement.strip(";").strip():
                yield statement
    if pending.strip(";").strip():
        raise OperationalError(f"incomplete SQL statement at the end of a script: {pending.strip()[:80]}")


class _Steps:
    """Statements run atomically: inside the open transaction, or inside a transaction of their own.

    A retry after a busy lock never repeats a statement that took effect: inside a transaction
    it resumes at the statement that met the lock (SQLite undid only that one), and a
    transaction of its own, rolled back by then, starts again from the first.
    """

    def __init__(self, steps: Sequence[Callable[[sqlite3.Connection], object]], begin: str) -> None:
        self.steps = steps
        self.begin = begin
        self.done = 0

    def __call__(self, connection: sqlite3.Connection) -> None:
        if connection.in_transaction:
            self._rest_run(connection)
            return
        self.done = 0
        connection.execute(self.begin)
        try:
            self._rest_run(connection)
        except BaseException:
            if connection.in_transaction:  # SQLite may have rolled back already (a full disk, say)
                connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")  # a busy COMMIT leaves the transaction open: the retry rolls it back

    def _rest_run(self, connection: sqlite3.Connection) -> None:
        for step in self.steps[self.done :]:
            step(connection)
            self.done += 1


def _script_steps(script: str) -> list[Callable[[sqlite3.Connection], object]]:
    """The statements of a script, one step each; refuses a script that manages transactions."""
    statements = list(script_statements(script))
    for statement in statements:
        if statement.split(None, 1)[0].upper().rstrip(";") in _TRANSACTION_CONTROL:
            raise OperationalError(
                f"SQL scripts must not manage transactions ({statement[:40]!r}); "
                "the migration runner already wraps each file in one transaction"
            )
    return [functools.partial(_statement_run, statement) for statement in statements]


def _statement_run(statement: str, connection: sqlite3.Connection) -> None:
    connection.execute(statement)


def _group_end(connection: sqlite3.Connection) -> None:
    connection.execute("COMMIT")


def _group_failure(error: BaseException) -> BaseException:
    """The exception a caller of a group that was not kept gets: a new one per caller for a driver error."""
    cause = error if isinstance(error, sqlite3.Error) else error.__cause__
    if isinstance(cause, sqlite3.Error):
        failure = _orm_error(cause)
        failure.__cause__ = cause
        return failure
    return error


class _GroupUnit(Generic[T]):
    """One statement a caller runs outside a transaction on a client with group commit on."""

    __slots__ = ("call", "kind", "membership")

    def __init__(self, call: Callable[[sqlite3.Connection], T], kind: StatementKind) -> None:
        self.call = call
        self.kind = kind
        self.membership: Membership | None = None  # set once the statement ran inside a group

    def __call__(self, connection: sqlite3.Connection) -> T:
        return self.call(connection)


def _row_run(query: str, row: Sequence[Any], connection: sqlite3.Connection) -> None:
    connection.execute(query, row)


def private_folder_create(folder: Path) -> None:
    """Creates a missing folder and each missing folder above it, all 0700 (`mkdir -p` would make those 0755)."""
    missing: list[Path] = []
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing.append(path)
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)


def private_file_prepare(path: Path) -> None:
    """Creates a missing folder (0700) and database file (0600): the file holds private conversations."""
    private_folder_create(path.parent)
    if not path.exists():
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


SQLITE_VERSION = sqlite3.sqlite_version  # the SQLite library's, e.g. 3.40.1: what the catalog's texts depend on

# Pragmas that write into the file itself; a read-only connection leaves them as the file has them.
_FILE_PRAGMAS = frozenset({"journal_mode", "auto_vacuum", "page_size", "user_version", "application_id"})


def read_only_uri(filename: str) -> str:
    """The `file:` URI that opens `filename` read-only: SQLite then never creates, writes or converts the file."""
    if filename.startswith("file:"):
        return filename + ("&" if "?" in filename else "?") + "mode=ro"
    return f"file:{quote(str(Path(filename).absolute()))}?mode=ro"


def _journal_mode_ensure(connection: sqlite3.Connection) -> None:
    """Switches a new, empty file to WAL, as the legacy code did on every open.

    WAL is a lasting property of the file. A file with tables is left as it is here, even one
    with a `_migrations` table (another application may use that name): a refused file must
    stay byte-identical. `database_migrate` switches a Daycare file once it accepted it.
    """
    if not connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' LIMIT 1").fetchall():
        connection.execute("PRAGMA journal_mode=WAL").fetchall()


class _Burst:
    """When a connection last yielded to the event loop, shared by the transactions on it."""

    __slots__ = ("yielded_at",)

    def __init__(self) -> None:
        self.yielded_at = 0.0


class DaycareSqliteClient(BaseDBAsyncClient):
    """One SQLite connection, used by one task at a time through an asyncio lock."""

    transaction_class: type[_TransactionClient]  # the client a transaction runs on (set below its class)

    executor_class = SqliteExecutor
    query_class = SQLLiteQuery
    schema_generator = SqliteSchemaGenerator
    capabilities = Capabilities(
        "sqlite",
        daemon=False,
        requires_limit=True,
        inline_comment=True,
        support_for_update=False,
        support_update_limit_order_by=False,
        can_rollback_ddl=True,
        support_returning=True,
    )

    def __init__(self, file_path: str, mode: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filename = file_path
        # `mode=ro` (database_open(read_only=True)) is for inspection: no file is created, written or converted.
        self.read_only = mode == "ro"
        self.pragmas: dict[str, Any] = {
            key: value
            for key, value in kwargs.items()
            if key not in ("connection_name", "fetch_inserted", "lock_timeout", "group_commit")
        }
        self.pragmas.setdefault("foreign_keys", "ON")
        self.lock_timeout = lock_timeout_parse(kwargs.get("lock_timeout", LOCK_TIMEOUT))  # seconds
        # Writes outside a transaction and whole transactions share COMMITs (URL parameter group_commit).
        self.group_commit = group_commit_parse(kwargs.get("group_commit", GROUP_COMMIT))
        self._group: CommitGroup | None = None  # the shared transaction open on the connection
        self._last_writer: asyncio.Task[Any] | None = None  # the task whose write or transaction came last
        self._commit_tasks: set[asyncio.Task[None]] = set()  # COMMITs owed by leaders that were cancelled
        # BEGIN IMMEDIATE takes the write lock at BEGIN; a query_only connection cannot, and needs no lock.
        self.begin_statement = "BEGIN IMMEDIATE"
        self._connection: sqlite3.Connection | None = None
        self._closed = False  # a closed client never reconnects behind its owner's back
        self._lock = asyncio.Lock()
        self._burst = _Burst()
        # Set by database_open; None when Aerich or Tortoise's globals own this client.
        self.handler: ConnectionHandler | None = None

    @property
    def is_memory(self) -> bool:
        return self.filename in ("", ":memory:") or "mode=memory" in self.filename

    async def create_connection(self, with_db: bool) -> None:
        if self._connection is not None:
            return
        if self._closed:
            raise OperationalError(f"the database {self.filename} is closed")
        read_only = self.read_only and not self.is_memory
        if not self.is_memory and not self.filename.startswith("file:") and not read_only:
            private_file_prepare(Path(self.filename))
        target = read_only_uri(self.filename) if read_only else self.filename
        uri = target.startswith("file:")
        connection = _translated(
            lambda: sqlite3.connect(target, isolation_level=None, check_same_thread=False, uri=uri, timeout=0)
        )
        connection.row_factory = sqlite3.Row
        try:
            await self._unlocked(connection, self._connection_setup)  # the pragmas may wait for a lock too
            if _translated(lambda: connection.execute("PRAGMA query_only").fetchone()[0]):
                self.begin_statement = "BEGIN"
        except BaseException:
            connection.close()
            raise
        if self.begin_statement != "BEGIN IMMEDIATE":
            self.group_commit = False  # a connection that cannot write has nothing to commit
        self._connection = connection
        await self._post_connect()

    def _connection_setup(self, connection: sqlite3.Connection) -> None:
        for pragma, value in self.pragmas.items():
            if not (self.read_only and pragma in _FILE_PRAGMAS):
                connection.execute(f"PRAGMA {pragma}={value}").fetchall()
        if self.read_only:
            self.begin_statement = "BEGIN"  # SQLite refuses writes already; a reader never takes the write lock
            connection.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()  # a file that is not SQLite fails here
        elif not self.is_memory:
            _journal_mode_ensure(connection)

    async def close(self) -> None:
        self._closed = True
        if self._connection is not None and self._group is not None:
            self._group_close(self._connection, self._group)
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def db_create(self) -> None:
        pass  # SQLite creates the file on first connect.

    async def db_delete(self) -> None:
        raise OperationalError("daycare never deletes a database file")

    def acquire_connection(self) -> ConnectionWrapper[sqlite3.Connection]:
        return ConnectionWrapper(self._lock, self)

    def _in_transaction(self) -> TransactionContext:
        return _TransactionContext(self.transaction_class(self), self._lock)

    async def _run(self, call: Callable[[sqlite3.Connection], T]) -> T:
        # A statement runs without suspending when the connection is free, so a burst of queries
        # yields to the loop every YIELD_INTERVAL instead: other tasks never wait longer than that,
        # and a short burst pays nothing (a yield per statement cost ~6 us, a fifth of a commit).
        now = time.monotonic()
        if now - self._burst.yielded_at > YIELD_INTERVAL:
            self._burst.yielded_at = now
            await asyncio.sleep(0)
        async with self._lock:
            connection = self._connection
            if connection is None:
                await self.create_connection(with_db=True)
                connection = self._connection
                assert connection is not None
            if self._group is not None or isinstance(call, _GroupUnit):
                return await self._group_run(connection, call)
            # `_unlocked`, inline: this runs for every statement, and a coroutine per call costs.
            outside, changes = not connection.in_transaction, connection.total_changes
            try:
                return call(connection)
            except sqlite3.Error as exc:
                return await self._recover(connection, call, exc, outside, changes)

    async def _unlocked(self, connection: sqlite3.Connection, call: Callable[[sqlite3.Connection], T]) -> T:
        """Runs a driver call; while another connection holds a lock it needs, waits on the loop and retries."""
        outside, changes = not connection.in_transaction, connection.total_changes
        try:
            return call(connection)
        except sqlite3.Error as exc:
            return await self._recover(connection, call, exc, outside, changes)

    async def _recover(
        self,
        connection: sqlite3.Connection,
        call: Callable[[sqlite3.Connection], T],
        error: sqlite3.Error,
        outside: bool,
        changes: int,
    ) -> T:
        """What a failed driver call becomes: a read again with tolerant text decoding, a wait for
        another process's lock, or Tortoise's error."""
        if _text_undecodable(error) and connection.total_changes == changes:
            return _tolerant(connection, call)
        if not _lock_busy(error):
            raise _orm_error(error) from error
        return await self._lock_wait(connection, call, outside, error)

    async def _lock_wait(
        self,
        connection: sqlite3.Connection,
        call: Callable[[sqlite3.Connection], T],
        outside: bool,
        busy: sqlite3.Error,
    ) -> T:
        """Retries a busy call with an async backoff until it runs, or raises DatabaseLocked after the lock timeout.

        A call made outside a transaction is retried whole, after rolling back a transaction it left
        open (a busy COMMIT). Inside a transaction, SQLite undid only the busy statement, so it is
        retried while the transaction stands; a transaction SQLite rolled back, or whose read
        snapshot another process made stale, cannot succeed by waiting: TransactionConflict.
        """
        started = time.monotonic()
        delay = LOCK_RETRY_FIRST
        while True:
            if outside:
                if connection.in_transaction:
                    _translated(lambda: connection.execute("ROLLBACK"))
            elif busy.sqlite_errorcode == _SQLITE_BUSY_SNAPSHOT or not connection.in_transaction:
                raise TransactionConflict(
                    f"Another process wrote to {self.filename} while a transaction was open on it ({busy}).",
                    "The transaction cannot go on: roll it back and run it again.",
                ) from busy
            waited = time.monotonic() - started
            if waited >= self.lock_timeout:
                raise DatabaseLocked(
                    f"Another process holds the write lock on {self.filename}: gave up after waiting {waited:.1f} s.",
                    "Stop the other process (a second engine or upgrade, or a tool that has the file open),"
                    " or allow a longer wait with lock_timeout=<milliseconds> in the database URL.",
                ) from busy
            await asyncio.sleep(min(delay, self.lock_timeout - waited))
            delay = min(delay * 2, LOCK_RETRY_MAX)
            try:
                return call(connection)
            except sqlite3.Error as exc:
                if not _lock_busy(exc):
                    raise _orm_error(exc) from exc
                busy = exc

    # Group commit: units in savepoints inside one shared transaction (daycare.storage.db.group_commit).

    async def _statement(self, query: str, call: Callable[[sqlite3.Connection], T]) -> T:
        """Runs one statement for a caller outside a transaction; with group commit on, it runs in the
        shared transaction and returns once that committed (or raises why it was not kept)."""
        if not self.group_commit:
            return await self._run(call)
        kind = statement_kind(query)
        if kind is StatementKind.WRITE and not self._group_wanted():
            return await self._run(call)
        unit = _GroupUnit(call, kind)
        try:
            result = await self._run(unit)
        except BaseException:
            self._group_abandon(unit.membership)
            raise
        if unit.membership is not None:
            await self._group_wait(unit.membership)
        return result

    def _group_wanted(self) -> bool:
        """Whether a write or transaction starting now should share a COMMIT. Not when no group is open and the
        task that wrote last writes again: nobody else is writing, and it commits at once, as with group commit
        off. A write from another task means several are writing: from then on, they share."""
        task = asyncio.current_task()
        alone = task is self._last_writer and self._group is None
        self._last_writer = task
        return not alone

    async def _group_run(self, connection: sqlite3.Connection, call: Callable[[sqlite3.Connection], T]) -> T:
        """Runs `call` (the lock held) on a client with group commit on: a write joins the open group (or opens
        one), a read runs in the open group if there is one, anything else runs after the open group commits."""
        kind = call.kind if isinstance(call, _GroupUnit) else StatementKind.ALONE
        group = self._group
        if kind is StatementKind.ALONE or (group is None and kind is StatementKind.READ):
            if group is not None:
                await self._group_commit(connection, group)
            return await self._unlocked(connection, call)
        assert isinstance(call, _GroupUnit)
        if group is None:
            group = await self._group_open(connection)
        write = kind is StatementKind.WRITE
        savepoint = False
        try:
            if write:
                connection.execute(_UNIT_BEGIN)
                savepoint = True
            changes = connection.total_changes
            result: T
            try:
                result = call.call(connection)
            except sqlite3.Error as exc:
                result = await self._recover(connection, call.call, exc, False, changes)
            if write:
                connection.execute(_UNIT_END)
        except sqlite3.Error as exc:
            self._unit_undo(connection, group, savepoint, exc)
            raise _orm_error(exc) from exc
        except BaseException as error:
            self._unit_undo(connection, group, savepoint, error)
            raise
        call.membership = group.join()
        return result

    async def _group_open(self, connection: sqlite3.Connection) -> CommitGroup:
        """Begins the shared transaction (the lock held); another process's write lock is waited for on the loop."""
        await self._unlocked(connection, functools.partial(_statement_run, self.begin_statement))
        group = self._group = CommitGroup()
        return group

    async def _group_enter(self, connection: sqlite3.Connection) -> CommitGroup:
        """Starts an explicit transaction as a unit (the lock held): the open group, or a new one, and its savepoint."""
        group = self._group or await self._group_open(connection)
        try:
            _translated(lambda: connection.execute(_UNIT_BEGIN))
        except BaseException as error:
            self._unit_undo(connection, group, False, error)
            raise
        return group

    def _unit_undo(
        self, connection: sqlite3.Connection, group: CommitGroup, savepoint: bool, error: BaseException
    ) -> None:
        """Rolls a failed unit back alone. When SQLite rolled back the whole shared transaction instead (a full
        disk, say), every unit of the group is lost and their callers get `error`."""
        if savepoint and connection.in_transaction:
            try:
                connection.execute(_UNIT_UNDO)
                connection.execute(_UNIT_END)
            except sqlite3.Error:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
        if not connection.in_transaction:
            self._group = None
            group.finish(error)
        elif not group.led:  # nothing joined: end the empty transaction rather than hold the write lock
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
            self._group = None
            group.finish(None)

    async def _group_commit(self, connection: sqlite3.Connection, group: CommitGroup) -> None:
        """COMMITs the open group (the lock held) and wakes its callers; a failed COMMIT is rolled back, so
        nothing of the group is kept, and every caller gets the error."""
        try:
            await self._unlocked(connection, _group_end)  # a busy COMMIT keeps the transaction: it is retried
        except Exception as error:
            with contextlib.suppress(sqlite3.Error):
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
            self._group = None
            group.finish(error)
            return
        self._group = None
        group.finish(None)

    async def _group_wait(self, membership: Membership) -> None:
        """Returns once the COMMIT of the unit's group returned; raises why the group was not kept. The leader
        commits the group itself, after every task that is ready has had its turn to join it."""
        group = membership.group
        if membership.waiter is None:
            try:
                # Turns of the loop while they bring new units: a task that paused on its way (a burst's
                # yield) went behind the leader, and joins on the next turn.
                size = 0
                for _ in range(LEADER_TURNS):
                    if group.done or group.size == size:
                        break
                    size = group.size
                    await asyncio.sleep(0)
                if not group.done:
                    async with self._lock:
                        if not group.done:  # else an ALONE statement or close() committed it meanwhile
                            assert self._connection is not None  # close() finishes the open group
                            await self._group_commit(self._connection, group)
            except asyncio.CancelledError:
                self._group_abandon(membership)
                raise
        elif not group.done:
            await membership.waiter
        if group.error is not None:
            raise _group_failure(group.error)

    def _group_abandon(self, membership: Membership | None) -> None:
        """Hands the COMMIT to a task of its own when a leader will not make it (it was cancelled)."""
        if membership is None or membership.waiter is not None or membership.group.done:
            return
        task = asyncio.get_running_loop().create_task(self._group_commit_owed(membership.group))
        self._commit_tasks.add(task)
        task.add_done_callback(self._commit_tasks.discard)

    async def _group_commit_owed(self, group: CommitGroup) -> None:
        async with self._lock:
            if not group.done and self._connection is not None:
                await self._group_commit(self._connection, group)

    def _group_close(self, connection: sqlite3.Connection, group: CommitGroup) -> None:
        """At close: COMMITs the open group, unless a unit is still running in it (then nothing of it is kept)."""
        self._group = None
        if self._lock.locked():
            group.finish(OperationalError(f"the database {self.filename} was closed before these writes committed"))
            return
        try:
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            group.finish(exc)
            return
        group.finish(None)

    async def execute_insert(self, query: str, values: list[Any]) -> int:
        self.log.debug("%s: %s", query, values)
        return await self._statement(query, lambda c: c.execute(query, values).lastrowid or 0)

    async def execute_many(self, query: str, values: list[list[Any]]) -> None:
        self.log.debug("%s: %s", query, values)
        # One step per row, so that a retry after a busy lock inside a transaction never repeats a row.
        rows = [functools.partial(_row_run, query, row) for row in values]
        await self._statement(query, _Steps(rows, self.begin_statement))

    async def execute_query(self, query: str, values: list[Any] | None = None) -> tuple[int, Sequence[dict[str, Any]]]:
        self.log.debug("%s: %s", query, values)

        def run(connection: sqlite3.Connection) -> tuple[int, Sequence[dict[str, Any]]]:
            before = connection.total_changes
            rows = connection.execute(query, values or ()).fetchall()
            return (connection.total_changes - before) or len(rows), rows

        return await self._statement(query, run)

    async def execute_query_dict(self, query: str, values: list[Any] | None = None) -> list[dict[str, Any]]:
        self.log.debug("%s: %s", query, values)
        return await self._statement(query, lambda c: [dict(row) for row in c.execute(query, values or ()).fetchall()])

    async def execute_script(self, query: str) -> None:
        self.log.debug(query)
        await self._run(_Steps(_script_steps(query), self.begin_statement))


class _TransactionClient(DaycareSqliteClient, TransactionalDBClient):
    """The client seen inside a transaction: same connection, no outer lock."""

    def __init__(self, parent: DaycareSqliteClient) -> None:
        self.capabilities = parent.capabilities
        self.connection_name = parent.connection_name
        self.log = parent.log
        self.fetch_inserted = parent.fetch_inserted
        self.filename = parent.filename
        self.read_only = parent.read_only
        self.pragmas = parent.pragmas
        self.lock_timeout = parent.lock_timeout
        self.begin_statement = parent.begin_statement
        self.handler = parent.handler
        self._parent = parent
        self._connection = parent._connection
        self._closed = False
        self._lock = asyncio.Lock()
        self._burst = parent._burst  # one burst clock per connection: a transaction does not restart it
        self._finalized = False
        self._savepoint: str | None = None
        self._bound_loop = parent._bound_loop
        self.group_commit = False  # its statements run inside the unit; the parent runs the group
        self._group = None
        self._unit: CommitGroup | None = None  # the group this transaction is a unit of (group commit on)
        self.membership: Membership | None = None  # set when the unit joined its group at commit()

    def _in_transaction(self) -> TransactionContext:
        return NestedTransactionContext(type(self)(self))

    def _raw(self) -> sqlite3.Connection:
        if self._connection is None:
            raise TransactionManagementError("the database connection is closed")
        return self._connection

    async def begin(self) -> None:
        # Read at BEGIN: the parent learns whether its connection is query_only when it connects.
        parent = self._parent
        assert isinstance(parent, DaycareSqliteClient)
        self.begin_statement = statement = parent.begin_statement
        if parent.group_commit and parent._group_wanted():
            self._unit = await parent._group_enter(self._raw())
            return
        await self._unlocked(self._raw(), lambda c: c.execute(statement))

    async def commit(self) -> None:
        if self._finalized:
            raise TransactionManagementError("Transaction already finalised")
        if self._unit is not None:  # the unit joins its group; _TransactionContext waits for the COMMIT
            connection = self._raw()
            _translated(lambda: connection.execute(_UNIT_END))
            self.membership = self._unit.join()
            self._finalized = True
            return
        await self._unlocked(self._raw(), lambda c: c.execute("COMMIT"))  # a busy COMMIT keeps the transaction
        self._finalized = True

    async def rollback(self, error: BaseException | None = None) -> None:
        """Rolls the transaction back; with group commit, the unit alone (`error`, the cause, goes to the
        callers of the group if SQLite had rolled back the whole shared transaction)."""
        if self._finalized:
            raise TransactionManagementError("Transaction already finalised")
        connection = self._raw()
        if self._unit is not None:
            parent = self._parent
            assert isinstance(parent, DaycareSqliteClient)
            lost = error or OperationalError("a transaction that shared its COMMIT was rolled back")
            parent._unit_undo(connection, self._unit, True, lost)
            self._finalized = True
            return
        if connection.in_transaction:
            _translated(lambda: connection.execute("ROLLBACK"))
        self._finalized = True

    async def savepoint(self) -> None:
        self._savepoint = f"daycare_savepoint_{next(_savepoint_names)}"
        _translated(lambda: self._raw().execute(f"SAVEPOINT {self._savepoint}"))

    async def savepoint_rollback(self) -> None:
        if self._savepoint is None:
            raise TransactionManagementError("No savepoint to roll back to")
        _translated(lambda: self._raw().execute(f"ROLLBACK TO {self._savepoint}"))
        _translated(lambda: self._raw().execute(f"RELEASE {self._savepoint}"))
        self._savepoint = None

    async def release_savepoint(self) -> None:
        if self._savepoint is None:
            raise TransactionManagementError("No savepoint to release")
        _translated(lambda: self._raw().execute(f"RELEASE {self._savepoint}"))
        self._savepoint = None


DaycareSqliteClient.transaction_class = _TransactionClient


class _TransactionContext(TransactionContext):
    """Holds the client's lock for the whole transaction, so no other task's statement joins it."""

    client: _TransactionClient

    def __init__(self, client: _TransactionClient, lock: asyncio.Lock) -> None:
        self.client = client
        self._lock = lock
        self._handler: ConnectionHandler | None = None
        self._token: Any = None

    async def __aenter__(self) -> TransactionalDBClient:
        await self._lock.acquire()
        try:
            parent = self.client._parent
            if parent._connection is None:
                await parent.create_connection(with_db=True)
            self.client._connection = parent._connection
            self._handler = self.client.handler or get_connections()
            self._token = self._handler.set(self.client.connection_name, self.client)
            await self.client.begin()
        except BaseException:
            if self._token is not None and self._handler is not None:
                self._handler.reset(self._token)
            self._lock.release()
            raise
        return self.client

    async def __aexit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        client, parent = self.client, self.client._parent
        assert isinstance(parent, DaycareSqliteClient)
        try:
            if not client._finalized:
                if exc_type is None:
                    try:
                        await client.commit()
                    except BaseException as error:
                        # A failed COMMIT (a deferred foreign key, say) leaves the transaction open.
                        if not client._finalized:
                            await client.rollback(error)
                        raise
                elif exc_type is not TransactionManagementError or client._unit is not None:
                    await client.rollback(exc_val)  # a unit's savepoint must never stay open in the group
        except BaseException:
            parent._group_abandon(client.membership)
            raise
        finally:
            if self._handler is not None:
                self._handler.reset(self._token)
            self._lock.release()
        if client.membership is not None:  # group commit: returns once the COMMIT holding the unit returned
            await parent._group_wait(client.membership)


UNBOUND = ":unbound:"


class UnboundClient(DaycareSqliteClient):
    """The connection of Tortoise's fallback context: a query that reaches it forgot `using_db`.

    Tortoise looks up capabilities through the current context before `using_db` applies, so
    the process needs one; this one refuses to run anything, so a query can never silently
    land in another database.
    """

    async def create_connection(self, with_db: bool) -> None:
        raise OperationalError(
            "no database bound to this query: pass using_db=db.connection() (see daycare.storage.db.database)"
        )


def get_client_class(db_info: dict[str, Any]) -> type[DaycareSqliteClient]:
    """Tortoise's backend hook: the fallback context gets the refusing client."""
    return UnboundClient if db_info["credentials"]["file_path"] == UNBOUND else DaycareSqliteClient
