"""Opening and closing the one database an engine owns.

Each `Database` has its own Tortoise context, so two of them in one process (as in tests)
never share a connection or a transaction. Code reaches the database only through
`Database.connection()` and `Database.in_transaction()`, never through Tortoise's globals.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from tortoise.backends.base.client import BaseDBAsyncClient, TransactionContext
from tortoise.context import TortoiseContext, get_current_context, set_global_context
from tortoise.exceptions import BaseORMException

from daycare.storage.db.backend import UNBOUND, DaycareSqliteClient
from daycare.storage.errors import DatabaseRefused, StorageError

CONNECTION = "default"
APP = "models"
MODEL_MODULES = ["daycare.schema", "aerich.models"]
BACKEND = "daycare.storage.db.backend"
MEMORY = ":memory:"


@dataclass(frozen=True)
class DatabaseLocation:
    """A SQLite file (or memory) plus the pragmas given in its URL."""

    path: Path | None
    pragmas: tuple[tuple[str, str], ...] = ()

    @property
    def display(self) -> str:
        return str(self.path) if self.path else MEMORY


def database_location(location: str | os.PathLike[str]) -> DatabaseLocation:
    """Parses a path or a `sqlite://` URL; raises StorageError for anything else."""
    text = os.fspath(location).strip()
    if not text:
        raise StorageError("The database location is empty.", "Pass a file path or a sqlite:// URL.")
    if "://" not in text:
        return DatabaseLocation(None if text == MEMORY else Path(text).expanduser().resolve())
    parts = urlsplit(text)
    if parts.scheme != "sqlite":
        raise StorageError(
            f"Unsupported database URL scheme {parts.scheme!r} in {text!r}.",
            "This version stores data in SQLite only: pass a file path or a sqlite:// URL.",
        )
    raw_path = unquote(parts.netloc + parts.path)
    pragmas = tuple(parse_qsl(parts.query))
    for name, value in pragmas:
        if not name.isidentifier() or not value.replace("-", "").isalnum():
            raise StorageError(f"Invalid pragma {name}={value!r} in database URL {text!r}.")
    if raw_path in ("", MEMORY):
        return DatabaseLocation(None, pragmas)
    return DatabaseLocation(Path(raw_path).expanduser().resolve(), pragmas)


@dataclass
class Database:
    """An open SQLite database with its own Tortoise context."""

    location: DatabaseLocation
    context: TortoiseContext

    @property
    def path(self) -> Path | None:
        return self.location.path

    def connection(self) -> BaseDBAsyncClient:
        """The client for the calling task: its open transaction if it has one."""
        return self.context.connections.get(CONNECTION)

    def in_transaction(self) -> TransactionContext:
        """Tortoise's `in_transaction()` bound to this database; nested calls use savepoints."""
        return self.connection()._in_transaction()


def database_config(location: DatabaseLocation) -> dict[str, Any]:
    """The Tortoise config for one database, naming this package's SQLite backend."""
    credentials: dict[str, Any] = {"file_path": str(location.path) if location.path else MEMORY}
    credentials.update(location.pragmas)
    return {
        "connections": {CONNECTION: {"engine": BACKEND, "credentials": credentials}},
        "apps": {APP: {"models": MODEL_MODULES, "default_connection": CONNECTION}},
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


async def database_open(location: str | os.PathLike[str] | DatabaseLocation, *, create: bool = True) -> Database:
    """Opens a database, creating a missing one (folder 0700, file 0600) unless `create` is False.

    Foreign keys are on for the connection, and WAL for files that are new or Daycare's
    (see `daycare.storage.db.backend`).
    """
    target = location if isinstance(location, DatabaseLocation) else database_location(location)
    if target.path is not None:
        if target.path.is_dir():
            raise StorageError(f"{target.path} is a folder, not a database file.", "Pass the path of a file.")
        if not create and not target.path.exists():
            raise StorageError(f"Database file not found: {target.path}.", "Check --db, --settings or DAYCARE_DB_URL.")
    await _fallback_context_ensure()
    context = TortoiseContext()
    with context:  # Tortoise resolves models against the current context while it registers them.
        await context.init(config=database_config(target))
    db = Database(target, context)
    client = db.connection()
    assert isinstance(client, DaycareSqliteClient)
    client.handler = context.connections
    try:
        await client.create_connection(with_db=True)
    except OSError as exc:
        await database_close(db)
        raise StorageError(f"Cannot create the database file {target.display}: {exc.strerror}.") from None
    except BaseORMException as exc:
        await database_close(db)
        raise DatabaseRefused(
            f"{target.display} is not a readable SQLite database ({exc}).",
            "Check the path; the file was left as it was.",
        ) from None
    return db


async def database_close(db: Database) -> None:
    """Closes the connection; the Database cannot be used afterwards."""
    await db.context.close_connections()
