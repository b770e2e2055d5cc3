"""Compares a database's schema with the one its migrations should have produced (`daycare db check`).

Stricter than the legacy check: columns (type, not null, default, primary-key position),
indexes (columns, unique, partial WHERE), foreign keys, CHECK clauses, triggers and
AUTOINCREMENT are all compared (see `catalog`). What is tolerated is the baseline's rule: the
literal owner id in the DEFAULT of `agents.user_id`, which differs in every file, and the
tables of the extra legacy steps a file ran.

The expected schema is what the applied migrations make of an empty database of the same
dialect: an in-memory SQLite database, or on PostgreSQL the session's temporary schema on the
same server, inside a transaction that is rolled back.
"""

from __future__ import annotations

from collections.abc import Sequence

from tortoise.backends.base.client import BaseDBAsyncClient

from daycare.storage.db import postgres
from daycare.storage.db.database import MEMORY, Database, database_close, database_open
from daycare.storage.db.dialect import POSTGRES, SQLITE, dialect_of
from daycare.storage.migrations.baseline_v1 import legacy_drift, schema_tolerant_compare
from daycare.storage.migrations.catalog import TableIssues, TableSchema, schema_describe, schema_report
from daycare.storage.migrations.executor import migration_apply
from daycare.storage.migrations.inspection import FileKind, file_inspect
from daycare.storage.migrations.loader import MigrationFile, migrations_load

__all__ = ["TableIssues", "baseline_schema_sql", "database_schema_check", "schema_expected", "schema_report"]


def baseline_schema_sql(migrations: Sequence[MigrationFile]) -> str:
    """The schema as the baseline migration (the first file) writes it: for SQLite, the legacy final schema."""
    return str(migrations[0].module.SCHEMA_SQL)


_expected_cache: dict[tuple[str, str, tuple[str, ...]], dict[str, TableSchema]] = {}


class _ScratchDone(Exception):
    """Ends the scratch transaction by rolling it back."""


async def _postgres_expected(conn: BaseDBAsyncClient, migrations: Sequence[MigrationFile]) -> dict[str, TableSchema]:
    """What `migrations` make of an empty PostgreSQL schema: built in the session's temporary schema, rolled back."""
    described: dict[str, TableSchema] = {}
    try:
        async with conn._in_transaction() as scratch:
            await postgres.scratch_enter(scratch)
            for migration in migrations:
                script = await migration.module.upgrade(scratch)
                if script and script.strip():
                    await scratch.execute_script(script)
            described = await schema_describe(scratch)
            raise _ScratchDone
    except _ScratchDone:
        pass
    return described


async def schema_expected(versions: tuple[str, ...], conn: BaseDBAsyncClient | None = None) -> dict[str, TableSchema]:
    """The schema that applying `versions` to an empty database gives, built once per process and dialect.

    SQLite (no `conn`, or a SQLite one): an in-memory database. PostgreSQL: `conn`'s server,
    in a transaction that is rolled back (see the module's docstring).
    """
    dialect = SQLITE if conn is None else dialect_of(conn)
    # PostgreSQL prints defaults and predicates in its own words, which a server of another version may change.
    server = await postgres.server_version(conn) if conn is not None and dialect == POSTGRES else ""
    key = (dialect, server, versions)
    if key not in _expected_cache:
        by_version = {migration.version: migration for migration in migrations_load(dialect=dialect)}
        if conn is not None and dialect == POSTGRES:
            _expected_cache[key] = await _postgres_expected(conn, [by_version[version] for version in versions])
            return _expected_cache[key]
        scratch = await database_open(MEMORY)
        try:
            for version in versions:
                await migration_apply(scratch, by_version[version])
            _expected_cache[key] = await schema_describe(scratch.connection())
        finally:
            await database_close(scratch)
    return _expected_cache[key]


async def database_schema_check(db: Database) -> list[TableIssues]:
    """Compares the database with what its applied migrations should have made; empty means no drift.

    A SQLite file not yet under Aerich is compared with the legacy final schema, as the baseline
    would; a PostgreSQL schema not under Aerich is empty (others are refused before this).
    """
    conn = db.connection()
    state = await file_inspect(conn)
    if state.kind is not FileKind.AERICH:
        if dialect_of(conn) == POSTGRES:
            return []
        return await legacy_drift(conn, state, baseline_schema_sql(migrations_load()))
    expected = await schema_expected(state.versions, conn)
    return schema_tolerant_compare(expected, await schema_describe(conn), state.legacy_steps)
