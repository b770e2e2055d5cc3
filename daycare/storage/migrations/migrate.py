"""Brings a database up to date: the one decision shared by `daycare upgrade` and engine start."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from daycare.storage.db import sqlite
from daycare.storage.db.database import Database
from daycare.storage.migrations.adoption import adoption_check
from daycare.storage.migrations.backup import database_backup
from daycare.storage.migrations.baseline_v1 import legacy_steps_missing
from daycare.storage.migrations.executor import migration_apply
from daycare.storage.migrations.inspection import FileKind, FileState, file_inspect
from daycare.storage.migrations.legacy.catch_up import legacy_catch_up
from daycare.storage.migrations.loader import MigrationFile, migrations_load
from daycare.storage.migrations.progress import Progress, ProgressLog

log = logging.getLogger("daycare.storage")


@dataclass(frozen=True)
class DatabaseStatus:
    """What a file is and which migrations it has and lacks."""

    state: FileState
    applied: tuple[str, ...]
    pending: tuple[str, ...]


async def database_status(db: Database) -> DatabaseStatus:
    """Reads the file's kind and its applied and pending migrations, changing nothing."""
    state = await file_inspect(db.connection())
    known = [migration.version for migration in migrations_load()]
    pending = tuple(version for version in known if version not in state.versions)
    return DatabaseStatus(state, state.versions, pending)


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
) -> list[str]:
    """Checks the file, backs it up, then applies each pending migration atomically; returns them.

    A legacy file that lacks some of the 33 legacy steps (or a new file next to legacy data
    folders) first gets those steps, each in its own transaction; their names lead the result.
    A file that cannot be adopted raises DatabaseRefused before anything is written.
    `migrations` defaults to the files in migrations/models/. Long steps report to `progress`
    (default: quiet log lines).
    """
    conn = db.connection()
    state = await file_inspect(conn)
    migrations = migrations_load() if migrations is None else migrations
    await adoption_check(conn, state, migrations)
    pending = [migration for migration in migrations if migration.version not in state.versions]
    if not pending:
        await wal_ensure(db)
        return []
    if backup and db.path is not None and state.kind is not FileKind.FRESH:
        notify(f"Backup written to {await database_backup(db)}")
    applied: list[str] = []
    missing = await legacy_steps_missing(conn, state)
    if missing:
        notify(f"Running the {len(missing)} legacy step(s) this file lacks")
        applied += await legacy_catch_up(conn, missing, notify=notify, progress=progress or ProgressLog(log))
    elif state.kind is FileKind.LEGACY:
        notify(f"Adopting the legacy file as it is: all {len(state.legacy_steps)} legacy steps are recorded")
    for migration in pending:
        await migration_apply(db, migration)
        notify(f"Applied {migration.version}")
    await wal_ensure(db)
    return applied + [migration.version for migration in pending]
