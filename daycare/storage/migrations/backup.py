"""A consistent copy of the database next to it, written before any change.

The copy is written by SQLite (VACUUM INTO) under a temporary name, `<backup>.partial`, synced,
then renamed, and the folder synced: a `<name>.bak-*` without `.partial` is always complete,
and a kill leaves at most a `.partial`, which the next backup removes.

A backup's name ends with a fingerprint of the file it copies, taken once every committed change
is in the file (after a WAL checkpoint): 16 hex digits of a hash of the file's inode, size and
modification time. Writing the file changes its modification time, and a transaction that was
interrupted never reaches the file, so a rerun of an interrupted upgrade finds the same
fingerprint and keeps the backup it already has instead of writing another full-size copy, while
any committed change gives another fingerprint and so a new backup. The file's bytes are not
read for this: closing any descriptor of a file drops every POSIX lock this process holds on it,
SQLite's included, and another process could then delete the -wal this connection still uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tortoise.exceptions import BaseORMException

from daycare.storage.db import sqlite
from daycare.storage.db.database import Database, database_failure
from daycare.storage.db.files import COMPANIONS, durable_rename, file_sync, regular_file
from daycare.storage.errors import StorageError

log = logging.getLogger("daycare.storage")

PARTIAL = ".partial"
FINGERPRINT_LENGTH = 16
SQLITE_HEADER = b"SQLite format 3\x00"


@dataclass(frozen=True)
class Backup:
    """The backup a migration relies on; `reused` when an earlier run had written it from the same content."""

    path: Path
    reused: bool = False

    def line(self) -> str:
        """What to tell the user."""
        if self.reused:
            return f"Backup kept: {self.path} already holds this content (an earlier run wrote it)"
        return f"Backup written to {self.path}"


def backup_path(path: Path, now: datetime | None = None, fingerprint: str | None = None) -> Path:
    """`<name>.bak-<UTC timestamp>[-<fingerprint>]`, with a counter if that name is taken."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    base = f"{path.name}.bak-{stamp}" + (f"-{fingerprint}" if fingerprint else "")
    candidate = path.with_name(base)
    counter = 1
    while candidate.exists() or candidate.with_name(candidate.name + PARTIAL).exists():
        candidate = path.with_name(f"{base}-{counter}")
        counter += 1
    return candidate


def _backup_pattern(path: Path) -> re.Pattern[str]:
    """Matches the names `backup_path` gives; group 1 is the fingerprint, if any."""
    return re.compile(
        re.escape(path.name) + rf"\.bak-\d{{8}}T\d{{6}}Z(?:-([0-9a-f]{{{FINGERPRINT_LENGTH}}}))?(?:-\d+)?"
    )


def _partial_name(name: str) -> str | None:
    """The backup name a temporary file belongs to: `<backup>.partial`, or its -journal (VACUUM INTO writes one)."""
    for suffix in ("", *COMPANIONS):
        if name.endswith(PARTIAL + suffix):
            return name.removesuffix(PARTIAL + suffix)
    return None


def backup_leftovers_remove(path: Path) -> list[Path]:
    """Removes the `.partial` files (and their -journal) that interrupted backups of `path` left; returns them.

    A backup runs under the database's lock (an upgrade or an engine start holds it), so a
    `.partial` is never the copy another process is writing at the time.
    """
    pattern = _backup_pattern(path)
    removed = []
    for name in sorted(os.listdir(path.parent)):
        candidate = path.parent / name
        backup_name = _partial_name(name)
        if backup_name is not None and pattern.fullmatch(backup_name) and regular_file(candidate):
            with contextlib.suppress(FileNotFoundError):
                candidate.unlink()
                removed.append(candidate)
    if removed:
        log.info("Removed %d unfinished backup file(s) of an interrupted run: %s", len(removed), _names(removed))
    return removed


def backup_complete(candidate: Path) -> bool:
    """Whether a file holds a whole SQLite database: its header's page count times page size is its size."""
    try:
        with open(candidate, "rb") as file:
            header = file.read(100)
            size = os.fstat(file.fileno()).st_size
    except OSError:
        return False
    if len(header) < 100 or not header.startswith(SQLITE_HEADER):
        return False
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    counter_valid = header[24:28] == header[92:96]  # the header's page count is trustworthy only then
    return counter_valid and pages > 0 and pages * page_size == size


