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

A PostgreSQL database is backed up with `pg_dump` (custom format, only the URL's `?schema=` when
it names one) into `<daycare home>/backups/<database>[.<schema>].<UTC time>.dump`, written as
`.partial` first, synced, renamed, 0600. The password goes to pg_dump through PGPASSWORD, never
on its command line. A missing pg_dump, or one older than the server, refuses the change.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import glob
import hashlib
import logging
import os
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tortoise.exceptions import BaseORMException

from daycare.storage.db import sqlite
from daycare.storage.db.backend import private_folder_create
from daycare.storage.db.database import Database, database_failure
from daycare.storage.db.files import COMPANIONS, durable_rename, file_sync, regular_file
from daycare.storage.errors import StorageError

log = logging.getLogger("daycare.storage")

PARTIAL = ".partial"
FINGERPRINT_LENGTH = 16
SQLITE_HEADER = b"SQLite format 3\x00"
BACKUPS_FOLDER = "backups"  # PostgreSQL backups: <daycare home>/backups/
DUMP_SUFFIX = ".dump"
PG_DUMP = "pg_dump"
# Where Debian and Ubuntu keep each installed client version's programs, tried after PATH (newest first).
PG_DUMP_FOLDERS: tuple[str, ...] = ("/usr/lib/postgresql/*/bin",)
_PG_DUMP_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")
_INSTALL = "Install it (Debian and Ubuntu: apt install postgresql-client), or pass --no-backup."


@dataclass(frozen=True)
class Backup:
    """The backup a migration relies on; `reused` when an earlier run had written it from the same content."""

    path: Path
    reused: bool = False
    dump: bool = False  # a pg_dump archive of a PostgreSQL database

    def line(self) -> str:
        """What to tell the user."""
        if self.reused:
            return f"Backup kept: {self.path} already holds this content (an earlier run wrote it)"
        if self.dump:
            return f"Backup written to {self.path} (pg_dump custom format; pg_restore puts it back)"
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
    """Writes a complete, synced backup beside the file (private, 0600), or finds the one an earlier run wrote.

    A PostgreSQL database is dumped into `<daycare home>/backups/` instead (`postgres_backup`).
    """
    if db.location.server is not None:
        return await postgres_backup(db)
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


# PostgreSQL


def backups_folder() -> Path:
    """`<daycare home>/backups/`, where PostgreSQL backups go."""
    from daycare.config import daycare_home  # daycare.config imports the storage package

    return daycare_home() / BACKUPS_FOLDER


def _name_part(text: str) -> str:
    """`text` safe in a file name: other characters than letters, digits, `_` and `-` become `_`."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text) or "_"


def postgres_backup_path(folder: Path, database: str, schema: str | None, now: datetime | None = None) -> Path:
    """`<folder>/<database>[.<schema>].<UTC timestamp>.dump`, with a counter if that name is taken."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    base = ".".join(_name_part(part) for part in (database, schema) if part) + f".{stamp}"
    candidate = folder / f"{base}{DUMP_SUFFIX}"
    counter = 1
    while candidate.exists() or candidate.with_name(candidate.name + PARTIAL).exists():
        candidate = folder / f"{base}-{counter}{DUMP_SUFFIX}"
        counter += 1
    return candidate


def _dump_leftovers_remove(folder: Path, database: str, schema: str | None) -> None:
    """Removes the `.partial` dumps of this database and schema that interrupted backups left."""
    prefix = ".".join(_name_part(part) for part in (database, schema) if part)
    pattern = re.compile(re.escape(prefix) + rf"\.\d{{8}}T\d{{6}}Z(?:-\d+)?{re.escape(DUMP_SUFFIX + PARTIAL)}")
    for name in os.listdir(folder):
        if pattern.fullmatch(name) and regular_file(folder / name):
            with contextlib.suppress(FileNotFoundError):
                (folder / name).unlink()
                log.info("Removed the unfinished backup %s of an interrupted run", folder / name)


