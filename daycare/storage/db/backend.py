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
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from itertools import count
from pathlib import Path
from typing import Any, TypeVar

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
    IntegrityError,
    OperationalError,
    TransactionManagementError,
)

T = TypeVar("T")

# Statements that would break the one-transaction-per-migration rule if a script issued them.
_TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "END", "ROLLBACK")
_savepoint_names = count()
YIELD_INTERVAL = 0.002  # seconds of back-to-back statements before the client yields to the loop


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


def _script_run(connection: sqlite3.Connection, script: str) -> None:
    """Runs a script atomically: inside the open transaction, or inside one of its own."""
    statements = list(script_statements(script))
    for statement in statements:
        if statement.split(None, 1)[0].upper().rstrip(";") in _TRANSACTION_CONTROL:
            raise OperationalError(
                f"SQL scripts must not manage transactions ({statement[:40]!r}); "
                "the migration runner already wraps each file in one transaction"
            )
    own_transaction = not connection.in_transaction
    if own_transaction:
        connection.execute("BEGIN")
    try:
        for statement in statements:
            connection.execute(statement)
    except BaseException:
        if own_transaction:
            connection.execute("ROLLBACK")
        raise
    if own_transaction:
        connection.execute("COMMIT")


def private_file_prepare(path: Path) -> None:
    """Creates a missing folder (0700) and database file (0600): the file holds private conversations."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True)
    if not path.exists():
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


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

    def __init__(self, file_path: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filename = file_path
        self.pragmas: dict[str, Any] = {
            key: value for key, value in kwargs.items() if key not in ("connection_name", "fetch_inserted")
        }
        self.pragmas.setdefault("foreign_keys", "ON")
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
        if not self.is_memory and not self.filename.startswith("file:"):
            private_file_prepare(Path(self.filename))
        uri = self.filename.startswith("file:")
        connection = _translated(
            lambda: sqlite3.connect(self.filename, isolation_level=None, check_same_thread=False, uri=uri)
        )
        connection.row_factory = sqlite3.Row
        try:
            _translated(lambda: self._connection_setup(connection))
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        await self._post_connect()

    def _connection_setup(self, connection: sqlite3.Connection) -> None:
        for pragma, value in self.pragmas.items():
            connection.execute(f"PRAGMA {pragma}={value}").fetchall()
        if not self.is_memory:
            _journal_mode_ensure(connection)

    async def close(self) -> None:
        self._closed = True
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
            try:
                return call(connection)
            except sqlite3.IntegrityError as exc:
                raise IntegrityError(exc) from exc
            except sqlite3.Error as exc:
                raise OperationalError(exc) from exc

    async def execute_insert(self, query: str, values: list[Any]) -> int:
        self.log.debug("%s: %s", query, values)
        return await self._run(lambda c: c.execute(query, values).lastrowid or 0)

    async def execute_many(self, query: str, values: list[list[Any]]) -> None:
        self.log.debug("%s: %s", query, values)

        def run(connection: sqlite3.Connection) -> None:
            if connection.in_transaction:
                connection.executemany(query, values)
                return
            connection.execute("BEGIN")
            try:
                connection.executemany(query, values)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

        await self._run(run)

    async def execute_query(self, query: str, values: list[Any] | None = None) -> tuple[int, Sequence[dict[str, Any]]]:
        self.log.debug("%s: %s", query, values)

        def run(connection: sqlite3.Connection) -> tuple[int, Sequence[dict[str, Any]]]:
            before = connection.total_changes
            rows = connection.execute(query, values or ()).fetchall()
            return (connection.total_changes - before) or len(rows), rows

        return await self._run(run)

    async def execute_query_dict(self, query: str, values: list[Any] | None = None) -> list[dict[str, Any]]:
        self.log.debug("%s: %s", query, values)
        return await self._run(lambda c: [dict(row) for row in c.execute(query, values or ()).fetchall()])

    async def execute_script(self, query: str) -> None:
        self.log.debug(query)
        await self._run(lambda c: _script_run(c, query))


class _TransactionClient(DaycareSqliteClient, TransactionalDBClient):
    """The client seen inside a transaction: same connection, no outer lock."""

    def __init__(self, parent: DaycareSqliteClient) -> None:
        self.capabilities = parent.capabilities
        self.connection_name = parent.connection_name
        self.log = parent.log
        self.fetch_inserted = parent.fetch_inserted
        self.filename = parent.filename
        self.pragmas = parent.pragmas
        self.handler = parent.handler
        self._parent = parent
        self._connection = parent._connection
        self._closed = False
        self._lock = asyncio.Lock()
        self._burst = parent._burst  # one burst clock per connection: a transaction does not restart it
        self._finalized = False
        self._savepoint: str | None = None
        self._bound_loop = parent._bound_loop

    def _in_transaction(self) -> TransactionContext:
        return NestedTransactionContext(type(self)(self))

    def _raw(self) -> sqlite3.Connection:
        if self._connection is None:
            raise TransactionManagementError("the database connection is closed")
        return self._connection

    async def begin(self) -> None:
        _translated(lambda: self._raw().execute("BEGIN"))

    async def commit(self) -> None:
        if self._finalized:
            raise TransactionManagementError("Transaction already finalised")
        _translated(lambda: self._raw().execute("COMMIT"))
        self._finalized = True

    async def rollback(self) -> None:
        if self._finalized:
            raise TransactionManagementError("Transaction already finalised")
        connection = self._raw()
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
        try:
            if not self.client._finalized:
                if exc_type is None:
                    try:
                        await self.client.commit()
                    except BaseException:
                        # A failed COMMIT (a deferred foreign key, say) leaves the transaction open.
                        await self.client.rollback()
                        raise
                elif exc_type is not TransactionManagementError:
                    await self.client.rollback()
        finally:
            if self._handler is not None:
                self._handler.reset(self._token)
            self._lock.release()


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
