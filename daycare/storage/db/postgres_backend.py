"""The PostgreSQL client: Tortoise's asyncpg client, with what Daycare's statements and errors need.

Tortoise's client answers `INSERT/UPDATE/DELETE ... RETURNING` with no rows (it only reads the
status line); this one fetches them, as the SQLite backend does. Connecting reports an
unreachable server, a missing database or a refused login as a StorageError saying what to do.

Two more departures from Tortoise's client, as in the SQLite backend:
- a transaction registers on the connection handler of its own Database (`handler`, set by
  `database_open`), so the repositories' `db.connection()` inside `db.in_transaction()` runs on
  the transaction's connection; Tortoise's registers it on the ambient context instead.
- a connection that served a statement or a committed transaction without error goes back to a
  free list of this client, not through asyncpg's pool: its release (a task, a shield, and the
  reset query `pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` sent on every
  release) cost more than a whole indexed read (bench/w1.py --db). Daycare leaves no session
  state on these connections, as the SQLite backend's one connection never resets either: the
  engine's advisory lock (and any LISTEN) lives on a connection of its own (db/lock.py), and SET
  is only ever SET LOCAL. A connection that failed, was cancelled or is still in a transaction
  goes back through the pool, which rolls it back and resets it.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import asyncpg
from tortoise.backends.asyncpg.client import AsyncpgDBClient, TransactionWrapper
from tortoise.backends.base.client import BaseDBAsyncClient, NestedTransactionContext, TransactionContext
from tortoise.backends.base_postgres.client import translate_exceptions
from tortoise.connection import ConnectionHandler, get_connections
from tortoise.exceptions import BaseORMException, DBConnectionError, OperationalError, TransactionManagementError

from daycare.storage.errors import DatabaseRefused, StorageError

if TYPE_CHECKING:
    from daycare.storage.db.location import DatabaseLocation

_RETURNING = " RETURNING "


class TextWithNul(ValueError):
    """A text value holds a NUL character, which PostgreSQL's text type cannot store."""


def _nul_named(exc: OperationalError) -> Exception:
    """TextWithNul for the server's refusal of a NUL in text (Tortoise raises it as OperationalError); else `exc`."""
    cause = exc.__cause__
    if isinstance(cause, asyncpg.CharacterNotInRepertoireError) and "0x00" in str(cause):
        return TextWithNul(
            "A text value holds a NUL character (\\x00), which PostgreSQL cannot store; nothing was written."
            " Remove the character (SQLite files can hold it, PostgreSQL cannot)."
        )
    return exc


class _RowsReturned:
    """`execute_query` that keeps the rows of a write with RETURNING, and names a NUL in text."""

    async def execute_query(self, query: str, values: list[Any] | None = None) -> tuple[int, list[Any]]:
        try:  # a try costs nothing on this hot path; a context manager per statement would
            result: tuple[int, list[Any]] = await self._query_run(query, values)
            return result
        except OperationalError as exc:
            raise _nul_named(exc) from exc.__cause__

    async def execute_insert(self, query: str, values: list[Any]) -> Any:
        client: Any = super()
        try:
            return await client.execute_insert(query, values)
        except OperationalError as exc:
            raise _nul_named(exc) from exc.__cause__

    @translate_exceptions
    async def _query_run(self, query: str, values: list[Any] | None) -> tuple[int, list[Any]]:
        client: Any = self
        async with client.acquire_connection() as connection:
            params = [query, *values] if values else [query]
            if query.lstrip()[:6].upper() in ("INSERT", "UPDATE", "DELETE"):
                if _RETURNING in query.upper():
                    rows = await connection.fetch(*params)
                    return len(rows), rows
                status = await connection.execute(*params)
                try:
                    return int(status.rsplit(" ", 1)[1]), []
                except (IndexError, ValueError):
                    return 0, []
            rows = await connection.fetch(*params)
            return len(rows), rows


class _Transaction(_RowsReturned, TransactionWrapper):
    def _in_transaction(self) -> TransactionContext:
        return NestedTransactionContext(_Transaction(self))


class DaycarePostgresClient(_RowsReturned, AsyncpgDBClient):
    """Tortoise's asyncpg client with RETURNING rows kept, transactions seen by their Database, and
    clean connections reused without asyncpg's release; once closed, it never reconnects."""

    _closed = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Set by database_open; None when Aerich or Tortoise's globals own this client.
        self.handler: ConnectionHandler | None = None
        self._idle: list[Any] = []  # clean connections taken from the pool, free for the next statement
        self._waiting = 0  # tasks waiting for the pool: a clean connection goes back to it for them

    async def create_connection(self, with_db: bool) -> None:
        # Tortoise's pool wrapper reconnects a closed client on its next query; a closed Database must stay closed.
        if self._closed:
            raise OperationalError(f"the database {self.database} is closed")
        await super().create_connection(with_db)

    async def _close(self) -> None:
        self._closed = True
        await self._idle_release()  # the pool's close waits for every connection taken from it
        await super()._close()

    async def _expire_connections(self) -> None:
        await self._idle_release()
        await super()._expire_connections()

    def acquire_connection(self) -> Any:
        return _Taken(self)

    def _in_transaction(self) -> TransactionContext:
        return _TransactionContext(_Transaction(self), self)

    async def connection_take(self) -> Any:
        """A free connection, else one from the pool (connecting first if needed)."""
        while self._idle:
            connection = self._idle.pop()
            if _open(connection):
                return connection
            # The server ended it while it was free (a restart, an idle timeout): the pool took it back.
        if self._pool is None:
            async with self._pool_init_lock:  # as Tortoise's pool wrapper: one task creates the pool
                if self._pool is None:
                    await self.create_connection(with_db=True)
        assert self._pool is not None
        self._waiting += 1
        try:
            return await self._pool.acquire()
        finally:
            self._waiting -= 1

    async def connection_give(self, connection: Any, *, clean: bool) -> None:
        """Takes back a connection: a clean one, idle and outside a transaction, goes on the free
        list unless a task waits for the pool; any other goes through the pool's release and reset."""
        pool = self._pool
        if pool is None:
            return  # closed meanwhile: the pool's close has terminated it
        if clean and not self._waiting and _open(connection) and not connection.is_in_transaction():
            self._idle.append(connection)
            return
        await pool.release(connection)

    async def _idle_release(self) -> None:
        idle, self._idle = self._idle, []
        if self._pool is not None:
            for connection in idle:
                await self._pool.release(connection)


