"""Compares a database's schema with the one its migrations should have produced (`daycare db check`).

Stricter than the legacy check: columns (type, not null, default, primary-key position),
indexes (columns, unique, partial WHERE), foreign keys, CHECK clauses, triggers and
AUTOINCREMENT are all compared (see `catalog`). What is tolerated is the baseline's rule: the
literal owner id in the DEFAULT of `agents.user_id`, which differs in every file, and the
tables of the extra legacy steps a file ran.

The expected schema is what the applied migrations make of an empty database of the same
dialect: an in-memory SQLite database, or on PostgreSQL the session's temporary schema on the
same server, inside a transaction that is rolled back. It is built once per process (their
hooks and SQL; the aerich rows, which are not schema, are left out); on SQLite once per machine,
as `expected_cache` keeps it on disk for the next processes. On SQLite a check reads
each table's catalog text first (one query) and describes, on both sides, only the tables whose
text differs from the expected one's: SQLite derives a table's description from that text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tortoise.backends.base.client import BaseDBAsyncClient

from daycare.storage.db import postgres
from daycare.storage.db.database import Database, database_close, database_open
from daycare.storage.db.location import MEMORY, POSTGRES, SQLITE
from daycare.storage.db.dialect import dialect_of
from daycare.storage.migrations.baseline_v1 import legacy_drift, schema_tolerant_compare
from daycare.storage.migrations.catalog import (
    CatalogText,
    TableIssues,
    TableSchema,
    catalog_texts,
    schema_describe,
    schema_report,
)
from daycare.storage.migrations.executor import migration_run
from daycare.storage.migrations.expected_cache import cache_key, expected_cache_read, expected_cache_write
from daycare.storage.migrations.inspection import FileKind, file_inspect
from daycare.storage.migrations.loader import MigrationFile, migrations_load

__all__ = ["TableIssues", "baseline_schema_sql", "database_schema_check", "schema_expected", "schema_report"]


def baseline_schema_sql(migrations: Sequence[MigrationFile]) -> str:
    """The schema as the baseline migration (the first file) writes it: for SQLite, the legacy final schema."""
    return str(migrations[0].module.SCHEMA_SQL)


@dataclass
class _Expected:
    """What applying some versions to an empty database gives: each table's catalog text (None on PostgreSQL),
    and the tables described so far (SQLite: those a check needed; PostgreSQL: all)."""

    texts: dict[str, CatalogText] | None
    tables: dict[str, TableSchema]


_expected_cache: dict[tuple[str, str, tuple[str, ...]], _Expected] = {}


class _ScratchDone(Exception):
    """Ends the scratch transaction by rolling it back."""


async def _postgres_expected(conn: BaseDBAsyncClient, migrations: Sequence[MigrationFile]) -> _Expected:
    """What `migrations` make of an empty PostgreSQL schema: built in the session's temporary schema, rolled back."""
    described: dict[str, TableSchema] = {}
    try:
        async with conn._in_transaction() as scratch:
            await postgres.scratch_enter(scratch)
            for migration in migrations:
                await migration_run(scratch, migration)
            described = await schema_describe(scratch)
            raise _ScratchDone
    except _ScratchDone:
        pass
    return _Expected(None, described)


def _texts_differ(expected: dict[str, CatalogText] | None, actual: dict[str, CatalogText] | None) -> set[str] | None:
    """The tables whose catalog text differs between the two sides, one side's only included; None (all of them)
    when a side has no texts."""
    if expected is None or actual is None:
        return None
    return {name for name in expected.keys() | actual.keys() if expected.get(name) != actual.get(name)}


async def _expected_read(
    versions: tuple[str, ...], conn: BaseDBAsyncClient | None, actual: dict[str, CatalogText] | None
) -> _Expected:
    """What applying `versions` to an empty database gives, with at least the tables whose text differs from
    `actual`'s described (all of them when `actual` is None); built once per process, dialect and versions,
    and on SQLite taken from `expected_cache` (every table described) when another process built it."""
    dialect = SQLITE if conn is None else dialect_of(conn)
    # PostgreSQL prints defaults and predicates in its own words, which a server of another version may change.
    server = await postgres.server_version(conn) if conn is not None and dialect == POSTGRES else ""
    key = (dialect, server, versions)
    cached = _expected_cache.get(key)
    if cached is not None:
        if cached.texts is None:
            return cached
        wanted = _texts_differ(cached.texts, actual)
        if (cached.texts.keys() if wanted is None else wanted & cached.texts.keys()) <= cached.tables.keys():
            return cached
    by_version = {migration.version: migration for migration in migrations_load(dialect=dialect)}
    if conn is not None and dialect == POSTGRES:
        _expected_cache[key] = await _postgres_expected(conn, [by_version[version] for version in versions])
        return _expected_cache[key]
    # Another process may have built it already: the disk cache holds every table described.
    disk_key = cache_key([by_version[version] for version in versions]) if cached is None else None
    stored = expected_cache_read(disk_key) if disk_key is not None else None
    if stored is not None:
        _expected_cache[key] = _Expected(*stored)
        return _expected_cache[key]
    scratch = await database_open(MEMORY, querysets=False)  # the migrations run SQL and statements only
    try:
        for version in versions:
            # As on PostgreSQL, no aerich rows: they are not schema, and recording them would load Aerich.
            async with scratch.in_transaction() as scratch_conn:
                await migration_run(scratch_conn, by_version[version])
        texts = await catalog_texts(scratch.connection())
        assert texts is not None
        wanted = _texts_differ(texts, actual)
        # Each check describes on the scratch only the tables it compares; what earlier checks described stays.
        # An entry for the disk cache needs them all.
        only = None if wanted is None or disk_key is not None else wanted & texts.keys()
        if only is not None and cached is not None:
            only |= cached.tables.keys()
        _expected_cache[key] = _Expected(texts, await schema_describe(scratch.connection(), only))
    finally:
        await database_close(scratch)
    if disk_key is not None:
        expected_cache_write(disk_key, texts, _expected_cache[key].tables)
    return _expected_cache[key]


async def schema_expected(versions: tuple[str, ...], conn: BaseDBAsyncClient | None = None) -> dict[str, TableSchema]:
    """The schema that applying `versions` to an empty database gives, every table described.

    SQLite (no `conn`, or a SQLite one): an in-memory database. PostgreSQL: `conn`'s server,
    in a transaction that is rolled back (see the module's docstring).
    """
    return (await _expected_read(versions, conn, None)).tables


async def schema_drift(
    conn: BaseDBAsyncClient, versions: tuple[str, ...], legacy_steps: frozenset[str]
) -> list[TableIssues]:
    """How the database behind `conn` differs from what applying `versions` to an empty one gives; empty if not.

    On SQLite only the tables whose catalog text differs from the expected one's are described and
    compared, on both sides: a table with the same text is described the same (see `catalog`), so it
    could show no difference. The result is the one a comparison of every table gives.
    """
    actual_texts = await catalog_texts(conn)
    expected = await _expected_read(versions, conn, actual_texts)
    differing = _texts_differ(expected.texts, actual_texts)
    if differing is None:
        return schema_tolerant_compare(expected.tables, await schema_describe(conn), legacy_steps)
    assert expected.texts is not None and actual_texts is not None
    wanted = {name: expected.tables[name] for name in differing if name in expected.texts}
    actual = await schema_describe(conn, differing & actual_texts.keys())
    return schema_tolerant_compare(wanted, actual, legacy_steps)


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
    return await schema_drift(conn, state.versions, state.legacy_steps)
