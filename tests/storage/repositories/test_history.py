"""HistoryRepository: the legacy historyRepository.spec plus skipped rows, the bound LIMIT,
validation and the stored bytes."""

from __future__ import annotations

import pytest

from daycare.storage.facade import Storage
from daycare.storage.repositories.history import HistoryRecord, HistoryRepository
from tests.storage.helpers import agent_storage, violated
from tests.storage.raw_rows import sql_run, stored_query


def note(at: int, text: str) -> HistoryRecord:
    return HistoryRecord("note", at, {"text": text})


async def history_setup(storage: Storage) -> tuple[HistoryRepository, str]:
    await agent_storage(storage)
    return HistoryRepository(storage.db), await storage.sessions.create("agent-1", created_at=10)


async def test_appends_and_finds_by_session_and_agent(storage: Storage) -> None:
    """historyRepository.spec: appends and finds by session and agent."""
    await agent_storage(storage)
    session_a = await storage.sessions.create("agent-1", created_at=10)
    session_b = await storage.sessions.create("agent-1", created_at=20)
    history = HistoryRepository(storage.db)
    await history.append(session_a, note(11, "A1"))
    await history.append(session_b, note(21, "B1"))
    assert await history.find_by_session_id(session_a) == [note(11, "A1")]
    assert await history.find_by_agent_id("agent-1") == [note(11, "A1"), note(21, "B1")]


async def test_append_returns_new_record_id(storage: Storage) -> None:
    """historyRepository.spec: append returns new record id."""
    history, session_id = await history_setup(storage)
    id1 = await history.append(session_id, note(11, "first"))
    id2 = await history.append(session_id, note(12, "second"))
    assert 0 < id1 < id2


async def test_find_since_id_returns_records_after_a_given_id(storage: Storage) -> None:
    """historyRepository.spec: findSinceId returns records after a given id."""
    history, session_id = await history_setup(storage)
    id1 = await history.append(session_id, note(11, "a"))
    await history.append(session_id, note(12, "b"))
    await history.append(session_id, note(13, "c"))
    assert await history.find_since_id(session_id, id1) == [note(12, "b"), note(13, "c")]


async def test_find_since_id_returns_empty_when_nothing_follows(storage: Storage) -> None:
    """historyRepository.spec: findSinceId returns empty array when no records exist after id."""
    history, session_id = await history_setup(storage)
    last_id = await history.append(session_id, note(11, "a"))
    assert await history.find_since_id(session_id, last_id) == []


async def test_max_id_returns_max_history_record_id(storage: Storage) -> None:
    """historyRepository.spec: maxId returns max history record id."""
    history, session_id = await history_setup(storage)
    await history.append(session_id, note(11, "a"))
    id2 = await history.append(session_id, note(12, "b"))
    assert await history.max_id(session_id) == id2


async def test_max_id_returns_null_for_empty_session(storage: Storage) -> None:
    """historyRepository.spec: maxId returns null for empty session."""
    history, session_id = await history_setup(storage)
    assert await history.max_id(session_id) is None


async def test_find_by_agent_id_limit_keeps_the_oldest_and_is_bound(storage: Storage) -> None:
    await agent_storage(storage)
    later = await storage.sessions.create("agent-1", created_at=20)
    earlier = await storage.sessions.create("agent-1", created_at=10)
    history = storage.history
    await history.append(later, note(21, "later"))
    await history.append(earlier, note(11, "earlier-1"))
    await history.append(earlier, note(12, "earlier-2"))
    assert [record.data["text"] for record in await history.find_by_agent_id("agent-1")] == [
        "earlier-1",
        "earlier-2",
        "later",
    ]
    assert await history.find_by_agent_id("agent-1", 2) == [note(11, "earlier-1"), note(12, "earlier-2")]
    assert await history.find_by_agent_id("agent-1", 0) == []
    for bad in (-1, 1.5, "2", "1; DROP TABLE session_history", True):
        with pytest.raises(ValueError, match="non-negative integer"):
            await history.find_by_agent_id("agent-1", bad)  # type: ignore[arg-type]
    assert len(await history.find_by_agent_id("agent-1")) == 3


async def test_reads_skip_unknown_types_and_broken_json(storage: Storage) -> None:
    history, session_id = await history_setup(storage)
    await history.append(session_id, note(1, "first"))
    for kind, data in (("mystery", '{"text":"x"}'), ("note", "{broken"), ("note", "null"), ("note", "[1]")):
        await sql_run(
            storage.db,
            "INSERT INTO session_history (session_id, type, at, data) VALUES (?, ?, 2, ?)",
            [session_id, kind, data],
        )
    last_id = await history.append(session_id, note(3, "last"))
    assert await history.find_by_session_id(session_id) == [note(1, "first"), note(3, "last")]
    assert await history.find_by_agent_id("agent-1") == [note(1, "first"), note(3, "last")]
    assert await history.find_since_id(session_id, 0) == [note(1, "first"), note(3, "last")]
    assert await history.max_id(session_id) == last_id


async def test_append_refuses_records_it_could_not_read_back(storage: Storage) -> None:
    history, session_id = await history_setup(storage)
    bad_records = [
        (HistoryRecord("mystery", 1, {}), "Unknown history record type"),
        (HistoryRecord("note", 1.5, {}), "integer milliseconds"),  # type: ignore[arg-type]
        (HistoryRecord("note", 1, {"type": "user_message"}), "must not hold"),
        (HistoryRecord("note", 1, ["text"]), "JSON object"),  # type: ignore[arg-type]
    ]
    for record, message in bad_records:
        with pytest.raises(ValueError, match=message):
            await history.append(session_id, record)
    assert await history.max_id(session_id) is None
    with violated("foreign key"):
        await history.append("missing-session", note(1, "x"))


async def test_records_are_stored_as_legacy_wrote_them(storage: Storage) -> None:
    history, session_id = await history_setup(storage)
    record = HistoryRecord(
        "rlm_tool_call",
        1772011920020,
        {
            "toolCallId": "toolu_01ABC",
            "snapshotId": "drj1fj9sirgfrqays61d0h12",
            "printOutput": ["starting…"],
            "toolCallCount": 1,
            "toolName": "read_file",
            "toolArgs": {"path": "/tmp/отчёт.txt", "a": None},
        },
    )
    await history.append(session_id, record)
    [row] = await stored_query(storage.db, "SELECT type, at, data FROM session_history")
    assert tuple(row.values()) == (
        "rlm_tool_call",
        1772011920020,
        '{"toolCallId":"toolu_01ABC","snapshotId":"drj1fj9sirgfrqays61d0h12","printOutput":["starting…"],'
        '"toolCallCount":1,"toolName":"read_file","toolArgs":{"path":"/tmp/отчёт.txt","a":null}}',
    )
    (read,) = await history.find_by_session_id(session_id)
    assert read == record
    assert list(read.data) == ["toolCallId", "snapshotId", "printOutput", "toolCallCount", "toolName", "toolArgs"]
    with pytest.raises(TypeError):
        read.data["toolArgs"]["path"] = "/elsewhere"