def _open(connection: Any) -> bool:
    """Whether a connection taken from the pool is still open (the pool takes back, and detaches, one that closed)."""
    try:
        return not connection.is_closed()
    except asyncpg.InterfaceError:
        return False


class _Taken:
    """`async with client.acquire_connection()`: a connection for one statement, given back clean
    only when the statement raised nothing."""

    __slots__ = ("client", "connection")

    def __init__(self, client: DaycarePostgresClient) -> None:
        self.client = client
        self.connection: Any = None

    async def __aenter__(self) -> Any:
        self.connection = await self.client.connection_take()
        return self.connection

    async def __aexit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        await self.client.connection_give(self.connection, clean=exc_type is None)


class _TransactionContext(TransactionContext):
    """A transaction on one connection of `parent`, registered on the parent's handler for its duration."""

    client: _Transaction

    def __init__(self, client: _Transaction, parent: DaycarePostgresClient) -> None:
        self.client = client
        self.parent = parent
        self._handler: ConnectionHandler | None = None
        self._token: Any = None

    async def __aenter__(self) -> _Transaction:
        connection = await self.parent.connection_take()
        self.client._connection = connection
        try:
            self._handler = self.parent.handler or get_connections()
            self._token = self._handler.set(self.client.connection_name, self.client)
            await self.client.begin()
        except BaseException:
            if self._handler is not None:
                self._handler.reset(self._token)
            await self.parent.connection_give(connection, clean=False)
            raise
        return self.client

    async def __aexit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        clean = False
        try:
            if not self.client._finalized:
                if exc_type is None:
                    await self.client.commit()
                    clean = True
                elif exc_type is not TransactionManagementError:  # a failed transaction cannot roll back
                    # A lost session's transaction is gone already: the server rolled it back.
                    with contextlib.suppress(asyncpg.InterfaceError):
                        await self.client.rollback()
        finally:
            assert self._handler is not None
            self._handler.reset(self._token)
            await self.parent.connection_give(self.client._connection, clean=clean)


client_class = DaycarePostgresClient


def get_client_class(db_info: dict[str, Any]) -> type[DaycarePostgresClient]:
    return DaycarePostgresClient


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def postgres_connect(
    client: BaseDBAsyncClient, location: DatabaseLocation, *, create: bool, handler: ConnectionHandler | None = None
) -> None:
    """Connects `client`'s pool; creates the URL's schema when missing and `create` is True.

    `handler` is the connection handler of the client's Database: its transactions register there.
    Raises StorageError (DatabaseRefused for a missing database or schema) saying what to do.
    """
    assert isinstance(client, DaycarePostgresClient) and location.server is not None
    client.handler = handler
    where = location.server.display
    try:
        await client.create_connection(with_db=True)
        schema = location.schema
        if schema is not None:
            found = await client.execute_query_dict("SELECT 1 FROM pg_namespace WHERE nspname = $1", [schema])
            if not found and not create:
                raise DatabaseRefused(
                    f"The schema {schema} does not exist in {where}.",
                    "Check the URL's ?schema=, or run daycare upgrade to create it.",
                )
            if not found:
                await client.execute_script(f"CREATE SCHEMA IF NOT EXISTS {_quoted(schema)}")
    except (OSError, asyncpg.PostgresError, BaseORMException, TimeoutError) as exc:
        raise postgres_connect_failure(location, exc) from None


def postgres_connect_failure(location: DatabaseLocation, exc: BaseException) -> StorageError:
    """The error to show when connecting to the PostgreSQL database at `location` failed with `exc`."""
    assert location.server is not None
    server = location.server
    where = server.display
    cause = exc.__cause__ if isinstance(exc, DBConnectionError) and exc.__cause__ is not None else exc
    if isinstance(cause, asyncpg.InvalidCatalogNameError):
        host = f" -h {server.host}" if server.host else ""
        port = f" -p {server.port}" if server.port else ""
        user = f" -U {server.user}" if server.user else ""
        return DatabaseRefused(
            f"The database {server.database} does not exist on the PostgreSQL server ({where}).",
            f"Create it first (createdb{host}{port}{user} {server.database}), then run the command again.",
        )
    if isinstance(cause, (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)):
        return StorageError(
            f"The PostgreSQL server ({where}) refused the login: {cause}.",
            "Check the user and password in the URL, and the server's pg_hba.conf.",
        )
    if isinstance(cause, (OSError, TimeoutError)):
        return StorageError(
            f"Cannot reach the PostgreSQL server at {where}: {cause}.",
            "Check that the server runs and that the URL's host and port are right.",
        )
    return StorageError(f"Cannot open the PostgreSQL database {where}: {cause}.")