def pg_dump_version(program: Path | str) -> int | None:
    """The major version of the pg_dump at `program` (`pg_dump --version`); None if it does not say."""
    import subprocess

    try:
        answer = subprocess.run(
            [str(program), "--version"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.SubprocessError):
        return None
    found = _PG_DUMP_VERSION.search(answer.stdout)
    return int(found.group(1)) if found else None


def pg_dump_find(server_major: int) -> Path:
    """A pg_dump that can dump a server of major version `server_major`: PATH's first, else Debian's folders.

    Raises StorageError when none is installed, or when each one is older than the server.
    """
    candidates: list[str] = [found] if (found := shutil.which(PG_DUMP)) else []
    for pattern in PG_DUMP_FOLDERS:
        folders = sorted(glob.glob(pattern), key=lambda folder: _version_key(Path(folder).parent.name), reverse=True)
        candidates += [str(Path(folder) / PG_DUMP) for folder in folders if os.access(Path(folder) / PG_DUMP, os.X_OK)]
    if not candidates:
        raise StorageError(
            "Cannot back up the PostgreSQL database: pg_dump is not installed (not found on PATH).",
            f"Nothing was changed. Daycare writes a backup with pg_dump before it changes the database. {_INSTALL}",
        )
    seen: list[str] = []
    for candidate in dict.fromkeys(candidates):
        major = pg_dump_version(candidate)
        if major is not None and major >= server_major:
            return Path(candidate)
        seen.append(f"{candidate} ({f'version {major}' if major is not None else 'version unknown'})")
    raise StorageError(
        f"Cannot back up the PostgreSQL database: the server runs PostgreSQL {server_major}, and pg_dump can only"
        f" dump servers of its own major version or older; found {', '.join(seen)}.",
        f"Nothing was changed. Install pg_dump {server_major} or newer (Debian and Ubuntu:"
        f" apt install postgresql-client-{server_major}), or pass --no-backup.",
    )


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else 0 for part in name.split("."))


async def postgres_server_major(db: Database) -> int:
    """The major version of the PostgreSQL server behind `db` (15 for 15.4)."""
    client: Any = db.connection()
    async with client.acquire_connection() as connection:
        return int(connection.get_server_version().major)


def pg_dump_command(program: Path, db: Database, target: Path) -> tuple[list[str], dict[str, str]]:
    """pg_dump's arguments and environment for a custom-format dump of `db` into `target`; the password in env only."""
    server = db.location.server
    assert server is not None
    command = [str(program), "--format=custom", f"--file={target}", "--no-password"]
    if db.location.schema:
        command.append(f'--schema="{db.location.schema}"')  # quoted: pg_dump folds an unquoted pattern to lower case
    if server.host:
        command.append(f"--host={server.host}")
    if server.port:
        command.append(f"--port={server.port}")
    if server.user:
        command.append(f"--username={server.user}")
    command.append(f"--dbname={server.database}")
    # Without a password in the URL, pg_dump finds one where the engine's driver does: PGPASSWORD or ~/.pgpass.
    env = {**os.environ, "PGAPPNAME": "daycare backup", "PGCONNECT_TIMEOUT": "10"}
    if server.password is not None:
        env["PGPASSWORD"] = server.password
    sslmode = dict(db.location.pragmas).get("sslmode")
    if sslmode:
        env["PGSSLMODE"] = sslmode.lower()
    return command, env


async def postgres_backup(db: Database, folder: Path | None = None) -> Backup:
    """Dumps `db` with pg_dump into `folder` (default: `<daycare home>/backups/`, 0700), as a private (0600) file.

    Raises StorageError, with nothing changed, when pg_dump is missing, too old or fails.
    """
    server = db.location.server
    assert server is not None
    program = await asyncio.to_thread(pg_dump_find, await postgres_server_major(db))
    folder = backups_folder() if folder is None else folder
    schema = db.location.schema
    try:
        private_folder_create(folder)
        _dump_leftovers_remove(folder, server.database, schema)
        target = postgres_backup_path(folder, server.database, schema)
        partial = target.with_name(target.name + PARTIAL)
        os.close(os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))  # pg_dump keeps the mode
    except OSError as exc:
        raise _backup_error(folder / f"{server.database}{DUMP_SUFFIX}", exc) from None
    command, env = pg_dump_command(program, db, partial)
    try:
        process = await asyncio.create_subprocess_exec(
            *command,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            _, errors = await process.communicate()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise
        if process.returncode != 0:
            lines = [line for line in errors.decode(errors="replace").splitlines() if line.strip()]
            raise StorageError(
                f"Could not write the backup {target}: pg_dump exited with status {process.returncode}.",
                *(f"  {line}" for line in lines[-5:]),
                "Nothing was changed. Fix what pg_dump reports, or pass --no-backup.",
            )
        await asyncio.to_thread(file_sync, partial)
        durable_rename(partial, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _backup_error(target, exc) from None
        raise
    return Backup(target, dump=True)
