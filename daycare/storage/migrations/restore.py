"""Puts a backup in place of the database: `daycare restore BACKUP`.

Copying a backup over the file by hand leaves the old -wal beside it, and SQLite applies that
log to the copy: a damaged database. Restore instead
1. takes the database's lock (`<name>.lock`, see `daycare.storage.db.lock`), so it refuses while
   an engine or an upgrade runs on the file, and neither can start while it works;
2. checks the backup (SQLite's integrity check, and that it is a Daycare file this version can
   open) before it touches anything;
3. copies it with SQLite (VACUUM INTO: a backup with a -wal of its own is copied whole) into a
   private temporary file beside the database, syncs the copy and checks it the same way;
4. moves the current file aside with its -wal, -shm and -journal, to `<name>.before-restore-<time>`
   plus the same suffixes: nothing is deleted, and SQLite pairs the moved files again by name,
   so `daycare restore <name>.before-restore-<time>` undoes a restore;
5. renames the copy into place (0600), syncs the folder, and opens the result read-only to check
   that Daycare recognises it.

A PostgreSQL database is not restored here: the refusal gives the `pg_restore` commands that put
a `daycare upgrade` backup (a pg_dump archive) back, keeping the current schema aside.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shlex
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tortoise.exceptions import BaseORMException

from daycare.storage.db import sqlite
from daycare.storage.db.database import Database, database_close, database_open
from daycare.storage.db.location import DatabaseLocation, database_location
from daycare.storage.db.files import COMPANIONS, companion, durable_rename, file_sync, folder_sync, regular_file
from daycare.storage.db.lock import database_lock
from daycare.storage.errors import StorageError
from daycare.storage.migrations.adoption import adoption_check
from daycare.storage.migrations.inspection import FileKind
from daycare.storage.migrations.loader import migrations_load
from daycare.storage.migrations.migrate import DatabaseStatus, database_status

PARTIAL = ".partial"
RESTORE = "restore"  # what the lock file says this process does


@dataclass(frozen=True)
class Restored:
    """What `database_restore` did: the backup it checked, what it moved aside, and the file it put in place."""

    backup: Path
    target: Path
    moved: tuple[tuple[Path, Path], ...]  # (old name, new name) of the current file and its companions
    status: DatabaseStatus

    def lines(self) -> list[str]:
        """A few lines for the user."""
        lines = [f"Checked {self.backup}: sound (integrity check ok), {_kind_text(self.status)}."]
        if self.moved:
            aside = self.moved[0][1] if self.moved[0][0] == self.target else None
            lines.append("Moved aside: " + ", ".join(f"{old.name} -> {new.name}" for old, new in self.moved) + ".")
            if aside is not None:
                lines.append(f"  (to undo: daycare restore {aside} --db {self.target})")
        else:
            lines.append(f"There was no database at {self.target}.")
        lines.append(f"Restored {self.backup.name} to {self.target} (0600); the result passed the same checks.")
        if self.status.pending:
            lines.append(f"Pending: {', '.join(self.status.pending)}; daycare upgrade (or start) applies them.")
        return lines


def _kind_text(status: DatabaseStatus) -> str:
    if status.state.kind is FileKind.AERICH:
        return f"a Daycare database with {len(status.applied)} migration(s) applied"
    return "a legacy Daycare database, not yet upgraded"


async def database_restore(
    backup: str | os.PathLike[str], location: str | os.PathLike[str] | DatabaseLocation
) -> Restored:
    """Replaces the database at `location` with a checked copy of `backup`, moving the current file aside.

    Raises StorageError before anything changes if the database is in use or the backup is unfit.
    """
    target = location if isinstance(location, DatabaseLocation) else database_location(location)
    if target.server is not None:
        raise postgres_restore_refusal(target, Path(backup).expanduser())
    if target.path is None:
        raise StorageError("An in-memory database cannot be restored.", "Pass the database file with --db.")
    path = target.path
    source = Path(backup).expanduser().resolve()
    _source_check(source, path)
    untouched = f"Nothing was changed: {path} is as it was."
    with database_lock(path, RESTORE):  # DatabaseInUse, naming the holder, while an engine or upgrade runs
        _leftovers_remove(path)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        copy = path.with_name(f"{path.name}.restore-{stamp}{PARTIAL}")
        try:
            await _inspect(source, "The backup", untouched, copy_to=copy)
            await asyncio.to_thread(file_sync, copy)
            await _inspect(copy, "The copy of the backup", untouched)
        except BaseException:
            with contextlib.suppress(OSError):
                copy.unlink(missing_ok=True)
            raise
        moved = _move_aside(path, stamp)
        durable_rename(copy, path)
        # The copy passed the integrity check under its temporary name; a rename leaves its content as it is.
        # What can still differ at the final name is what SQLite pairs with it: this open would show it.
        undo = f"Your previous database is {moved[0][1]}." if moved and moved[0][0] == path else ""
        status = await _inspect(path, "The restored database", undo, full=False)
    return Restored(source, path, moved, status)


def postgres_restore_refusal(target: DatabaseLocation, backup: Path) -> StorageError:
    """Why `daycare restore` does not restore a PostgreSQL database, and the commands that do."""
    server = target.server
    assert server is not None
    url = server.display.replace("'", "'\\''")
    dump = shlex.quote(str(backup))
    schema = target.schema
    if schema:
        aside = f"{schema}_before_restore"
        steps = (
            f"  psql '{url}' -c 'ALTER SCHEMA \"{schema}\" RENAME TO \"{aside}\"'",
            f"  pg_restore --dbname='{url}' --single-transaction --exit-on-error {dump}",
            f"Then run daycare upgrade --db '{target.display}'; drop the schema {aside} once the result is right.",
        )
    else:
        restored = f"{server.database}_restored"
        url_restored = dataclasses.replace(server, database=restored).display.replace("'", "'\\''")
        steps = (
            f"  psql '{url}' -c 'CREATE DATABASE \"{restored}\"'",
            f"  pg_restore --dbname='{url_restored}' --single-transaction --exit-on-error {dump}",
            f"Then run daycare upgrade --db '{url_restored}' and use that URL from then on.",
        )
    return StorageError(
        f"daycare restore puts a backup file in place of a SQLite file; {target.display} is a PostgreSQL database.",
        "Restore a backup that daycare upgrade wrote (a pg_dump archive) with pg_restore. Stop the engine first,"
        " then keep the current data aside and restore the archive (set PGPASSWORD if the server asks for one):",
        *steps,
        "Nothing was changed.",
    )


def _leftovers_remove(path: Path) -> None:
    """Removes what interrupted restores left: `<name>.restore-<time>.partial` and its -journal."""
    prefix = f"{path.name}.restore-"
    for name in os.listdir(path.parent):
        if (
            name.startswith(prefix)
            and name.endswith((PARTIAL, f"{PARTIAL}-journal"))
            and regular_file(path.parent / name)
        ):
            with contextlib.suppress(FileNotFoundError):
                (path.parent / name).unlink()


def _source_check(source: Path, path: Path) -> None:
    """Refuses a backup that is missing, not a regular file, or one of the database's own files."""
    if source in {path, *(companion(path, suffix) for suffix in COMPANIONS)}:
        raise StorageError(f"{source} is the database itself (or one of its companion files), not a backup.")
    if not source.exists():
        raise StorageError(f"Backup not found: {source}.", "Pass the path of a backup, e.g. daycare.db.bak-<time>.")
    if not regular_file(source):
        raise StorageError(f"{source} is not a regular file.", "Pass the path of a backup file.")


