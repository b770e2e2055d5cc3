"""Applies one migration file atomically: its hook, its SQL and its `aerich` row, or nothing."""

from __future__ import annotations

from tortoise.backends.base.client import BaseDBAsyncClient

from daycare.storage.db.database import Database
from daycare.storage.migrations.loader import MigrationFile
from daycare.storage.migrations.recorder import version_record


async def migration_apply(db: Database, migration: MigrationFile) -> None:
    """Runs `upgrade(conn)` and the SQL it returns in one transaction, then records the file."""
    async with db.in_transaction() as conn:
        await migration_run(conn, migration)
        await version_record(conn, migration)


async def migration_run(conn: BaseDBAsyncClient, migration: MigrationFile) -> None:
    """Runs `upgrade(conn)` and the SQL it returns, in the caller's transaction; records nothing.

    The schema check replays files this way on an empty database, whose schema is all it reads.
    """
    script = await migration.module.upgrade(conn)
    if script and script.strip():
        await conn.execute_script(script)
