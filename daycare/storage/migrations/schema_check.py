"""Compares a file's schema with the one its migrations should have produced (`daycare db check`).

Stricter than the legacy check: columns (type, not null, default, primary-key position),
indexes (columns, unique, partial WHERE), foreign keys, CHECK clauses, triggers and
AUTOINCREMENT are all compared (see `catalog`). What is tolerated is the baseline's rule: the
literal owner id in the DEFAULT of `agents.user_id`, which differs in every file, and the
tables of the extra legacy steps a file ran.
"""

from __future__ import annotations

from collections.abc import Sequence

from daycare.storage.db.database import MEMORY, Database, database_close, database_open
from daycare.storage.migrations.baseline_v1 import legacy_drift, schema_tolerant_compare
from daycare.storage.migrations.catalog import TableIssues, TableSchema, schema_describe, schema_report
from daycare.storage.migrations.executor import migration_apply
from daycare.storage.migrations.inspection import FileKind, file_inspect
from daycare.storage.migrations.loader import MigrationFile, migrations_load

__all__ = ["TableIssues", "baseline_schema_sql", "database_schema_check", "schema_expected", "schema_report"]


def baseline_schema_sql(migrations: Sequence[MigrationFile]) -> str:
    """The legacy final schema as the baseline migration (the first file) writes it."""
    return str(migrations[0].module.SCHEMA_SQL)


_expected_cache: dict[tuple[str, ...], dict[str, TableSchema]] = {}


async def schema_expected(versions: tuple[str, ...]) -> dict[str, TableSchema]:
    """The schema that applying `versions` to an empty file gives, built once per process."""
    if versions not in _expected_cache:
        by_version = {migration.version: migration for migration in migrations_load()}
        scratch = await database_open(MEMORY)
        try:
            for version in versions:
                await migration_apply(scratch, by_version[version])
            _expected_cache[versions] = await schema_describe(scratch.connection())
        finally:
            await database_close(scratch)
    return _expected_cache[versions]


async def database_schema_check(db: Database) -> list[TableIssues]:
    """Compares the file with what its applied migrations should have made; empty means no drift.

    A file not yet under Aerich is compared with the legacy final schema, as the baseline would.
    """
    conn = db.connection()
    state = await file_inspect(conn)
    if state.kind is not FileKind.AERICH:
        return await legacy_drift(conn, state, baseline_schema_sql(migrations_load()))
    expected = await schema_expected(state.versions)
    return schema_tolerant_compare(expected, await schema_describe(conn), state.legacy_steps)
