"""A consistent copy of the database next to it, written before any change."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from daycare.storage.db import sqlite
from daycare.storage.db.database import Database
from daycare.storage.errors import StorageError


def backup_path(path: Path, now: datetime | None = None) -> Path:
    """`<name>.bak-<UTC timestamp>`, with a counter if that name is taken."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    candidate = path.with_name(f"{path.name}.bak-{stamp}")
    counter = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.bak-{stamp}-{counter}")
        counter += 1
    return candidate


async def database_backup(db: Database) -> Path:
    """Writes the backup through the ORM connection (SQLite: VACUUM INTO); private (0600) like the file."""
    if db.path is None:
        raise StorageError("An in-memory database has no file to back up.")
    target = backup_path(db.path)
    try:
        # The copy may go into an empty file, so it is created private rather than chmod-ed later.
        os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        await sqlite.vacuum_into(db.connection(), str(target))
    except BaseException as exc:
        target.unlink(missing_ok=True)
        if isinstance(exc, Exception):
            raise StorageError(
                f"Could not write the backup {target}: {exc}.",
                "Nothing was changed. Free some disk space or pass --no-backup.",
            ) from None
        raise
    return target