async def _inspect(
    path: Path, what: str, outcome: str, *, full: bool = True, copy_to: Path | None = None
) -> DatabaseStatus:
    """Opens `path` read-only, checks that it is sound and a Daycare file this version can open, and
    copies it with SQLite to `copy_to` (a new private file) if given. `outcome` ends an error message."""
    try:
        db = await database_open(path, read_only=True)
        try:
            return await _checked(db, what, full=full, copy_to=copy_to)
        finally:
            await database_close(db)
    except StorageError as exc:
        raise StorageError(
            exc.problem if exc.problem.startswith(what) else f"{what}: {exc.problem}", *exc.advice, outcome
        ) from None
    except BaseORMException as exc:
        raise StorageError(f"{what} {path} could not be read or copied: {exc}.", outcome) from None


async def _checked(db: Database, what: str, *, full: bool, copy_to: Path | None) -> DatabaseStatus:
    conn = db.connection()
    problems = await sqlite.integrity_problems(conn) if full else []
    if problems:
        raise StorageError(
            f"{what} {db.path} is damaged; SQLite's integrity check reports:", *(f"  {line}" for line in problems[:5])
        )
    status = await database_status(db)
    if status.state.kind in (FileKind.FRESH, FileKind.FOREIGN):
        found = "has no tables" if status.state.kind is FileKind.FRESH else "is not a Daycare database"
        raise StorageError(f"{what} {db.path} {found}.")
    await adoption_check(conn, status.state, migrations_load())
    if copy_to is not None:
        os.close(os.open(copy_to, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        await sqlite.vacuum_into(conn, str(copy_to))
    return status


def _move_aside(path: Path, stamp: str) -> tuple[tuple[Path, Path], ...]:
    """Renames the database and its companions to `<name>.before-restore-<stamp>` (+ suffix); returns the moves.

    The companions go first: the file stays paired with its -wal until its own rename, and a
    -wal never stays behind at the old name, where SQLite would apply it to the restored file.
    """
    aside = path.with_name(f"{path.name}.before-restore-{stamp}")
    counter = 1
    while any(os.path.lexists(companion(aside, suffix)) for suffix in ("", *COMPANIONS)):
        aside = path.with_name(f"{path.name}.before-restore-{stamp}-{counter}")
        counter += 1
    moves = [(companion(path, suffix), companion(aside, suffix)) for suffix in (*COMPANIONS, "")]
    done = []
    for old, new in moves:
        if os.path.lexists(old):
            os.rename(old, new)
            done.append((old, new))
    folder_sync(path.parent)
    done.sort(key=lambda move: move[0] != path)  # the database first in the report
    return tuple(done)
