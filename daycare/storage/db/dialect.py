"""What differs between the dialects, picked per connection or per query class.

SQL text that only one database understands lives in `daycare.storage.db.sqlite` and
`daycare.storage.db.postgres`; this module chooses between them.
"""

from __future__ import annotations

import re

from pypika_tortoise.dialects import PostgreSQLQuery, SQLLiteQuery
from pypika_tortoise.queries import Query, Table
from pypika_tortoise.terms import Term
from tortoise.backends.base.client import BaseDBAsyncClient

from daycare.storage.db import postgres, sqlite
from daycare.storage.db.location import POSTGRES


def dialect_of(conn: BaseDBAsyncClient) -> str:
    """ "sqlite" or "postgres": the dialect of the database behind `conn`."""
    return str(conn.capabilities.dialect)


def insertion_order(query: type[Query], table: Table) -> Term:
    """A term that orders `table`'s rows as they were inserted, in the dialect of `query`."""
    if issubclass(query, SQLLiteQuery):
        return sqlite.insertion_order(table)
    if issubclass(query, PostgreSQLQuery):
        return postgres.insertion_order(table)
    raise NotImplementedError(f"no insertion order for {query.__name__}")


_POSTGRES_UNIQUE_VIOLATION = "23505"  # SQLSTATE unique_violation
_POSTGRES_KEY = re.compile(r"^Key \((?P<columns>[^)]*)\)=")


def unique_violation_targets(error: BaseException) -> frozenset[str]:
    """The `table.column` names a UNIQUE (or primary key) violation reports; empty for any other error.

    SQLite names them in its message; PostgreSQL in the error's table name and `Key (...)=` detail.
    """
    seen: BaseException | None = error
    while seen is not None:
        if getattr(seen, "sqlstate", None) == _POSTGRES_UNIQUE_VIOLATION:
            match = _POSTGRES_KEY.match(str(getattr(seen, "detail", "") or ""))
            table = str(getattr(seen, "table_name", "") or "")
            if match is None or not table:
                return frozenset()
            return frozenset(f"{table}.{column.strip()}" for column in match["columns"].split(","))
        targets = sqlite.unique_violation_targets(str(seen))
        if targets:
            return targets
        seen = seen.__cause__
    return frozenset()


async def transaction_lock(conn: BaseDBAsyncClient, name: str) -> None:
    """Serializes the transactions on `conn` that take the lock `name` until they end, across processes.

    PostgreSQL: a transaction-level advisory lock (two engines on one database run transactions side by
    side). SQLite: nothing to do, since a write transaction (`BEGIN IMMEDIATE`) already excludes the others.
    """
    if dialect_of(conn) == POSTGRES:
        await conn.execute_query(postgres.ADVISORY_XACT_LOCK, list(postgres.transaction_lock_key(name)))
