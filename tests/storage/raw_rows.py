"""Raw rows in tests, on SQLite and PostgreSQL alike.

Tests write plain SQL with `?` placeholders, as SQLite takes them; on PostgreSQL they become
`$1, $2, ...`. `sql_run` and `sql_rows` go through the Database's own connection (to plant a
row a repository must cope with, or to delete one behind a cache's back). `stored_rows` and
`stored_query` read through a separate connection (Python's sqlite3 on the file, a raw asyncpg
connection on the schema), so they see what was committed, independently of the package under test.
`stored_types`, `table_names`, `key_sequence` and `trigger_refusing` ask or do, in each dialect's own
words, what a test states once: how a value is stored, which tables exist, where a key sequence
stands, and an INSERT that fails in the middle of a transaction.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from daycare.storage.db.database import Database, postgres_connect_arguments
from daycare.storage.db.postgres import INSERTION_ORDER as POSTGRES_INSERTION_ORDER
from tests import sqlite_files


def sql_dialect(sql: str, dialect: str) -> str:
    """`sql` with its `?` placeholders (outside quoted text) written as the dialect takes them."""
    if dialect != "postgres":
        return sql
    out: list[str] = []
    quote: str | None = None
    number = 0
    for char in sql:
        if quote is not None:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "?":
            number += 1
            out.append(f"${number}")
            continue
        out.append(char)
    return "".join(out)


async def sql_run(db: Database, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> int:
    """Runs one statement on the database's own connection; how many rows it changed."""
    changed, _ = await db.connection().execute_query(sql_dialect(sql, db.dialect), list(params))
    return int(changed)


async def sql_rows(db: Database, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[dict[str, Any]]:
    """The rows of one query on the database's own connection, as dicts."""
    _, rows = await db.connection().execute_query(sql_dialect(sql, db.dialect), list(params))
    return [dict(row) for row in rows]


async def _server_connect(db: Database) -> Any:
    """A plain asyncpg connection to the database's PostgreSQL schema (as its search_path)."""
    schema = db.location.schema
    return await asyncpg.connect(
        **postgres_connect_arguments(db.location), server_settings={"search_path": schema} if schema else None
    )


async def stored_query(db: Database, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Runs one query through a separate plain connection (sqlite3 on the file, asyncpg on the schema)."""
    if db.dialect != "postgres":
        assert db.path is not None
        return sqlite_files.file_dicts(db.path, sql, params)
    connection = await _server_connect(db)
    try:
        return [dict(row) for row in await connection.fetch(sql_dialect(sql, "postgres"), *params)]
    finally:
        await connection.close()


async def stored_rows(db: Database, table: str, order_by: str) -> list[dict[str, Any]]:
    """Every row of `table` as stored (by `order_by`), read through a separate connection.

    PostgreSQL's extra `insertion_order` column (SQLite's rowid) is left out, so both dialects give the same rows.
    """
    rows = await stored_query(db, f"SELECT * FROM {table} ORDER BY {order_by}")
    for row in rows:
        row.pop(POSTGRES_INSERTION_ORDER, None)
    return rows


def _kind(value: Any) -> str:
    """SQLite's storage class of a value read from PostgreSQL, where the column's type decides it."""
    if value is None:
        return "null"
    if isinstance(value, bool | int):
        return "integer"
    if isinstance(value, float):
        return "real"
    if isinstance(value, bytes | bytearray | memoryview):
        return "blob"
    return "text"


async def stored_types(db: Database, table: str, column: str, order_by: str) -> list[str]:
    """How `column` is stored in each row (by `order_by`): SQLite's `typeof`, or its equivalent on PostgreSQL."""
    if db.dialect != "postgres":
        rows = await stored_query(db, f"SELECT typeof({column}) AS t FROM {table} ORDER BY {order_by}")
        return [row["t"] for row in rows]
    rows = await stored_query(db, f"SELECT {column} AS v FROM {table} ORDER BY {order_by}")
    return [_kind(row["v"]) for row in rows]


async def table_names(db: Database) -> set[str]:
    """The tables of the database (of its schema, on PostgreSQL)."""
    if db.dialect != "postgres":
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    else:
        sql = "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema()"
    return {row["name"] for row in await sql_rows(db, sql)}


async def trigger_refusing(
    db: Database, table: str, message: str, *, when: str | None = None, after: bool = False
) -> None:
    """Adds a trigger that makes every INSERT into `table` (where `when` holds, e.g. `NEW.id = 'x'`)
    fail with an integrity error saying `message`: a failure in the middle of a transaction."""
    name = f"refuse_{table}"
    moment = "AFTER" if after else "BEFORE"
    condition = f" WHEN ({when})" if when else ""
    if db.dialect != "postgres":
        await db.connection().execute_script(
            f"CREATE TRIGGER {name} {moment} INSERT ON {table}{condition} BEGIN SELECT RAISE(ABORT, '{message}'); END;"
        )
        return
    await db.connection().execute_script(
        f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"RAISE EXCEPTION '{message}' USING ERRCODE = 'integrity_constraint_violation'; END $$;\n"
        f"CREATE TRIGGER {name} {moment} INSERT ON {table} FOR EACH ROW{condition} EXECUTE FUNCTION {name}();"
    )


async def key_sequence(db: Database, table: str, column: str = "id") -> int | None:
    """The last value the table's generated key handed out (SQLite's AUTOINCREMENT sequence, PostgreSQL's
    identity), None when it handed out none."""
    if db.dialect != "postgres":
        rows = await stored_query(db, "SELECT seq FROM sqlite_sequence WHERE name = ?", (table,))
        return int(rows[0]["seq"]) if rows else None
    [row] = await stored_query(db, "SELECT pg_get_serial_sequence(?, ?) AS name", (table, column))
    [state] = await stored_query(db, f"SELECT last_value, is_called FROM {row['name']}")
    return int(state["last_value"]) if state["is_called"] else None
