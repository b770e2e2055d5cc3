"""Everything that only SQLite has, in one place: the rest of the package is dialect-neutral.

Repositories, migrations and the schema check call these functions instead of writing SQLite
SQL themselves; a PostgreSQL backend gets a module of its own with the same functions.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from pypika_tortoise.queries import Table
from pypika_tortoise.terms import Field, Term
from tortoise.backends.base.client import BaseDBAsyncClient


def insertion_order(table: Table) -> Term:
    """A column that orders a table's rows as they were inserted: SQLite's `rowid`.

    The legacy code broke ties between signal events of the same millisecond this way.
    """
    return Field("rowid", table=table)


_UNIQUE_FAILED = "UNIQUE constraint failed: "


def unique_violation_targets(message: str) -> frozenset[str]:
    """The `table.column` names of SQLite's "UNIQUE constraint failed: t.a, t.b" message; empty for others."""
    if not message.startswith(_UNIQUE_FAILED):
        return frozenset()
    return frozenset(name.strip() for name in message[len(_UNIQUE_FAILED) :].split(","))


# The database file and its upkeep: the migrations call these.


async def journal_wal(conn: BaseDBAsyncClient) -> None:
    """Puts the file in WAL mode; the mode is written into the file header, so it lasts."""
    await conn.execute_query("PRAGMA journal_mode=WAL")


async def vacuum_into(conn: BaseDBAsyncClient, target: str) -> None:
    """Writes a consistent copy of the whole database to `target` (a missing or empty file)."""
    await conn.execute_query("VACUUM INTO ?", [target])


async def checkpoint_complete(conn: BaseDBAsyncClient) -> bool:
    """Copies every committed change from the WAL into the file and empties the WAL.

    False when another connection's read kept part of it in the WAL. A file in rollback-journal
    mode has everything in the file already (True).
    """
    rows = await conn.execute_query_dict("PRAGMA wal_checkpoint(TRUNCATE)")
    busy, frames, copied = (int(value) for value in rows[0].values())
    return busy == 0 and frames == copied


async def integrity_problems(conn: BaseDBAsyncClient, limit: int = 10) -> list[str]:
    """What SQLite's full integrity check finds wrong with the file (at most `limit` lines); empty when sound."""
    rows = await conn.execute_query_dict(f"PRAGMA integrity_check({int(limit)})")
    problems = [str(next(iter(row.values()))) for row in rows]
    return [] if problems == ["ok"] else problems


async def database_file(conn: BaseDBAsyncClient) -> str | None:
    """The path of the main database file behind `conn`; None for an in-memory database."""
    rows = await conn.execute_query_dict("SELECT file FROM pragma_database_list WHERE name = 'main'")
    file = str(rows[0]["file"] or "").strip() if rows else ""
    return file or None


# The catalog, read into plain values that a schema comparison can use without knowing SQLite.


def internal_table(name: str) -> bool:
    """True for the tables SQLite keeps for itself (`sqlite_sequence`, `sqlite_stat1`, ...)."""
    return name.startswith("sqlite_")


async def table_names(conn: BaseDBAsyncClient) -> frozenset[str]:
    """Every table of the file, SQLite's own included."""
    rows = await conn.execute_query_dict("SELECT name FROM sqlite_master WHERE type = 'table'")
    return frozenset(str(row["name"]) for row in rows)


@dataclass(frozen=True)
class SchemaObject:
    """A table, index or trigger as the catalog stores it; `sql` is None for automatic indexes."""

    type: str
    name: str
    table: str
    sql: str | None


@dataclass(frozen=True)
class ColumnInfo:
    """One column: declared type (upper case), NOT NULL, DEFAULT text, position in the primary key (0 if none)."""

    name: str
    type: str
    notnull: bool
    default: str | None
    pk: int


@dataclass(frozen=True)
class IndexInfo:
    """One index: its columns in order, the WHERE text of a partial index, and whether SQLite made it itself."""

    name: str
    unique: bool
    columns: tuple[str, ...]
    where: str | None
    automatic: bool


@dataclass(frozen=True)
class ForeignKeyInfo:
    """One foreign key; `targets` holds None where the key names the parent's primary key implicitly."""

    table: str
    sources: tuple[str, ...]
    targets: tuple[str | None, ...]
    on_update: str
    on_delete: str


