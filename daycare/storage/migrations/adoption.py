"""Decides whether a file can be brought up to date, before anything in it changes."""

from __future__ import annotations

from collections.abc import Sequence

from tortoise.backends.base.client import BaseDBAsyncClient

from daycare.storage.errors import DatabaseRefused
from daycare.storage.migrations.inspection import INTERNAL_TABLES, FileKind, FileState
from daycare.storage.migrations.legacy import LEGACY_EXTRA_STEPS, LEGACY_STEPS
from daycare.storage.migrations.loader import MigrationFile
from daycare.storage.migrations.schema_check import schema_compare, schema_describe, schema_expected, schema_report


async def database_display(conn: BaseDBAsyncClient) -> str:
    """The path of the main database file behind `conn`, or :memory:."""
    rows = await conn.execute_query_dict("SELECT file FROM pragma_database_list WHERE name = 'main'")
    return str(rows[0]["file"]) if rows and rows[0]["file"] else ":memory:"


async def partial_legacy_check(location: str, state: FileState, migrations: Sequence[MigrationFile]) -> None:
    """Refuses a file with some legacy steps that holds tables no Daycare release made.

    Its missing steps then run (daycare.storage.migrations.legacy), and the baseline checks what they made.
    """
    known_steps = set(LEGACY_STEPS) | set(LEGACY_EXTRA_STEPS)
    expected = await schema_expected((migrations[0].version,))
    strangers = sorted(state.tables - set(expected) - INTERNAL_TABLES - state.legacy_leftovers)
    strangers = [table for table in strangers if not table.startswith("sqlite_")]
    if strangers or (state.legacy_steps and not state.legacy_steps & known_steps):
        found = f"tables no Daycare release made: {', '.join(strangers[:5])}" if strangers else "no known legacy step"
        raise DatabaseRefused(
            f"{location} has a _migrations table but is not a Daycare file ({found}).",
            "Point daycare at its own database with --db or DAYCARE_DB_URL; this file was left unchanged.",
        )


async def adoption_check(conn: BaseDBAsyncClient, state: FileState, migrations: Sequence[MigrationFile]) -> None:
    """Raises DatabaseRefused, with what was found and what to do, unless the file can be migrated."""
    location = await database_display(conn)
    if state.kind is FileKind.FRESH:
        return
    if state.kind is FileKind.FOREIGN:
        tables = sorted(state.tables - INTERNAL_TABLES)
        shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
        raise DatabaseRefused(
            f"{location} is a SQLite file of another application (tables: {shown}).",
            "Point daycare at its own database with --db or DAYCARE_DB_URL; this file was left unchanged.",
        )
    if state.kind is FileKind.LEGACY:
        if state.legacy_missing:
            await partial_legacy_check(location, state, migrations)
            return
        versions: tuple[str, ...] = (migrations[0].version,)
        what = "the legacy final schema"
    else:
        known = {migration.version for migration in migrations}
        unknown = [version for version in state.versions if version not in known]
        if unknown:
            raise DatabaseRefused(
                f"{location} was migrated by a newer Daycare: it records migrations this version "
                f"does not have ({', '.join(unknown)}).",
                "Upgrade daycare to open it; the file was left unchanged.",
            )
        versions = state.versions
        what = f"what its {len(versions)} applied migration(s) create"
    issues = schema_compare(await schema_expected(versions), await schema_describe(conn), state.legacy_leftovers)
    if issues:
        raise DatabaseRefused(
            f"The schema of {location} differs from {what}:",
            schema_report(issues),
            "The file was left unchanged. Restore it from a backup (<name>.bak-<time>), or repair the objects listed.",
        )
