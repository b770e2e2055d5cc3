"""Compares a file's schema with the one its migrations should have produced.

Stricter than the legacy check: columns (type, not null, default, primary-key position),
indexes (columns, unique, partial WHERE), foreign keys, CHECK clauses, triggers and
AUTOINCREMENT are all compared. The one tolerated difference is the literal owner id in
the DEFAULT of `agents.user_id`, which the legacy bootstrap baked into every file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from daycare.storage.db.database import Database, database_close, database_open
from daycare.storage.migrations.executor import migration_apply
from daycare.storage.migrations.inspection import INTERNAL_TABLES, FileKind, file_inspect
from daycare.storage.migrations.loader import migrations_load

# agents.user_id defaults to the bootstrap owner's id, which differs in every file.
_VARYING_DEFAULTS = {("agents", "user_id")}
_SPACE = re.compile(r"\s+")


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

    columns: dict[str, tuple[Any, ...]]
    indexes: dict[str, tuple[Any, ...]]
    foreign_keys: frozenset[tuple[Any, ...]]
    checks: tuple[str, ...]
    triggers: dict[str, str]
    autoincrement: bool


@dataclass
class TableIssues:
    """The differences found in one table, as readable lines."""

    table: str
    lines: list[str] = field(default_factory=list)


async def schema_describe(conn: BaseDBAsyncClient) -> dict[str, TableSchema]:
    """Reads every user table of the file behind `conn` (Aerich's own table excluded)."""
    master = await conn.execute_query_dict(
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE type IN ('table', 'index', 'trigger')"
    )
    tables: dict[str, TableSchema] = {}
    for row in master:
        name = row["name"]
        if row["type"] != "table" or name in INTERNAL_TABLES or name.startswith("sqlite_"):
            continue
        sql = row["sql"] or ""
        tables[name] = TableSchema(
            columns=await _columns(conn, name),
            indexes=await _indexes(conn, name, master),
            foreign_keys=await _foreign_keys(conn, name),
            checks=_checks(sql),
            triggers={
                t["name"]: _normalized(t["sql"] or "")
                for t in master
                if t["type"] == "trigger" and t["tbl_name"] == name
            },
            autoincrement=bool(re.search(r"\bAUTOINCREMENT\b", sql, re.IGNORECASE)),
        )
    return tables


async def _columns(conn: BaseDBAsyncClient, table: str) -> dict[str, tuple[Any, ...]]:
    rows = await conn.execute_query_dict("SELECT * FROM pragma_table_xinfo(?)", [table])
    columns = {}
    for row in rows:
        if row["hidden"]:
            continue
        default = "<owner id>" if (table, row["name"]) in _VARYING_DEFAULTS else row["dflt_value"]
        columns[row["name"]] = (row["type"].upper(), bool(row["notnull"]), default, row["pk"])
    return columns


async def _indexes(conn: BaseDBAsyncClient, table: str, master: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    sql_by_name = {row["name"]: row["sql"] for row in master if row["type"] == "index"}
    indexes = {}
    for row in await conn.execute_query_dict("SELECT * FROM pragma_index_list(?)", [table]):
        name = row["name"]
        info = await conn.execute_query_dict("SELECT * FROM pragma_index_info(?)", [name])
        columns = tuple(str(column["name"]) for column in sorted(info, key=lambda c: c["seqno"]))
        where = ""
        sql = sql_by_name.get(name) or ""
        if row["partial"]:
            where = _normalized(re.split(r"\bWHERE\b", sql, maxsplit=1, flags=re.IGNORECASE)[1])
        # Autoindexes are numbered by creation order, so they are matched by what they cover.
        key = f"{'UNIQUE' if row['unique'] else 'INDEX'}({', '.join(columns)})" if name.startswith("sqlite_") else name
        indexes[key] = (bool(row["unique"]), columns, where)
    return indexes


async def _foreign_keys(conn: BaseDBAsyncClient, table: str) -> frozenset[tuple[Any, ...]]:
    groups: dict[int, list[dict[str, Any]]] = {}
    for row in await conn.execute_query_dict("SELECT * FROM pragma_foreign_key_list(?)", [table]):
        groups.setdefault(row["id"], []).append(row)
    keys = set()
    for rows in groups.values():
        rows.sort(key=lambda r: r["seq"])
        first = rows[0]
        keys.add(
            (
                first["table"],
                tuple(r["from"] for r in rows),
                tuple(r["to"] for r in rows),
                first["on_update"],
                first["on_delete"],
            )
        )
    return frozenset(keys)


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
    lines: list[str], what: str, expected: dict[str, Any], actual: dict[str, Any], render: Any = str
) -> None:
    for name in sorted(expected.keys() - actual.keys()):
        lines.append(f"missing {what} {name}: {render(expected[name])}")
    for name in sorted(actual.keys() - expected.keys()):
        lines.append(f"unexpected {what} {name}: {render(actual[name])}")
    for name in sorted(expected.keys() & actual.keys()):
        if expected[name] != actual[name]:
            lines.append(f"{what} {name} is {render(actual[name])}, expected {render(expected[name])}")


def schema_compare(
    expected: dict[str, TableSchema],
    actual: dict[str, TableSchema],
    tolerated_tables: frozenset[str] = frozenset(),
) -> list[TableIssues]:
    """Lists every difference, table by table; tables in `tolerated_tables` may be extra."""
    issues = []
    for table in sorted(expected.keys() - actual.keys()):
        issues.append(TableIssues(table, ["missing table"]))
    for table in sorted(actual.keys() - expected.keys() - tolerated_tables):
        issues.append(TableIssues(table, ["unexpected table"]))
    for table in sorted(expected.keys() & actual.keys()):
        want, have = expected[table], actual[table]
        lines: list[str] = []
        _named_diff(lines, "column", want.columns, have.columns, _column_text)
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


_expected_cache: dict[tuple[str, ...], dict[str, TableSchema]] = {}


async def schema_expected(versions: tuple[str, ...]) -> dict[str, TableSchema]:
    """The schema that applying `versions` to an empty file gives, built once per process."""
    if versions not in _expected_cache:
        by_version = {migration.version: migration for migration in migrations_load()}
        scratch = await database_open(":memory:")
        try:
            for version in versions:
                await migration_apply(scratch, by_version[version])
            _expected_cache[versions] = await schema_describe(scratch.connection())
        finally:
            await database_close(scratch)
    return _expected_cache[versions]


async def database_schema_check(db: Database) -> list[TableIssues]:
    """Compares the file with what its applied migrations should have made; empty means no drift.

    A legacy file not yet adopted is compared with the legacy final schema (the baseline).
    """
    conn = db.connection()
    state = await file_inspect(conn)
    versions = state.versions if state.kind is FileKind.AERICH else tuple(m.version for m in migrations_load()[:1])
    return schema_compare(await schema_expected(versions), await schema_describe(conn), state.legacy_leftovers)
