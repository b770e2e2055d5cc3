"""Brings a database up to date: the one decision shared by `daycare upgrade` and engine start."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tortoise.exceptions import BaseORMException

from daycare.storage.db import sqlite
from daycare.storage.db.database import Database, database_failure, database_writable_check
from daycare.storage.migrations.adoption import adoption_check, daycare_file_check
from daycare.storage.migrations.baseline_v1 import legacy_steps_missing
from daycare.storage.migrations.executor import migration_apply
from daycare.storage.migrations.inspection import FileKind, FileState, file_inspect
from daycare.storage.migrations.legacy.catch_up import legacy_catch_up
from daycare.storage.migrations.legacy.context import LegacySkips
from daycare.storage.migrations.loader import MigrationFile, migration_versions, migrations_load
from daycare.storage.migrations.progress import Progress, ProgressLog
from daycare.storage.migrations.schema_check import TableIssues, database_schema_check
from daycare.storage.migrations.status import VersionsCompared, versions_compare

log = logging.getLogger("daycare.storage")


@dataclass(frozen=True)
class DatabaseStatus(VersionsCompared):
    """What a file is, and which migrations it records and lacks (`VersionsCompared`)."""

    state: FileState


async def database_status(db: Database) -> DatabaseStatus:
    """Reads the file's kind and its applied and pending migrations, changing nothing."""
    state = await file_inspect(db.connection())
    compared = versions_compare(state.versions, migration_versions(db.dialect))
    return DatabaseStatus(compared.applied, compared.pending, compared.unknown, state)


class CheckOutcome(enum.Enum):
    FRESH = "fresh"  # no tables yet: `daycare upgrade` creates them
    OLDER_LEGACY = "older legacy"  # a legacy file that stopped part-way: `daycare upgrade` brings it up to date
    MATCHES = "matches"  # the schema is what the migrations it records make
    DRIFT = "drift"  # the schema differs: `issues` says where


@dataclass(frozen=True)
class DatabaseCheck:
    """What `daycare db check` found."""

    status: DatabaseStatus
    outcome: CheckOutcome
    issues: list[TableIssues]


async def database_check(db: Database) -> DatabaseCheck:
    """Compares the file's schema with what the migrations it records make, changing nothing.

    Raises DatabaseRefused for a file that is not Daycare's or that a newer Daycare migrated.
    """
    status = await database_status(db)
    state = status.state
    if state.kind is FileKind.FRESH:
        return DatabaseCheck(status, CheckOutcome.FRESH, [])
    await daycare_file_check(db.connection(), state, migrations_load(dialect=db.dialect))
    if state.kind is FileKind.LEGACY and state.legacy_missing:
        return DatabaseCheck(status, CheckOutcome.OLDER_LEGACY, [])
    issues = await database_schema_check(db)
    return DatabaseCheck(status, CheckOutcome.DRIFT if issues else CheckOutcome.MATCHES, issues)


async def wal_ensure(db: Database) -> None:
    """Puts an accepted file in WAL, as the legacy code did on every open (legacy files already are)."""
    if db.path is not None:
        await sqlite.journal_wal(db.connection())


async def database_migrate(
    db: Database,
    *,
    backup: bool = True,
    notify: Callable[[str], None] = log.info,
    migrations: Sequence[MigrationFile] | None = None,
    progress: Progress | None = None,
    skipped: LegacySkips | None = None,
) -> list[str]:
    """Checks the file, backs it up, then applies each pending migration atomically; returns them.

    A legacy file that lacks some of the 33 legacy steps (or a new file next to legacy data
    folders) first gets those steps, each in its own transaction; their names lead the result.
    A file that cannot be adopted raises DatabaseRefused, and one that cannot be written
    DatabaseNotWritable, before anything is written (the backup included). `migrations`
    defaults to the chain of the database's dialect (migrations/models/ for SQLite,
    migrations/postgres/models/ for PostgreSQL). Long steps report to `progress` (default:
    quiet log lines); `skipped` counts the legacy data the import steps left out.
    """
    conn = db.connection()
    state = await file_inspect(conn)
    migrations = migrations_load(dialect=db.dialect) if migrations is None else migrations
    await adoption_check(conn, state, migrations)
    pending = [migration for migration in migrations if migration.version not in state.versions]
    if not pending:
        await wal_ensure(db)
        return []
    database_writable_check(db.path, outcome="Nothing was changed and no backup was written")
    # A fresh database (a new file, an empty PostgreSQL schema) holds nothing to lose; memory has nothing to copy.
    if backup and (db.path is not None or db.location.server is not None) and state.kind is not FileKind.FRESH:
        from daycare.storage.migrations.backup import database_backup  # only when something is pending

        notify((await database_backup(db)).line())
    applied: list[str] = []
    # No legacy PostgreSQL database exists: its chain starts from its own baseline, with none of the 33 steps.
    missing = await legacy_steps_missing(conn, state) if db.location.server is None else []
    if missing:
        notify(f"Running the {len(missing)} legacy step(s) this file lacks")
        applied += await legacy_catch_up(
            conn, missing, notify=notify, progress=progress or ProgressLog(log), skipped=skipped
        )
    elif state.kind is FileKind.LEGACY:
        notify(f"Adopting the legacy file as it is: all {len(state.legacy_steps)} legacy steps are recorded")
    for migration in pending:
        try:
            await migration_apply(db, migration)
        except BaseORMException as exc:
            outcome = f"Migration {migration.version} was rolled back; what was applied before it stays"
            failure = database_failure(db.path, exc, outcome=outcome) if db.path else None
            if failure is None:
                raise  # a defect of the migration, not of the file or the disk
            raise failure from exc
        notify(f"Applied {migration.version}")
    await wal_ensure(db)
    return applied + [migration.version for migration in pending]