async def schema_objects(conn: BaseDBAsyncClient) -> list[SchemaObject]:
    """Every table, index and trigger of the file, in catalog order."""
    rows = await conn.execute_query_dict(
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE type IN ('table', 'index', 'trigger')"
    )
    return [SchemaObject(str(r["type"]), str(r["name"]), str(r["tbl_name"]), r["sql"]) for r in rows]


async def table_columns(conn: BaseDBAsyncClient, table: str) -> list[ColumnInfo]:
    """The visible columns of `table` in declaration order (hidden and generated ones left out)."""
    rows = await conn.execute_query_dict("SELECT * FROM pragma_table_xinfo(?)", [table])
    return [
        ColumnInfo(str(r["name"]), str(r["type"]).upper(), bool(r["notnull"]), r["dflt_value"], int(r["pk"]))
        for r in rows
        if not r["hidden"]
    ]


async def table_indexes(conn: BaseDBAsyncClient, table: str) -> list[IndexInfo]:
    """Every index of `table`, the automatic ones behind UNIQUE and PRIMARY KEY constraints included."""
    texts = await conn.execute_query_dict(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ?", [table]
    )
    sql_by_name = {str(row["name"]): str(row["sql"] or "") for row in texts}
    indexes = []
    for row in await conn.execute_query_dict("SELECT * FROM pragma_index_list(?)", [table]):
        name = str(row["name"])
        info = await conn.execute_query_dict("SELECT * FROM pragma_index_info(?)", [name])
        columns = tuple(str(column["name"]) for column in sorted(info, key=lambda c: c["seqno"]))
        where = None
        if row["partial"]:
            where = re.split(r"\bWHERE\b", sql_by_name.get(name, ""), maxsplit=1, flags=re.IGNORECASE)[1]
        indexes.append(IndexInfo(name, bool(row["unique"]), columns, where, name.startswith("sqlite_autoindex_")))
    return indexes


async def table_foreign_keys(conn: BaseDBAsyncClient, table: str) -> list[ForeignKeyInfo]:
    """The foreign keys of `table`, each with all of its columns in order."""
    groups: dict[int, list[dict[str, Any]]] = {}
    for row in await conn.execute_query_dict("SELECT * FROM pragma_foreign_key_list(?)", [table]):
        groups.setdefault(int(row["id"]), []).append(row)
    keys = []
    for rows in groups.values():
        rows.sort(key=lambda r: r["seq"])
        first = rows[0]
        keys.append(
            ForeignKeyInfo(
                str(first["table"]),
                tuple(str(r["from"]) for r in rows),
                tuple(r["to"] for r in rows),
                str(first["on_update"]),
                str(first["on_delete"]),
            )
        )
    return keys


def table_autoincrement(table_sql: str) -> bool:
    """Whether a CREATE TABLE statement declares AUTOINCREMENT (it changes how rowids are reused)."""
    return bool(re.search(r"\bAUTOINCREMENT\b", table_sql, re.IGNORECASE))


# Copying a whole database (`daycare db copy`): rows read in a stated order, in pages, and written in bulk.

# The column that orders a table's rows as they were inserted (see `insertion_order`).
INSERTION_ORDER = "rowid"
COPY_CACHE_KIB = 64 * 1024  # the page cache of a connection that writes a copy


def _copy_name(name: str) -> str:
    return name if name == INSERTION_ORDER else '"' + name.replace('"', '""') + '"'


async def copy_snapshot_begin(conn: BaseDBAsyncClient) -> None:
    """Nothing to do: on SQLite the open transaction's first read fixes what every later read of it sees."""


async def copy_rows_read(
    conn: BaseDBAsyncClient,
    table: str,
    columns: Sequence[str],
    order: Sequence[str],
    batch: int,
    text_columns: Collection[str] = (),
) -> AsyncGenerator[Sequence[Sequence[Any]], None]:
    """Every row of `table` sorted by `order` (columns, or INSERTION_ORDER), `batch` rows at a time.

    Each row holds `columns`, then the `order` columns not among them. Text sorts by its bytes (the
    schema's columns use SQLite's default collation), so `text_columns` needs nothing here. Pages
    are read by key (WHERE (order) > (last row's)): call it inside a transaction, with an `order`
    that is unique and never NULL.
    """
    extra = [name for name in order if name not in columns]
    selected = [*columns, *extra]
    positions = [selected.index(name) for name in order]
    listed = ", ".join(_copy_name(name) for name in selected)
    ordering = ", ".join(_copy_name(name) for name in order)
    head = f"SELECT {listed} FROM {_copy_name(table)}"
    tail = f"ORDER BY {ordering} LIMIT {int(batch)}"
    after = f"{head} WHERE ({ordering}) > ({', '.join('?' for _ in order)}) {tail}"
    _, rows = await conn.execute_query(f"{head} {tail}")
    while rows:
        yield cast(Sequence[Sequence[Any]], rows)  # the driver's rows: tuples that also have names
        if len(rows) < batch:
            return
        last = rows[-1]
        _, rows = await conn.execute_query(after, [last[position] for position in positions])


