"""Parent rows for repository tests, written with plain parameterised SQL (on either dialect).

The legacy tests of several repositories ran on hand-made tables without foreign keys; on the
real schema they need the users, agents, tasks and channels their rows point at.
"""

from __future__ import annotations

from daycare.storage.db.database import Database
from tests.storage.raw_rows import sql_run

AGENT_DESCRIPTOR = '{"type":"system","tag":"test"}'
AGENT_PERMISSIONS = '{"workingDir":"/","writeDirs":[]}'


async def user_insert(db: Database, id: str, *, parent_user_id: str | None = None) -> None:
    await sql_run(
        db,
        "INSERT INTO users (id, is_owner, created_at, updated_at, parent_user_id, name, nametag) "
        "VALUES (?, FALSE, 1, 1, ?, NULL, ?)",
        [id, parent_user_id, f"{id}-tag-42"],
    )


async def agent_insert(db: Database, id: str, user_id: str) -> None:
    await sql_run(
        db,
        "INSERT INTO agents (id, type, descriptor, permissions, created_at, updated_at, user_id) "
        "VALUES (?, 'system', ?, ?, 1, 1, ?)",
        [id, AGENT_DESCRIPTOR, AGENT_PERMISSIONS, user_id],
    )


async def task_insert(db: Database, id: str, user_id: str, *, title: str = "Task") -> None:
    await sql_run(
        db,
        "INSERT INTO tasks (id, user_id, title, description, code, created_at, updated_at, deleted_at) "
        "VALUES (?, ?, ?, NULL, 'print(1)', 1, 1, NULL)",
        [id, user_id, title],
    )


async def channel_insert(db: Database, id: str, user_id: str, name: str) -> None:
    await sql_run(
        db,
        "INSERT INTO channels (id, user_id, name, leader, created_at, updated_at) VALUES (?, ?, ?, 'leader', 1, 1)",
        [id, user_id, name],
    )
