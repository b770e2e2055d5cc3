"""The PostgreSQL client: Tortoise's asyncpg client, with what Daycare's statements and errors need.

Tortoise's client answers `INSERT/UPDATE/DELETE ... RETURNING` with no rows (it only reads the
status line); this one fetches them, as the SQLite backend does. Connecting reports an
unreachable server, a missing database or a refused login as a StorageError saying what to do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import asyncpg
from tortoise.backends.asyncpg.client import AsyncpgDBClient, TransactionWrapper
from tortoise.backends.base.client import BaseDBAsyncClient, TransactionContext, TransactionContextPooled
from tortoise.backends.base_postgres.client import translate_exceptions
from tortoise.exceptions import BaseORMException, DBConnectionError

from daycare.storage.errors import DatabaseRefused, StorageError

if TYPE_CHECKING:
    from daycare.storage.db.database import DatabaseLocation

_RETURNING = " RETURNING "


class _RowsReturned:
    """`execute_query` that keeps the rows of a write with RETURNING."""

    @translate_exceptions
    async def execute_query(self, query: str, values: list[Any] | None = None) -> tuple[int, list[Any]]:
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
        from tortoise.backends.base.client import NestedTransactionContext

        return NestedTransactionContext(_Transaction(self))


class DaycarePostgresClient(_RowsReturned, AsyncpgDBClient):
    """Tortoise's asyncpg client with RETURNING rows kept."""

    def _in_transaction(self) -> TransactionContext:
        return TransactionContextPooled(_Transaction(self), self._pool_init_lock)


client_class = DaycarePostgresClient


def get_client_class(db_info: dict[str, Any]) -> type[DaycarePostgresClient]:
    return DaycarePostgresClient


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def postgres_connect(client: BaseDBAsyncClient, location: DatabaseLocation, *, create: bool) -> None:
    """Connects `client`'s pool; creates the URL's schema when missing and `create` is True.

    Raises StorageError (DatabaseRefused for a missing database or schema) saying what to do.
    """
    assert isinstance(client, DaycarePostgresClient) and location.server is not None
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
    except StorageError:
        await client.close()
        raise
    except (OSError, asyncpg.PostgresError, BaseORMException, TimeoutError) as exc:
        await client.close()
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