def backup_find(path: Path, fingerprint: str) -> Path | None:
    """The newest complete backup of `path` that was written from content with this fingerprint."""
    pattern = _backup_pattern(path)
    matches = []
    for name in os.listdir(path.parent):
        found = pattern.fullmatch(name)
        candidate = path.parent / name
        if found and found.group(1) == fingerprint and regular_file(candidate) and backup_complete(candidate):
            matches.append(candidate)
    return max(matches, key=lambda candidate: (candidate.stat().st_mtime_ns, candidate.name), default=None)


def _file_identity(path: Path) -> str:
    """A digest of what identifies the file's content without opening it (os.stat takes no descriptor)."""
    facts = os.stat(path)
    identity = f"{facts.st_dev}:{facts.st_ino}:{facts.st_size}:{facts.st_mtime_ns}"
    return hashlib.sha256(identity.encode()).hexdigest()


async def file_fingerprint(db: Database) -> str | None:
    """The fingerprint of the database file with every committed change in it; None if a reader kept some in the WAL."""
    assert db.path is not None
    try:
        if not await sqlite.checkpoint_complete(db.connection()):
            return None
        digest = _file_identity(db.path)
    except (BaseORMException, StorageError, OSError) as exc:
        log.info("No fingerprint for %s (%s): a new backup is written", db.path, exc)
        return None
    return digest[:FINGERPRINT_LENGTH]


async def database_backup(db: Database) -> Backup:
    """Writes a complete, synced backup beside the file (private, 0600), or finds the one an earlier run wrote."""
    if db.path is None:
        raise StorageError("An in-memory database has no file to back up.")
    backup_leftovers_remove(db.path)
    # The fingerprint is taken before the copy: a change in between gives the backup a fingerprint
    # that the file no longer has, so it is never reused for content it does not hold.
    fingerprint = await file_fingerprint(db)
    if fingerprint is not None and (existing := backup_find(db.path, fingerprint)) is not None:
        return Backup(existing, reused=True)
    target = backup_path(db.path, fingerprint=fingerprint)
    partial = target.with_name(target.name + PARTIAL)
    try:
        # VACUUM INTO needs a missing or empty file: it is created private rather than chmod-ed later.
        os.close(os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        await sqlite.vacuum_into(db.connection(), str(partial))
        await asyncio.to_thread(file_sync, partial)
        durable_rename(partial, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        if isinstance(exc, Exception):
            diagnosed = database_failure(db.path, exc, outcome="Nothing was changed and no backup was written")
            raise (diagnosed or _backup_error(target, exc)) from None
        raise
    return Backup(target)


def _backup_error(target: Path, exc: Exception) -> StorageError:
    """The cause of a failed backup when `database_failure` has no diagnosis, by the error's text and errno.

    A damaged file never gets the advice to skip the backup.
    """
    text = str(exc.strerror if isinstance(exc, OSError) and exc.strerror else exc)
    code = exc.errno if isinstance(exc, OSError) else None
    problem = f"Could not write the backup {target}: {text}."
    lowered = text.lower()
    if "malformed" in lowered or "not a database" in lowered or "corrupt" in lowered:
        return StorageError(
            problem,
            "The database file itself is damaged, so nothing was changed.",
            "Look at it with daycare db check, and put an earlier backup in its place with daycare restore.",
        )
    if code in (errno.ENOSPC, errno.EDQUOT) or "disk is full" in lowered:
        return StorageError(
            problem,
            "Nothing was changed. Free some disk space (the backup needs about the size of the file),",
            "or pass --no-backup.",
        )
    if code in (errno.EACCES, errno.EPERM, errno.EROFS) or "readonly" in lowered or "unable to open" in lowered:
        return StorageError(
            problem,
            f"Nothing was changed. Make {target.parent} writable, or pass --no-backup.",
        )
    return StorageError(problem, "Nothing was changed. Check the folder and the disk, then run the command again.")


def _names(paths: list[Path]) -> str:
    return ", ".join(path.name for path in paths)
