"""InboxRepository: the legacy inboxRepository.spec plus the upsert and the opaque data text."""

from __future__ import annotations

import pytest

from daycare.storage.facade import Storage
from daycare.storage.repositories.inbox import InboxRecord, InboxRepository
from tests.storage.raw_rows import stored_rows, stored_types


async def test_supports_insert_ordered_lookup_and_delete_operations(storage: Storage) -> None:
    """inboxRepository.spec: supports insert, ordered lookup, and delete operations."""
    repository = InboxRepository(storage.db)
    await repository.insert("inbox-2", "agent-a", 20, "reset", '{"type":"reset"}')
    await repository.insert("inbox-1", "agent-a", 10, "message", '{"type":"message"}')
    await repository.insert("inbox-3", "agent-b", 30, "signal", '{"type":"signal"}')

    by_agent = await repository.find_by_agent_id("agent-a")
    assert [entry.id for entry in by_agent] == ["inbox-1", "inbox-2"]
    assert [entry.posted_at for entry in by_agent] == [10, 20]

    await repository.delete("inbox-1")
    assert [entry.id for entry in await repository.find_by_agent_id("agent-a")] == ["inbox-2"]

    await repository.delete_by_agent_id("agent-a")
    assert await repository.find_by_agent_id("agent-a") == []
    assert [entry.id for entry in await repository.find_by_agent_id("agent-b")] == ["inbox-3"]


async def test_insert_overwrites_every_column_and_ties_order_by_id(storage: Storage) -> None:
    repository = storage.inbox
    await repository.insert("b", "agent-a", 10, "message", "first")
    await repository.insert("a", "agent-a", 10, "reset", "{}")
    await repository.insert("b", "agent-a", 10, "compact", '{"type":"compact"}')
    assert await repository.find_by_agent_id("agent-a") == [
        InboxRecord("a", "agent-a", 10, "reset", "{}"),
        InboxRecord("b", "agent-a", 10, "compact", '{"type":"compact"}'),
    ]
    await repository.insert("b", "agent-z", 5, "compact", "moved")
    assert [entry.id for entry in await repository.find_by_agent_id("agent-a")] == ["a"]


async def test_data_is_stored_as_given(storage: Storage) -> None:
    text = '{ "type" : "message", "text": "Привет 👋" }'
    await storage.inbox.insert("x", "agent-a", 1, "message", text)
    assert [row["data"] for row in await stored_rows(storage.db, "inbox", "id")] == [text]
    assert await stored_types(storage.db, "inbox", "posted_at", "id") == ["integer"]
    with pytest.raises(TypeError, match="must be text"):
        await storage.inbox.insert("y", "agent-a", 1, "message", {"type": "message"})  # type: ignore[arg-type]
    assert [entry.id for entry in await storage.inbox.find_by_agent_id("agent-a")] == ["x"]
