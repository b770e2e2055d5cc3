"""Decides whether a file can be brought up to date, before anything in it changes.

A file not yet under Aerich is the baseline's to judge (`baseline_v1.baseline_check`), so that
`daycare upgrade` refuses exactly what the baseline migration would. A file under Aerich is
compared with what its applied migrations make of an empty file.

On PostgreSQL the unit is the current schema: an empty one gets the baseline, one with other
tables (a `_migrations` table without Aerich's included: there are no legacy PostgreSQL
databases) is refused, and one under Aerich is compared like a file.
"""

from __future__ import annotations

from collections.abc import Sequence

from tortoise.backends.base.client import BaseDBAsyncClient

from daycare.storage.db.dialect import dialect_of
from daycare.storage.db.location import POSTGRES
from daycare.storage.errors import DatabaseRefused
from daycare.storage.migrations.baseline_v1 import baseline_check
from daycare.storage.migrations.catalog import LEGACY_TABLE, database_display, schema_report
from daycare.storage.migrations.inspection import FileKind, FileState
from daycare.storage.migrations.loader import MigrationFile
from daycare.storage.migrations.schema_check import baseline_schema_sql, schema_drift
from daycare.storage.migrations.status import versions_compare


async def daycare_file_check(conn: BaseDBAsyncClient, state: FileState, migrations: Sequence[MigrationFile]) -> None:
    """Raises DatabaseRefused unless this version can read the file as Daycare's.

    Refused: another application's file, a `_migrations` table of no Daycare release (the
    baseline's rule), and a file migrated by a newer Daycare. A legacy file that stopped
    part-way passes: `daycare upgrade` brings it up to date.
    """
    # The file's name is read only for a refusal: an accepted file costs no query for it.
    if state.kind is FileKind.FOREIGN and dialect_of(conn) == POSTGRES:
        raise _postgres_foreign(await database_display(conn), state)
    if state.kind is FileKind.FOREIGN:
        tables = sorted(state.tables)
        shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
        location = await database_display(conn)
        raise DatabaseRefused(
            f"{location} is not a Daycare file: it is a SQLite file of another application (tables: {shown}).",
            "Point daycare at its own database with --db or DAYCARE_DB_URL; this file was left unchanged.",
        )
    if state.kind is FileKind.LEGACY and state.legacy_missing:
        await baseline_check(conn, state, baseline_schema_sql(migrations))  # refuses tables no release made
    unknown = versions_compare(state.versions, [migration.version for migration in migrations]).unknown
    if unknown:
        location = await database_display(conn)
        raise DatabaseRefused(
            f"{location} was migrated by a newer Daycare: it records migrations this version "
            f"does not have ({', '.join(unknown)}).",
            "Upgrade daycare to open it; the file was left unchanged.",
        )


def _postgres_foreign(location: str, state: FileState) -> DatabaseRefused:
    """The refusal of a PostgreSQL schema that holds tables but no Aerich record."""
    tables = sorted(state.tables)
    shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
    found = f"its schema holds tables of another application (tables: {shown})"
    if LEGACY_TABLE in state.tables:
        found = (
            f"its schema has a {LEGACY_TABLE} table but no Aerich record (tables: {shown}); Daycare never made"
            " such a PostgreSQL database, and only SQLite files have a legacy history to adopt"
        )
    return DatabaseRefused(
        f"{location} is not a Daycare database: {found}.",
        "Point daycare at its own database or schema (?schema= in the URL); nothing was changed.",
    )


async def adoption_check(conn: BaseDBAsyncClient, state: FileState, migrations: Sequence[MigrationFile]) -> None:
    """Raises DatabaseRefused, with what was found and what to do, unless the file can be migrated."""
    await daycare_file_check(conn, state, migrations)
    if state.kind is not FileKind.AERICH:
        if dialect_of(conn) != POSTGRES:  # an empty PostgreSQL schema is all its baseline takes
            await baseline_check(conn, state, baseline_schema_sql(migrations))
        return
    issues = await schema_drift(conn, state.versions, state.legacy_steps)
    if issues:
        location = await database_display(conn)
        advice = "The file was left unchanged. Restore it from a backup (<name>.bak-<time>)"
        if dialect_of(conn) == POSTGRES:
            advice = "Nothing was changed. Restore the schema from a backup (pg_dump)"
        advice += ", or repair the objects listed."
        raise DatabaseRefused(
            f"The schema of {location} differs from what its {len(state.versions)} applied migration(s) create:",
            schema_report(issues),
            advice,
        )
