"""Builders shared by the storage tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
