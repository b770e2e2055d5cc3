"""Legacy files: populated.db reads back through the repositories exactly as the legacy code
returned it, and rows written by the repositories (into a SQLite file or a PostgreSQL schema) are
what it stored, byte for byte."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from daycare.storage.db.database import Database, database_close, database_open
from daycare.storage.facade import Storage
from daycare.storage.json_values import json_encode
from daycare.storage.migrations.migrate import database_migrate
from daycare.storage.repositories.agents import AgentRecord
from daycare.storage.repositories.history import HistoryRecord
from daycare.storage.repositories.inbox import InboxRecord
from daycare.storage.repositories.sessions import SessionRecord
from daycare.storage.repositories.users import ConnectorKeyRecord, UserRecord
from tests.conftest import legacy_dump
from tests.storage.raw_rows import stored_query, stored_types

Rows = list[dict[str, Any]]


def table(name: str) -> Rows:
    rows: Rows = legacy_dump("populated.json")["tables"][name]["rows"]
    return rows


def expected_users() -> list[UserRecord]:
    """What legacy findMany returned: users by created_at then id, keys by key id."""
    keys = sorted(table("user_connector_keys"), key=lambda key: key["id"])
    users = sorted(table("users"), key=lambda user: (user["created_at"], user["id"]))
    return [
        UserRecord(
            id=user["id"],
            is_owner=user["is_owner"] == 1,
            parent_user_id=user["parent_user_id"],
            name=user["name"],
            nametag=user["nametag"],
            created_at=user["created_at"],
            updated_at=user["updated_at"],
            connector_keys=tuple(
                ConnectorKeyRecord(key["id"], key["user_id"], key["connector_key"])
                for key in keys
                if key["user_id"] == user["id"]
            ),
        )
        for user in users
    ]


def agent_expected(row: dict[str, Any]) -> AgentRecord:
    return AgentRecord(
        id=row["id"],
        user_id=row["user_id"],
        type=row["type"],
        descriptor=json.loads(row["descriptor"]),
        active_session_id=row["active_session_id"],
        permissions=json.loads(row["permissions"]),
        tokens=json.loads(row["tokens"]) if row["tokens"] else None,
        stats=json.loads(row["stats"]),
        lifecycle=row["lifecycle"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def session_expected(row: dict[str, Any]) -> SessionRecord:
    return SessionRecord(**{field.name: row[field.name] for field in dataclasses.fields(SessionRecord)})


def history_expected(row: dict[str, Any]) -> HistoryRecord:
    return HistoryRecord(row["type"], row["at"], json.loads(row["data"]))


@pytest.fixture
async def legacy_storage(legacy_copy: Callable[[str], Path]) -> AsyncIterator[Storage]:
    db = await database_open(legacy_copy("populated.db"))
    await database_migrate(db)
    yield Storage.from_database(db)
    await database_close(db)


def test_record_fields_follow_the_legacy_order() -> None:
    names = {
        UserRecord: "id isOwner parentUserId name nametag createdAt updatedAt connectorKeys",
        ConnectorKeyRecord: "id userId connectorKey",
        AgentRecord: "id userId type descriptor activeSessionId permissions tokens stats lifecycle createdAt updatedAt",
        SessionRecord: "id agentId inferenceSessionId createdAt resetMessage invalidatedAt processedUntil endedAt",
        InboxRecord: "id agentId postedAt type data",
        HistoryRecord: "type at data",
    }
    for record, legacy in names.items():
        snake = ["".join(f"_{c.lower()}" if c.isupper() else c for c in name) for name in legacy.split()]
        assert [field.name for field in dataclasses.fields(record)] == snake


@pytest.mark.sqlite_only  # reads a copy of the legacy SQLite file populated.db
async def test_users_read_back(legacy_storage: Storage) -> None:
    expected = expected_users()
    assert len(expected) == 6
    assert await legacy_storage.users.find_all() == expected
    fresh = Storage.from_database(legacy_storage.db).users
    for user in expected:
        assert await fresh.find_by_id(user.id) == user
        assert await fresh.find_by_nametag(user.nametag) == user
        for key in user.connector_keys:
            assert await fresh.find_by_connector_key(key.connector_key) == user
    owner = await Storage.from_database(legacy_storage.db).users.find_owner()
    assert owner is not None and owner.id == next(user.id for user in expected if user.is_owner)
    for user in expected:
        children = [child for child in expected if child.parent_user_id == user.id]
        assert await fresh.find_by_parent_user_id(user.id) == children


@pytest.mark.sqlite_only  # reads a copy of the legacy SQLite file populated.db
async def test_agents_read_back(legacy_storage: Storage) -> None:
    rows = table("agents")
    expected = [agent_expected(row) for row in sorted(rows, key=lambda row: row["updated_at"])]
    listed = await legacy_storage.agents.find_all()
    assert listed == expected
    by_id = {row["id"]: row for row in rows}
    for agent in listed:
        row = by_id[agent.id]
        # Re-encoding gives back the stored bytes: key order, raw UTF-8 and numbers are kept.
        assert json_encode(agent.descriptor) == row["descriptor"]
        assert json_encode(agent.permissions) == row["permissions"]
        assert json_encode(agent.stats) == row["stats"]
        assert (json_encode(agent.tokens) if agent.tokens is not None else None) == row["tokens"]
    fresh = Storage.from_database(legacy_storage.db).agents
    for agent in expected:
        assert await fresh.find_by_id(agent.id) == agent
    for user_id in {row["user_id"] for row in rows}:
        assert await fresh.find_by_user_id(user_id) == [agent for agent in expected if agent.user_id == user_id]


@pytest.mark.sqlite_only  # reads a copy of the legacy SQLite file populated.db
async def test_sessions_history_and_inbox_read_back(legacy_storage: Storage) -> None:
    sessions = table("sessions")
    history = table("session_history")
    inbox = table("inbox")
    created = {row["id"]: row["created_at"] for row in sessions}
    for agent in table("agents"):
        mine = sorted((row for row in sessions if row["agent_id"] == agent["id"]), key=lambda row: row["created_at"])
        assert await legacy_storage.sessions.find_by_agent_id(agent["id"]) == [session_expected(row) for row in mine]
        session_ids = {row["id"] for row in mine}
        records = sorted(
            (row for row in history if row["session_id"] in session_ids),
            key=lambda row: (created[row["session_id"]], row["id"]),
        )
        assert await legacy_storage.history.find_by_agent_id(agent["id"]) == [history_expected(r) for r in records]
        items = sorted(
            (row for row in inbox if row["agent_id"] == agent["id"]), key=lambda r: (r["posted_at"], r["id"])
        )
        assert await legacy_storage.inbox.find_by_agent_id(agent["id"]) == [InboxRecord(**row) for row in items]
    read_items = [
        item for agent in table("agents") for item in await legacy_storage.inbox.find_by_agent_id(agent["id"])
    ]
    assert len(read_items) == len(inbox) == 6

    invalidated = sorted(
        (row for row in sessions if row["invalidated_at"] is not None), key=lambda r: r["invalidated_at"]
    )
    assert await legacy_storage.sessions.find_invalidated(100) == [session_expected(row) for row in invalidated]
    for session in sessions:
        assert await legacy_storage.sessions.find_by_id(session["id"]) == session_expected(session)
        mine = [row for row in history if row["session_id"] == session["id"]]
        read = await legacy_storage.history.find_by_session_id(session["id"])
        assert read == [history_expected(row) for row in mine]
        assert [json_encode(record.data) for record in read] == [row["data"] for row in mine]
        assert [list(record.data) for record in read] == [list(json.loads(row["data"])) for row in mine]
        assert await legacy_storage.history.max_id(session["id"]) == max((row["id"] for row in mine), default=None)
    assert len(history) == 17


async def test_rows_written_by_the_repositories_match_the_legacy_rows(storage: Storage, db: Database) -> None:
    """Rebuild populated.db's core tables through the repositories, then read them through a separate connection."""
    bootstrap = await storage.users.find_owner()
    assert bootstrap is not None
    await storage.users.delete(bootstrap.id)

    pending = sorted(table("users"), key=lambda row: row["parent_user_id"] is not None)
    for row in pending:
        await storage.users.create(
            id=row["id"],
            is_owner=row["is_owner"] == 1,
            parent_user_id=row["parent_user_id"],
            name=row["name"],
            nametag=row["nametag"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )
    for key in sorted(table("user_connector_keys"), key=lambda key: key["id"]):
        await storage.users.add_connector_key(key["user_id"], key["connector_key"])
    for row in table("agents"):
        await storage.agents.create(agent_expected(row))
    session_ids: dict[str, str] = {}
    for row in sorted(table("sessions"), key=lambda row: row["created_at"]):
        new_id = await storage.sessions.create(
            row["agent_id"],
            inference_session_id=row["inference_session_id"],
            created_at=row["created_at"],
            reset_message=row["reset_message"],
        )
        session_ids[new_id] = row["id"]
        if row["processed_until"] is not None:
            await storage.sessions.invalidate(new_id, row["processed_until"])
            assert await storage.sessions.mark_processed(new_id, row["processed_until"], row["processed_until"])
        if row["invalidated_at"] is not None:
            await storage.sessions.invalidate(new_id, row["invalidated_at"])
        if row["ended_at"] is not None:
            await storage.sessions.end_session(new_id, row["ended_at"])
    new_by_old = {old: new for new, old in session_ids.items()}
    for row in sorted(table("session_history"), key=lambda row: row["id"]):
        await storage.history.append(new_by_old[row["session_id"]], history_expected(row))
    for row in table("inbox"):
        await storage.inbox.insert(row["id"], row["agent_id"], row["posted_at"], row["type"], row["data"])

    def dumped(name: str) -> list[tuple[Any, ...]]:
        spec = legacy_dump("populated.json")["tables"][name]
        return [tuple(row[column] for column in spec["columns"]) for row in spec["rows"]]

    async def stored(sql: str) -> list[tuple[Any, ...]]:
        return [tuple(row.values()) for row in await stored_query(db, sql)]

    assert await stored("SELECT * FROM users ORDER BY id") == dumped("users")
    assert await stored("SELECT * FROM user_connector_keys ORDER BY id") == dumped("user_connector_keys")
    assert await stored("SELECT * FROM agents ORDER BY id") == dumped("agents")
    assert await stored("SELECT * FROM inbox ORDER BY id") == dumped("inbox")
    history = await stored("SELECT * FROM session_history ORDER BY id")
    assert [(id, session_ids[sid], *rest) for id, sid, *rest in history] == dumped("session_history")
    sessions = sorted((session_ids[row[0]], *row[1:]) for row in await stored("SELECT * FROM sessions"))
    assert sessions == dumped("sessions")
    for name, column in (("users", "is_owner"), ("agents", "created_at"), ("session_history", "at")):
        assert set(await stored_types(db, name, column, "1")) == {"integer"}
