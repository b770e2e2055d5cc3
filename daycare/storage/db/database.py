"""Opening and closing the one database an engine owns: a SQLite file or a PostgreSQL server.

Each `Database` has its own Tortoise context, so two of them in one process (as in tests)
never share a connection or a transaction. Code reaches the database only through
`Database.connection()` and `Database.in_transaction()`, never through Tortoise's globals.

Where a database is (`DatabaseLocation`) is parsed by `daycare.storage.db.location`. A failed open or write is
diagnosed from the file system (`database_failure`): a read-only file or folder, a full disk
and a damaged file each get their own error and advice; `database_writable_check` finds a
read-only database before anything is written.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient, TransactionContext
from tortoise.context import TortoiseContext, get_current_context, set_global_context
from tortoise.exceptions import BaseORMException

from daycare.storage.db import tortoise_dialects
from daycare.storage.db.backend import UNBOUND, DaycareSqliteClient
from daycare.storage.db.files import private_modes_ensure
from daycare.storage.db.location import MEMORY, DatabaseLocation, database_location
from daycare.storage.errors import DatabaseRefused, StorageError

CONNECTION = "default"
APP = "models"
MODEL_MODULES = ["daycare.schema"]
AERICH_MODELS = "aerich.models"  # Aerich's own model: the Aerich CLI needs it registered, Daycare never queries it
BACKEND = "daycare.storage.db.backend"
POSTGRES_BACKEND = "daycare.storage.db.postgres_backend"


@dataclass
class Database:
    """An open SQLite database with its own Tortoise context."""

    location: DatabaseLocation
    context: TortoiseContext

    @property
    def path(self) -> Path | None:
        """The SQLite file; None for memory and for PostgreSQL."""
        return self.location.path

    @property
    def dialect(self) -> str:
        """ "sqlite" or "postgres"."""
        return self.location.dialect

    @property
    def shared(self) -> bool:
        """Whether several engines write it at once (`shared=true`): writes then lock the rows they read."""
        return self.location.shared

    def connection(self) -> BaseDBAsyncClient:
        """The client for the calling task: its open transaction if it has one."""
        return self.context.connections.get(CONNECTION)

    def in_transaction(self) -> TransactionContext:
        """Tortoise's `in_transaction()` bound to this database; nested calls use savepoints."""
        return self.connection()._in_transaction()


def postgres_connect_arguments(location: DatabaseLocation) -> dict[str, Any]:
    """What `asyncpg.connect` needs to reach `location`'s PostgreSQL database (server, login, TLS)."""
    server = location.server
    assert server is not None
    arguments: dict[str, Any] = {
        "host": server.host,
        "port": server.port or 5432,
        "user": server.user,
        "password": server.password,
        "database": server.database,
    }
    sslmode = dict(location.pragmas).get("sslmode")
    if sslmode:
        arguments["ssl"] = sslmode.lower()
    return arguments


def _postgres_credentials(location: DatabaseLocation, read_only: bool) -> dict[str, Any]:
    parameters = dict(location.pragmas)
    settings = {"lock_timeout": parameters.get("lock_timeout", "5000")}
    # Alone on its schema, no engine listens for change notices: its writes skip the triggers that send them.
    settings["daycare.notify"] = "on" if location.shared else "off"
    if read_only:
        settings["default_transaction_read_only"] = "on"
    credentials = {**postgres_connect_arguments(location), "server_settings": settings}
    if "schema" in parameters:
        credentials["schema"] = parameters["schema"]
    return credentials


def database_config(location: DatabaseLocation, *, read_only: bool = False, aerich: bool = False) -> dict[str, Any]:
    """The Tortoise config for one database, naming this package's SQLite or PostgreSQL backend.

    `aerich` adds Aerich's model, for the Aerich CLI; Daycare's own opens leave it (and Aerich's import) out.
    """
    if location.server is not None:
        connection = {"engine": POSTGRES_BACKEND, "credentials": _postgres_credentials(location, read_only)}
    else:
        credentials: dict[str, Any] = {"file_path": str(location.path) if location.path else MEMORY}
        credentials.update(location.pragmas)
        if read_only and location.path is not None:
            credentials["mode"] = "ro"  # the backend opens the file with SQLite's mode=ro
        connection = {"engine": BACKEND, "credentials": credentials}
    models = [*MODEL_MODULES, AERICH_MODELS] if aerich else MODEL_MODULES
    return {
        "connections": {CONNECTION: connection},
        "apps": {APP: {"models": models, "default_connection": CONNECTION}},
    }


