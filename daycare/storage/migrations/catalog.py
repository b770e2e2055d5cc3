"""What a database holds, read without changing it, and how two schemas differ.

These are the mechanisms the migration rules use on both sides of a comparison: the same
description is read from the file and from the schema it should have. The rules themselves
(what a file must look like, what is tolerated) are in `baseline_v1` and `adoption`. The
catalog queries are in `daycare.storage.db.sqlite` and `daycare.storage.db.postgres`; each
function here reads the dialect of the connection it is given. On PostgreSQL, "the file" is
the current schema of the database.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from daycare.schema import LegacyMigration
from daycare.storage.db import postgres, sqlite
from daycare.storage.db.database import database_close, database_open
from daycare.storage.db.location import MEMORY, POSTGRES, SQLITE
from daycare.storage.db.dialect import dialect_of
from daycare.storage.db.statements import ModelTable, Statement
from daycare.storage.migrations.recorder import AERICH_TABLE, catalog_table_names, versions_applied

LEGACY_TABLE = "_migrations"  # the legacy runner's record of the steps it applied
_SPACE = re.compile(r"\s+")


def application_table(name: str, dialect: str = SQLITE) -> bool:
    """False for the tables the database keeps for itself (SQLite's) and for Aerich's bookkeeping table."""
    internal = postgres.internal_table if dialect == POSTGRES else sqlite.internal_table
    return not internal(name) and name != AERICH_TABLE


async def database_display(conn: BaseDBAsyncClient) -> str:
    """For messages: the path of the SQLite file behind `conn` (or :memory:), or the PostgreSQL URL and schema."""
    if dialect_of(conn) == POSTGRES:
        return await postgres.database_display(conn)
    return await sqlite.database_file(conn) or MEMORY


@dataclass(frozen=True)
class FileFacts:
    """What the migration rules look at: the application's tables and the migrations the file records."""

    tables: frozenset[str]  # the database's own tables and Aerich's left out
    legacy_steps: frozenset[str]  # names in the legacy `_migrations` table
    versions: tuple[str, ...]  # Aerich versions of this app, oldest first


# A statement rather than a queryset: querysets carry the dialect of the last database opened (see recorder).
_LEGACY_STEPS = Statement(lambda query: query.from_(ModelTable(LegacyMigration).table).select("name"))


async def file_facts(conn: BaseDBAsyncClient) -> FileFacts:
    """Reads the facts with read-only queries."""
    dialect = dialect_of(conn)
    every_table = await catalog_table_names(conn)
    tables = frozenset(name for name in every_table if application_table(name, dialect))
    steps: frozenset[str] = frozenset()
    if LEGACY_TABLE in tables:
        steps = frozenset(str(row["name"]) for row in await _LEGACY_STEPS.rows(conn))
    return FileFacts(tables, steps, tuple(await versions_applied(conn, every_table)))


def _normalized(sql: str) -> str:
    """SQL text with runs of whitespace collapsed and quotes around names dropped."""
    return _SPACE.sub(" ", sql.replace('"', "")).strip()


def _checks(table_sql: str) -> tuple[str, ...]:
    """The CHECK clauses of a CREATE TABLE statement, normalized."""
    found = []
    for match in re.finditer(r"\bCHECK\s*\(", table_sql, re.IGNORECASE):
        depth, start = 0, match.end() - 1
        for position in range(start, len(table_sql)):
            depth += {"(": 1, ")": -1}.get(table_sql[position], 0)
            if depth == 0:
                found.append(_normalized(table_sql[start + 1 : position]))
                break
    return tuple(found)


@dataclass(frozen=True)
class TableSchema:
    """Everything compared about one table."""

    columns: dict[str, tuple[Any, ...]]  # name -> (type, not null, default, primary-key position)
    indexes: dict[str, tuple[Any, ...]]  # name -> (unique, columns, partial WHERE)
    foreign_keys: frozenset[tuple[Any, ...]]
    checks: tuple[str, ...]
    triggers: dict[str, str]
    autoincrement: bool


@dataclass
class TableIssues:
    """The differences found in one table, as readable lines."""

    table: str
    lines: list[str] = field(default_factory=list)


def _index_key(index: sqlite.IndexInfo) -> str:
    """An index's name; automatic ones (behind PRIMARY KEY and UNIQUE) by what they cover, as their names vary."""
    if index.automatic:
        return f"{'UNIQUE' if index.unique else 'INDEX'}({', '.join(index.columns)})"
    return index.name


# A SQLite table's rows in sqlite_master, its own and those of its indexes and triggers, as (type, name, sql).
# SQLite derives everything schema_describe reads about a table (columns, indexes, foreign keys, CHECKs,
# triggers, AUTOINCREMENT) from these texts, so two tables with the same text are described the same.
CatalogText = frozenset[tuple[str, str, str | None]]


async def catalog_texts(conn: BaseDBAsyncClient) -> dict[str, CatalogText] | None:
    """Each application table's catalog text, in one query; None on PostgreSQL, whose catalog keeps no such text."""
    if dialect_of(conn) == POSTGRES:
        return None
    rows: dict[str, set[tuple[str, str, str | None]]] = {}
    for item in await sqlite.schema_objects(conn):
        rows.setdefault(item.table, set()).add((item.type, item.name, item.sql))
    return {name: frozenset(text) for name, text in rows.items() if application_table(name)}


async def schema_describe(conn: BaseDBAsyncClient, only: Collection[str] | None = None) -> dict[str, TableSchema]:
    """Reads every application table of the file behind `conn` (on PostgreSQL: of its current schema).

    `only`: the names of the tables to read, when not all of them are needed.
    """
    if dialect_of(conn) == POSTGRES:
        described = await _postgres_describe(conn)
        return described if only is None else {name: schema for name, schema in described.items() if name in only}
    objects = await sqlite.schema_objects(conn)
    tables: dict[str, TableSchema] = {}
    for table in objects:
        if table.type != "table" or not application_table(table.name) or (only is not None and table.name not in only):
            continue
        columns = await sqlite.table_columns(conn, table.name)
        indexes = {}
        for index in await sqlite.table_indexes(conn, table.name):
            # Automatic indexes are numbered by creation order, so they are matched by what they cover.
            indexes[_index_key(index)] = (index.unique, index.columns, _normalized(index.where or ""))
        keys = await sqlite.table_foreign_keys(conn, table.name)
        tables[table.name] = TableSchema(
            columns={c.name: (c.type, c.notnull, c.default, c.pk) for c in columns},
            indexes=indexes,
            foreign_keys=frozenset((k.table, k.sources, k.targets, k.on_update, k.on_delete) for k in keys),
            checks=_checks(table.sql or ""),
            triggers={
                t.name: _normalized(t.sql or "") for t in objects if t.type == "trigger" and t.table == table.name
            },
            autoincrement=sqlite.table_autoincrement(table.sql or ""),
        )
    return tables


async def _postgres_describe(conn: BaseDBAsyncClient) -> dict[str, TableSchema]:
    """The PostgreSQL side of schema_describe (one query per kind of object): CHECKs by name, AUTOINCREMENT as
    an identity key."""
    names = sorted(name for name in await postgres.table_names(conn) if application_table(name, POSTGRES))
    columns = await postgres.columns_by_table(conn)
    indexes = await postgres.indexes_by_table(conn)
    keys = await postgres.foreign_keys_by_table(conn)
    checks = await postgres.checks_by_table(conn)
    triggers = await postgres.triggers_by_table(conn)
    return {
        name: TableSchema(
            columns={c.name: (c.type, c.notnull, c.default, c.pk) for c in columns.get(name, [])},
            indexes={
                _index_key(index): (index.unique, index.columns, _normalized(index.where or ""))
                for index in indexes.get(name, [])
            },
            foreign_keys=frozenset(
                (k.table, k.sources, k.targets, k.on_update, k.on_delete) for k in keys.get(name, [])
            ),
            checks=tuple(f"{check}: {_normalized(expression)}" for check, expression in checks.get(name, [])),
            triggers={trigger: _normalized(sql) for trigger, sql in triggers.get(name, [])},
            autoincrement=postgres.identity_key(columns.get(name, [])),
        )
        for name in names
    }


async def schema_of_script(script: str) -> dict[str, TableSchema]:
    """The schema an SQL script gives an empty database, read the same way as a file's."""
    scratch = await database_open(MEMORY, querysets=False)  # a script and catalog reads only
    try:
        await scratch.connection().execute_script(script)
        return await schema_describe(scratch.connection())
    finally:
        await database_close(scratch)


def _foreign_key_text(key: tuple[Any, ...]) -> str:
    table, sources, targets, on_update, on_delete = key
    targets_text = ", ".join(str(t) for t in targets if t is not None)
    return f"({', '.join(sources)}) -> {table}({targets_text}) on update {on_update}, on delete {on_delete}"


def _column_text(spec: tuple[Any, ...]) -> str:
    kind, notnull, default, pk = spec
    parts = [kind or "(no type)"]
    if notnull:
        parts.append("NOT NULL")
    if default is not None:
        parts.append(f"DEFAULT {default}")
    if pk:
        parts.append(f"primary key #{pk}")
    return " ".join(parts)


def _index_text(spec: tuple[Any, ...]) -> str:
    unique, columns, where = spec
    text = f"{'UNIQUE ' if unique else ''}({', '.join(columns)})"
    return f"{text} WHERE {where}" if where else text


def _named_diff(
    lines: list[str],
    what: str,
    expected: Mapping[str, Any],
    actual: Mapping[str, Any],
    render: Callable[[Any], str] = str,
) -> None:
    for name in sorted(expected.keys() - actual.keys()):
        lines.append(f"missing {what} {name}: {render(expected[name])}")
    for name in sorted(actual.keys() - expected.keys()):
        lines.append(f"unexpected {what} {name}: {render(actual[name])}")
    for name in sorted(expected.keys() & actual.keys()):
        if expected[name] != actual[name]:
            lines.append(f"{what} {name} is {render(actual[name])}, expected {render(expected[name])}")


def _columns_compared(
    table: str, columns: dict[str, tuple[Any, ...]], varying: frozenset[tuple[str, str]]
) -> dict[str, tuple[Any, ...]]:
    """The columns with the DEFAULT of each `(table, column)` in `varying` replaced by one marker."""
    return {
        name: (kind, notnull, "<varies per file>", pk) if (table, name) in varying else (kind, notnull, default, pk)
        for name, (kind, notnull, default, pk) in columns.items()
    }


def schema_compare(
    expected: dict[str, TableSchema],
    actual: dict[str, TableSchema],
    tolerated_tables: frozenset[str] = frozenset(),
    varying_defaults: frozenset[tuple[str, str]] = frozenset(),
) -> list[TableIssues]:
    """Lists every difference, table by table.

    Tables in `tolerated_tables` may be extra; the DEFAULT of each `(table, column)` in
    `varying_defaults` may differ.
    """
    issues = []
    for table in sorted(expected.keys() - actual.keys()):
        issues.append(TableIssues(table, ["missing table"]))
    for table in sorted(actual.keys() - expected.keys() - tolerated_tables):
        issues.append(TableIssues(table, ["unexpected table"]))
    for table in sorted(expected.keys() & actual.keys()):
        want, have = expected[table], actual[table]
        want_columns = _columns_compared(table, want.columns, varying_defaults)
        have_columns = _columns_compared(table, have.columns, varying_defaults)
        lines: list[str] = []
        _named_diff(lines, "column", want_columns, have_columns, _column_text)
        if list(want.columns) != list(have.columns) and want.columns.keys() == have.columns.keys():
            lines.append(f"columns are in the order {', '.join(have.columns)}, expected {', '.join(want.columns)}")
        _named_diff(lines, "index", want.indexes, have.indexes, _index_text)
        for key in sorted(want.foreign_keys - have.foreign_keys, key=str):
            lines.append(f"missing foreign key {_foreign_key_text(key)}")
        for key in sorted(have.foreign_keys - want.foreign_keys, key=str):
            lines.append(f"unexpected foreign key {_foreign_key_text(key)}")
        if want.checks != have.checks:
            lines.append(f"CHECK constraints are {list(have.checks)}, expected {list(want.checks)}")
        _named_diff(lines, "trigger", want.triggers, have.triggers)
        if want.autoincrement != have.autoincrement:
            lines.append(f"AUTOINCREMENT is {'on' if have.autoincrement else 'off'}, expected the opposite")
        if lines:
            issues.append(TableIssues(table, lines))
    return issues


def schema_report(issues: list[TableIssues]) -> str:
    """A readable per-table report of schema differences."""
    out = []
    for issue in issues:
        out.append(f"  {issue.table}:")
        out.extend(f"    - {line}" for line in issue.lines)
    return "\n".join(out)
