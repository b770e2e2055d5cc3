"""SessionsRepository: the legacy sessionsRepository.spec plus limit and foreign key cases."""

from __future__ import annotations

import re

import pytest

from daycare.storage.facade import Storage
from daycare.storage.repositories.sessions import SessionRecord, SessionsRepository
from tests.storage.helpers import agent_storage, violated


async def sessions_repository(storage: Storage) -> SessionsRepository:
    await agent_storage(storage)
    return SessionsRepository(storage.db)


async def test_creates_and_finds_sessions(storage: Storage) -> None:
    """sessionsRepository.spec: creates and finds sessions."""
    sessions = await sessions_repository(storage)
    session_id = await sessions.create("agent-1", inference_session_id="infer-1", created_at=5, reset_message="manual")
    assert re.fullmatch(r"[a-z0-9]{24}", session_id)
    assert await sessions.find_by_id(session_id) == SessionRecord(
        id=session_id,
        agent_id="agent-1",
        inference_session_id="infer-1",
        created_at=5,
        reset_message="manual",
        invalidated_at=None,
        processed_until=None,
        ended_at=None,
    )
    await sessions.create("agent-1", created_at=8)
    listed = await sessions.find_by_agent_id("agent-1")
    assert [session.created_at for session in listed] == [5, 8]
    assert await sessions.find_by_id("missing") is None


async def test_end_session_sets_ended_at_on_an_active_session(storage: Storage) -> None:
    """sessionsRepository.spec: endSession sets ended_at on an active session."""
    sessions = await sessions_repository(storage)
    session_id = await sessions.create("agent-1", created_at=1000)
    await sessions.end_session(session_id, 2000)
    assert (await sessions.find_by_id(session_id)).ended_at == 2000  # type: ignore[union-attr]


async def test_end_session_does_not_overwrite_ended_at(storage: Storage) -> None:
    """sessionsRepository.spec: endSession does not overwrite ended_at if already set."""
    sessions = await sessions_repository(storage)
    session_id = await sessions.create("agent-1", created_at=1000)
    await sessions.end_session(session_id, 2000)
    await sessions.end_session(session_id, 3000)
    assert (await sessions.find_by_id(session_id)).ended_at == 2000  # type: ignore[union-attr]


async def test_invalidate_sets_invalidated_at_when_null(storage: Storage) -> None:
    """sessionsRepository.spec: invalidate sets invalidated_at when null."""
    sessions = await sessions_repository(storage)
    session_id = await sessions.create("agent-1", created_at=1000)
    await sessions.invalidate(session_id, 42)
    assert (await sessions.find_by_id(session_id)).invalidated_at == 42  # type: ignore[union-attr]


async def test_invalidate_updates_when_new_value_is_larger(storage: Storage) -> None:
    """sessionsRepository.spec: invalidate updates invalidated_at when new value is larger."""
    sessions = await sessions_repository(storage)
    session_id = await sessions.create("agent-1", created_at=1000)
    await sessions.invalidate(session_id, 10)
    await sessions.invalidate(session_id, 20)
    assert (await sessions.find_by_id(session_id)).invalidated_at == 20  # type: ignore[union-attr]


async def test_invalidate_keeps_value_when_new_value_is_smaller(storage: Storage) -> None:
    """sessionsRepository.spec: invalidate keeps invalidated_at when new value is smaller."""
    sessions = await sessions_repository(storage)
    session_id = await sessions.create("agent-1", created_at=1000)
    await sessions.invalidate(session_id, 20)
    await sessions.invalidate(session_id, 10)
    assert (await sessions.find_by_id(session_id)).invalidated_at == 20  # type: ignore[union-attr]


async def test_find_invalidated_returns_only_invalidated_sessions(storage: Storage) -> None:
    """sessionsRepository.spec: findInvalidated returns only invalidated sessions."""
    sessions = await sessions_repository(storage)
    s1 = await sessions.create("agent-1", created_at=1000)
    s2 = await sessions.create("agent-1", created_at=2000)
    await sessions.create("agent-1", created_at=3000)
    await sessions.invalidate(s1, 5)
    await sessions.invalidate(s2, 10)
    assert [session.id for session in await sessions.find_invalidated(10)] == [s1, s2]


async def test_find_invalidated_respects_limit(storage: Storage) -> None:
    """sessionsRepository.spec: findInvalidated respects limit."""
    sessions = await sessions_repository(storage)
    s1 = await sessions.create("agent-1", created_at=1000)
    s2 = await sessions.create("agent-1", created_at=2000)
    await sessions.invalidate(s1, 5)
    await sessions.invalidate(s2, 10)
    assert [session.id for session in await sessions.find_invalidated(1)] == [s1]
    assert await sessions.find_invalidated(0) == []
    with pytest.raises(ValueError, match="non-negative integer"):
        await sessions.find_invalidated(-1)
    with pytest.raises(ValueError, match="non-negative integer"):
        await sessions.find_invalidated("1; DROP TABLE sessions")  # type: ignore[arg-type]


async def test_find_invalidated_orders_by_invalidated_at_ascending(storage: Storage) -> None:
    """sessionsRepository.spec: findInvalidated orders by invalidated_at ascending."""
    sessions = await sessions_repository(storage)
    s1 = await sessions.create("agent-1", created_at=1000)
    s2 = await sessions.create("agent-1", created_at=2000)
    await sessions.invalidate(s1, 20)
    await sessions.invalidate(s2, 5)
    assert [session.id for session in await sessions.find_invalidated(10)] == [s2, s1]


async def test_mark_processed_clears_and_sets_on_cas_match(storage: Storage) -> None:
    """sessionsRepository.spec: markProcessed clears invalidated_at and sets processed_until on CAS match."""
    sessions = await sessions_repository(storage)
    session_id = await sessions.create("agent-1", created_at=1000)
    await sessions.invalidate(session_id, 42)
    assert await sessions.mark_processed(session_id, 42, 42) is True
    session = await sessions.find_by_id(session_id)
    assert session is not None and (session.invalidated_at, session.processed_until) == (None, 42)


async def test_mark_processed_fails_when_invalidated_at_changed(storage: Storage) -> None:
    """sessionsRepository.spec: markProcessed fails when invalidated_at changed during processing."""
    sessions = await sessions_repository(storage)
    session_id = await sessions.create("agent-1", created_at=1000)
    await sessions.invalidate(session_id, 42)
    await sessions.invalidate(session_id, 100)  # new messages arrived during processing
    assert await sessions.mark_processed(session_id, 42, 42) is False
    session = await sessions.find_by_id(session_id)
    assert session is not None and (session.invalidated_at, session.processed_until) == (100, None)


async def test_create_for_an_unknown_agent_raises_the_foreign_key_error(storage: Storage) -> None:
    sessions = await sessions_repository(storage)
    with violated("foreign key"):
        await sessions.create("missing-agent")
    assert await sessions.find_by_agent_id("missing-agent") == []