async def _fallback_context_ensure() -> None:
    """Gives Tortoise a process-wide context whose connection refuses every query.

    Querysets read capabilities from the current context before `using_db` applies; with this
    fallback they always find one, and a query that forgets `using_db` fails loudly.
    """
    if get_current_context() is not None:
        return
    fallback = TortoiseContext()
    with fallback:
        await fallback.init(config=database_config(DatabaseLocation(Path(UNBOUND))), init_connections=False)
    set_global_context(fallback)


class DatabaseNotWritable(StorageError):
    """The database file, a file beside it that SQLite writes, or its folder cannot be written."""


class DiskFull(StorageError):
    """The disk that holds the database has no space left."""


class DatabaseCorrupt(DatabaseRefused):
    """SQLite reports the file as damaged; it was left as it was."""


_COMPANIONS = ("-wal", "-shm", "-journal")  # files SQLite writes beside the database
_FULL_BELOW = 1 << 20  # bytes free under which a failed write is put down to a full disk
_LEFT_AS_IT_WAS = "The file was left as it was"
_EFFECTIVE_IDS = os.access in os.supports_effective_ids


def _existing(folder: Path) -> Path:
    """`folder`, or the nearest folder above it that exists."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _write_refusal(path: Path) -> str | None:
    """Why this process may not write `path` (a file, or a folder to create files in); None when it may.

    Only asks the OS (access, stat): opening and closing a database file would drop the locks
    SQLite holds on it in this process.
    """
    if os.access(path, os.W_OK | (os.X_OK if path.is_dir() else 0), effective_ids=_EFFECTIVE_IDS):
        return None
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return "it is on a read-only file system"
        info = path.stat()
    except OSError as exc:
        return exc.strerror or str(exc)
    if info.st_uid == os.geteuid() and info.st_mode & stat.S_IWUSR:
        return "it is immutable (lsattr shows it; chattr -i removes it)"
    return f"its permissions ({stat.S_IMODE(info.st_mode):04o}, owner uid {info.st_uid}) do not let this user write"


def database_write_problems(path: Path) -> list[str]:
    """What keeps this process from writing the database at `path`: the file, its -wal or -shm, or its folder."""
    problems = []
    for file in (path, *(path.with_name(path.name + suffix) for suffix in _COMPANIONS)):
        reason = _write_refusal(file) if file.is_file() else None
        if reason is not None:
            problems.append(f"{file} is read-only: {reason}")
    reason = _write_refusal(_existing(path.parent))
    if reason is not None:
        problems.append(
            f"its folder {_existing(path.parent)} is read-only: {reason}; SQLite creates the -wal and -shm"
            " files there, and Daycare the backup and the lock file"
        )
    return problems


def _not_writable(path: Path, problems: list[str], outcome: str) -> DatabaseNotWritable:
    return DatabaseNotWritable(
        f"Cannot write the database {path}:",
        *(f"  - {problem}." for problem in problems),
        f"{outcome}. Make {'them' if len(problems) > 1 else 'it'} writable for this user, then run the command again.",
    )


def database_writable_check(path: Path | None, *, outcome: str = "Nothing was changed") -> None:
    """Raises DatabaseNotWritable, naming each file or folder and why, unless the database at `path` can be written.

    Run it before the first write (a backup included), so that a read-only file fails at once;
    `outcome` ends the message. An in-memory database (None) is always writable.
    """
    if path is None:
        return
    problems = database_write_problems(path)
    if problems:
        raise _not_writable(path, problems, outcome)


def disk_space_free(path: Path) -> int | None:
    """Bytes this process may still write on the disk that holds `path`; None when that cannot be read."""
    try:
        info = os.statvfs(_existing(path.parent))
    except OSError:
        return None
    return info.f_bavail * info.f_frsize


def _sqlite_error_name(exc: BaseException) -> str:
    """The name of the SQLite result code behind `exc` (e.g. SQLITE_READONLY_DIRECTORY), or ''."""
    seen: BaseException | None = exc
    while seen is not None:
        name = getattr(seen, "sqlite_errorname", None)
        if isinstance(name, str):
            return name
        seen = seen.__cause__ or seen.__context__
    return ""


def database_failure(path: Path, exc: BaseException, *, outcome: str = _LEFT_AS_IT_WAS) -> StorageError | None:
    """The error to show when opening or writing the database at `path` failed with `exc`; None if not diagnosed.

    A read-only file or folder, a full disk, a disk error and a damaged file each get their own
    advice (never to skip the backup of a damaged file). `outcome` says what became of the file.
    """
    name = _sqlite_error_name(exc)
    free = disk_space_free(path)
    if (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or name == "SQLITE_FULL":
        full = True
    else:
        full = name.startswith("SQLITE_IOERR") and free is not None and free < _FULL_BELOW
    if full:
        return DiskFull(
            f"The disk that holds {path} is full ({f'{free:,} bytes' if free else 'no space'} left).",
            f"{outcome}. Free some space on that disk, then run the command again.",
        )
    if isinstance(exc, OSError) or name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")):
        problems = database_write_problems(path)
        if problems:
            return _not_writable(path, problems, outcome)
    if name.startswith("SQLITE_CORRUPT"):
        return DatabaseCorrupt(
            f"{path} is damaged: SQLite reports {exc}.",
            f"{outcome}. Restore it from a backup (<name>.bak-<time>) rather than upgrade it as it is.",
        )
    if name.startswith("SQLITE_IOERR"):
        return StorageError(
            f"The disk reported an error while reading or writing {path} ({exc}).",
            f"{outcome}. Check the disk (its kernel log, its health), then run the command again.",
        )
    return None


async def database_open(
    location: str | os.PathLike[str] | DatabaseLocation,
    *,
    create: bool = True,
    read_only: bool = False,
    querysets: bool = True,
) -> Database:
    """Opens a database, creating a missing one (folder 0700, file 0600) unless `create` is False.

    On PostgreSQL the database must exist; a missing `?schema=` is created unless `create` is False.

    `read_only` (inspection) never creates, writes or chmods a file; otherwise the file, its
    -wal, -shm and backups are made private (0600) if others could read them.

    `querysets=False` is for a database that runs SQL and statements only (`db status`, `db check`,
    the schema check's scratch): Tortoise then skips preparing every model's querysets, most of an
    open's time; a queryset on it fails unless another open in the process prepared them.

    Foreign keys are on for the connection, and WAL for files that are new or Daycare's
    (see `daycare.storage.db.backend`).
    """
    target = location if isinstance(location, DatabaseLocation) else database_location(location)
    if target.path is not None:
        if target.path.is_dir():
            raise StorageError(f"{target.path} is a folder, not a database file.", "Pass the path of a file.")
        if (not create or read_only) and not target.path.exists():
            raise StorageError(f"Database file not found: {target.path}.", "Check --db, --settings or DAYCARE_DB_URL.")
    tortoise_dialects.install()
    await _fallback_context_ensure()
    context = TortoiseContext()
    with context:  # Tortoise resolves models against the current context while it registers them.
        # Without its connections initialised, Tortoise skips the querysets; the client is made below as usual.
        await context.init(config=database_config(target, read_only=read_only), init_connections=querysets)
    db = Database(target, context)
    if target.server is not None:
        from daycare.storage.db.postgres_backend import postgres_connect  # asyncpg only when it is used

        try:
            await postgres_connect(
                db.connection(), target, create=create and not read_only, handler=context.connections
            )
        except BaseException:
            await database_close(db)
            raise
        return db
    client = db.connection()
    assert isinstance(client, DaycareSqliteClient)
    client.handler = context.connections
    try:
        await client.create_connection(with_db=True)
    except (OSError, BaseORMException) as exc:
        await database_close(db)
        if target.path is None:
            raise StorageError(f"Cannot open an in-memory database: {exc}.") from None
        if isinstance(exc, OSError):
            failure = database_failure(target.path, exc) or StorageError(
                f"Cannot create the database file {target.path}: {exc.strerror}."
            )
        else:
            failure = database_failure(target.path, exc) or DatabaseRefused(
                f"{target.path} is not a readable SQLite database ({exc}).",
                "Check the path; the file was left as it was.",
            )
        raise failure from None
    if target.path is not None:
        private_modes_ensure(target.path, change=not read_only)  # SQLite gives -wal and -shm the file's mode
    return db


async def database_close(db: Database) -> None:
    """Closes the connection; the Database cannot be used afterwards."""
    await db.context.close_connections()
