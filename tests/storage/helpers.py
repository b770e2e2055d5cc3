"""Builders shared by the storage tests, and a dialect-neutral check of constraint errors."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import pytest
from tortoise.exceptions import IntegrityError

from daycare.storage.db.database import database_close, database_open
from daycare.storage.facade import Storage
from daycare.storage.migrations.migrate import database_migrate
from daycare.storage.repositories.agents import AgentRecord

PERMISSIONS = {"workingDir": "/workspace", "writeDirs": ["/workspace"]}


def agent_record(agent_id: str, user_id: str, **changes: Any) -> AgentRecord:
    """A cron agent like the legacy specs build: no session, no tokens, empty stats."""
    fields: dict[str, Any] = {
        "id": agent_id,
        "user_id": user_id,
        "type": "cron",
        "descriptor": {"type": "cron", "id": agent_id, "name": "job"},
        "active_session_id": None,
        "permissions": PERMISSIONS,
        "tokens": None,
        "stats": {},
        "lifecycle": "active",
        "created_at": 1,
        "updated_at": 1,
    }
    fields.update(changes)
    return AgentRecord(**fields)


async def owner_id(storage: Storage) -> str:
    """The bootstrap owner's id (the first of `users.find_all()`, as in the legacy specs)."""
    owner = await storage.users.find_owner()
    assert owner is not None
    return owner.id


async def agent_storage(storage: Storage, agent_id: str = "agent-1") -> Storage:
    """The legacy specs' createTestStorage: the storage with one cron agent of the owner."""
    await storage.agents.create(agent_record(agent_id, await owner_id(storage)))
    return storage


async def file_migrate(path: Path, **options: Any) -> list[str]:
    """Opens the file, brings it up to date (`database_migrate` with `options`), closes it; what was applied."""
    db = await database_open(path)
    try:
        return await database_migrate(db, **options)
    finally:
        await database_close(db)


Violation = Literal["unique", "foreign key", "check"]

# SQLite names the violated rule in its message; PostgreSQL in the error's SQLSTATE and fields.
_SQLITE_MESSAGES: dict[Violation, re.Pattern[str]] = {
    "unique": re.compile(r"^UNIQUE constraint failed: (?P<target>.+)$"),
    "foreign key": re.compile(r"^FOREIGN KEY constraint failed$"),
    "check": re.compile(r"^CHECK constraint failed: (?P<target>.+)$"),
}
_POSTGRES_STATES: dict[str, Violation] = {"23505": "unique", "23503": "foreign key", "23514": "check"}
_POSTGRES_KEY = re.compile(r"^Key \((?P<columns>[^)]*)\)=")


def violation_of(error: IntegrityError) -> tuple[Violation | None, str | None]:
    """The kind of constraint an IntegrityError reports, and what it names: `table.column, ...` for a
    UNIQUE one, SQLite's expression or PostgreSQL's constraint name for a CHECK, None for a foreign key."""
    cause = error.__cause__
    state = getattr(cause, "sqlstate", None)
    if state is not None:
        kind = _POSTGRES_STATES.get(state)
        if kind == "unique":
            match = _POSTGRES_KEY.match(getattr(cause, "detail", "") or "")
            columns = match["columns"].split(", ") if match else []
            return kind, ", ".join(f"{getattr(cause, 'table_name', '')}.{column}" for column in columns)
        if kind == "check":
            return kind, getattr(cause, "constraint_name", None)
        return kind, None
    for kind, pattern in _SQLITE_MESSAGES.items():
        found = pattern.match(str(error))
        if found:
            return kind, found.groupdict().get("target")
    return None, None


@contextmanager
def violated(kind: Violation, target: str | None = None, *, postgres: str | None = None) -> Iterator[None]:
    """Expects the block to raise IntegrityError for a `kind` constraint naming `target` (see `violation_of`);
    `postgres` is the target on PostgreSQL when it differs (a CHECK's constraint name)."""
    with pytest.raises(IntegrityError) as caught:
        yield
    on_postgres = getattr(caught.value.__cause__, "sqlstate", None) is not None
    wanted = postgres if postgres is not None and on_postgres else target
    found = violation_of(caught.value)
    assert found == (kind, wanted), f"expected a {kind} violation on {wanted}, got {found}: {caught.value}"