async def copy_write_begin(conn: BaseDBAsyncClient, tables: Sequence[str]) -> list[str]:
    """Prepares `tables` (parents before children) for a bulk write; returns the statements that
    copy_write_end runs once the rows are in.

    Foreign keys are checked at the commit, so rows may come before the rows they refer to (a user
    before its parent user). The indexes with SQL text (not those behind PRIMARY KEY and UNIQUE)
    are dropped, to be made again from that text: one sort after the rows are in is faster than
    updating an index row by row. Not those of a table whose foreign key refers to itself: while a
    deferred key is unresolved, SQLite looks up the children of every row inserted into the
    parent table, by their index, and only there do parent rows arrive after children. A larger
    page cache, for this connection, keeps the rest in memory. Run it inside the copy's
    transaction: a rollback undoes it all.
    """
    await conn.execute_query("PRAGMA defer_foreign_keys = ON")
    await conn.execute_query(f"PRAGMA cache_size = {-COPY_CACHE_KIB}")
    self_referring = {table for table in tables if any(k.table == table for k in await table_foreign_keys(conn, table))}
    marks = ", ".join("?" for _ in tables)
    indexes = await conn.execute_query_dict(
        f"SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        f" AND tbl_name IN ({marks}) ORDER BY tbl_name, name",
        list(tables),
    )
    dropped = [index for index in indexes if index["tbl_name"] not in self_referring]
    for index in dropped:
        await conn.execute_query(f"DROP INDEX {_copy_name(str(index['name']))}")
    return [str(index["sql"]) for index in dropped]


async def copy_write_end(conn: BaseDBAsyncClient, statements: Sequence[str]) -> None:
    """Runs what copy_write_begin returned."""
    for statement in statements:
        await conn.execute_script(statement)


async def copy_rows_write(
    conn: BaseDBAsyncClient, table: str, columns: Sequence[str], batches: AsyncIterator[Sequence[Sequence[Any]]]
) -> None:
    """Inserts every row of `batches` (values in the order of `columns`) into `table`, one executemany per batch."""
    listed = ", ".join(_copy_name(name) for name in columns)
    insert = f"INSERT INTO {_copy_name(table)} ({listed}) VALUES ({', '.join('?' for _ in columns)})"
    async for rows in batches:
        await conn.execute_many(insert, rows)  # type: ignore[arg-type]


async def copy_foreign_key_violation(
    conn: BaseDBAsyncClient, keys: Mapping[str, Sequence[str]]
) -> tuple[str, Sequence[Any], str] | None:
    """A row whose foreign key names no row, as (table, its `keys[table]` values, parent table); None if none."""
    rows = await conn.execute_query_dict("PRAGMA foreign_key_check")
    if not rows:
        return None
    table, rowid, parent = str(rows[0]["table"]), int(rows[0]["rowid"]), str(rows[0]["parent"])
    listed = ", ".join(_copy_name(name) for name in keys[table])
    found = await conn.execute_query_dict(f"SELECT {listed} FROM {_copy_name(table)} WHERE rowid = ?", [rowid])
    return table, list(found[0].values()) if found else [f"(rowid {rowid})"], parent


async def copy_sequence_read(conn: BaseDBAsyncClient, table: str, column: str) -> int:
    """The largest id an AUTOINCREMENT key of `table` has handed out (sqlite_sequence); 0 when none."""
    rows = await conn.execute_query_dict("SELECT seq FROM sqlite_sequence WHERE name = ?", [table])
    return int(rows[0]["seq"] or 0) if rows else 0


async def copy_sequence_set(conn: BaseDBAsyncClient, table: str, column: str, value: int) -> None:
    """Makes the next AUTOINCREMENT id of `table` larger than `value` (and than every id it holds)."""
    count, _ = await conn.execute_query("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?", [value, table])
    if not count and value > 0:
        await conn.execute_query("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", [table, value])
