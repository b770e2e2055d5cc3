"""Decides whether a file can be brought up to date, before anything in it changes.

A file not yet under Aerich is the baseline's to judge (`baseline_v1.baseline_check`), so that
`daycare upgrade` refuses exactly what the baseline migration would. A file under Aerich is
compared with what its applied migrations make of an empty file.
"""

from __future__ import annotations

from collections.abc import Sequence

from tortoise.backends.base.client import BaseDBAsyncClient

from daycare.storage.errors import DatabaseRefused
from daycare.storage.migrations.baseline_v1 import baseline_check, schema_tolerant_compare
from daycare.storage.migrations.catalog import database_display, schema_describe, schema_report
from daycare.storage.migrations.inspection import FileKind, FileState
from daycare.storage.migrations.loader import MigrationFile
from daycare.storage.migrations.schema_check import baseline_schema_sql, schema_expected


async def adoption_check(conn: BaseDBAsyncClient, state: FileState, migrations: Sequence[MigrationFile]) -> None:
    """Raises DatabaseRefused, with what was found and what to do, unless the file can be migrated."""
    if state.kind is not FileKind.AERICH:
        await baseline_check(conn, state, baseline_schema_sql(migrations))
        return
    location = await database_display(conn)
    known = {migration.version for migration in migrations}
    unknown = [version for version in state.versions if version not in known]
    if unknown:
        raise DatabaseRefused(
            f"{location} was migrated by a newer Daycare: it records migrations this version "
            f"does not have ({', '.join(unknown)}).",
            "Upgrade daycare to open it; the file was left unchanged.",
        )
    expected = await schema_expected(state.versions)
    issues = schema_tolerant_compare(expected, await schema_describe(conn), state.legacy_steps)
    if issues:
        raise DatabaseRefused(
            f"The schema of {location} differs from what its {len(state.versions)} applied migration(s) create:",
            schema_report(issues),
            "The file was left unchanged. Restore it from a backup (<name>.bak-<time>), or repair the objects listed.",
        )
