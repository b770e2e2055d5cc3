"""Parent rows for repository tests, written with plain parameterised SQL.

The legacy tests of several repositories ran on hand-made tables without foreign keys; on the
real schema they need the users, agents, tasks and channels their rows point at.
"""

from __future__ import annotations

from typing import Any

from daycare.storage.db.database import Database
from tests import sqlite_files

AGENT_DESCRIPTOR = '{"type":"system","tag":"test"}'
AGENT_PERMISSIONS = '{"workingDir":"/","writeDirs":[]}'


async def user_insert(db: Database, id: str, *, parent_user_id: str | None = None) -> None:
    await db.connection().execute_query(
        "INSERT INTO users (id, is_owner, created_at, updated_at, parent_user_id, name, nametag) "
        "VALUES (?, 0, 1, 1, ?, NULL, ?)",
        [id, parent_user_id, f"{id}-tag-42"],
    )


async def agent_insert(db: Database, id: str, user_id: str) -> None:
    await db.connection().execute_query(
        "INSERT INTO agents (id, type, descriptor, permissions, created_at, updated_at, user_id) "
        "VALUES (?, 'system', ?, ?, 1, 1, ?)",
        [id, AGENT_DESCRIPTOR, AGENT_PERMISSIONS, user_id],
    )


async def task_insert(db: Database, id: str, user_id: str, *, title: str = "Task") -> None:
    await db.connection().execute_query(
        "INSERT INTO tasks (id, user_id, title, description, code, created_at, updated_at, deleted_at) "
        "VALUES (?, ?, ?, NULL, 'print(1)', 1, 1, NULL)",
        [id, user_id, title],
    )


async def channel_insert(db: Database, id: str, user_id: str, name: str) -> None:
    await db.connection().execute_query(
        "INSERT INTO channels (id, user_id, name, leader, created_at, updated_at) VALUES (?, ?, ?, 'leader', 1, 1)",
        [id, user_id, name],
    )


def file_rows(db: Database, table: str, order_by: str) -> list[dict[str, Any]]:
    """The table's rows as stored, read from the file by a separate plain sqlite3 connection."""
    assert db.path is not None
    return sqlite_files.file_rows(db.path, table, order_by)


def file_types(db: Database, table: str, column: str) -> list[str]:
    """The SQLite storage class of `column` in every row, in rowid order."""
    assert db.path is not None
    return [
        row["t"]
        for row in sqlite_files.file_dicts(db.path, f"SELECT typeof({column}) AS t FROM {table} ORDER BY rowid")
    ]
