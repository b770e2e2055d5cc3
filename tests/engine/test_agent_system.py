"""The default agent port: posts land in the durable inbox as legacy JSON; system agents are found or created."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from daycare.engine.agent_system import AgentSystem, AgentTarget, DescriptorTarget, system_agent_target
from daycare.engine.durable_inbox import DurableInboxAgentSystem
from daycare.storage.facade import Storage
from daycare.storage.repositories.context import Context
from tests.engine.helpers import FakeTime, agent_create, inbox_items

USER = Context("user-1")


def agents_build(storage: Storage, tmp_path: Path, time: FakeTime | None = None) -> DurableInboxAgentSystem:
    return DurableInboxAgentSystem(storage=storage, users_dir=tmp_path / "users", clock=(time or FakeTime()).now)


async def test_it_is_an_agent_system(storage: Storage, tmp_path: Path) -> None:
    port: AgentSystem = agents_build(storage, tmp_path)
    await agent_create(storage, "agent-1")
    assert await port.agent_exists("agent-1") is True
    assert await port.agent_exists("nobody") is False
    assert await port.agent_exists("  ") is False
    assert await port.context_for_agent_id("agent-1") == Context("user-1", "agent-1")
    assert await port.context_for_agent_id("nobody") is None


async def test_a_post_is_one_inbox_row_with_the_item_as_legacy_json(storage: Storage, tmp_path: Path) -> None:
    time = FakeTime(1_772_013_600_000)
    agents = agents_build(storage, tmp_path, time)
    await agent_create(storage, "agent-1")
    item = {
        "type": "message",
        "message": {"text": "Are you there? ✓", "files": []},
        "context": {"messageId": "4242"},
    }
    await agents.post(USER, AgentTarget("agent-1"), item)
    (row,) = await storage.inbox.find_by_agent_id("agent-1")
    assert (row.agent_id, row.posted_at, row.type) == ("agent-1", time.now(), "message")
    assert len(row.id) == 24
    assert (
        row.data == '{"type":"message","message":{"text":"Are you there? ✓","files":[]},"context":{"messageId":"4242"}}'
    )


async def test_posts_that_cannot_be_delivered_raise_and_write_nothing(storage: Storage, tmp_path: Path) -> None:
    agents = agents_build(storage, tmp_path)
    await agent_create(storage, "agent-1")
    await agent_create(storage, "agent-dead", lifecycle="dead")
    reset = {"type": "reset"}
    with pytest.raises(LookupError, match="^Agent not found: ghost$"):
        await agents.post(USER, AgentTarget("ghost"), reset)
    with pytest.raises(ValueError, match="^Cannot post to agent from another user: agent-1$"):
        await agents.post(Context("user-2"), AgentTarget("agent-1"), reset)
    with pytest.raises(ValueError, match="^Agent is dead: agent-dead$"):
        await agents.post(USER, AgentTarget("agent-dead"), reset)
    with pytest.raises(ValueError, match="Unsupported inbox item type: 'note'"):
        await agents.post(USER, AgentTarget("agent-1"), {"type": "note"})
    with pytest.raises(ValueError, match="Only system agent descriptors"):
        await agents.post(USER, DescriptorTarget({"type": "subagent", "id": "x"}), reset)
    assert await inbox_items(storage, "agent-1") == [] and await inbox_items(storage, "agent-dead") == []


async def test_a_system_descriptor_finds_the_users_agent_or_creates_it_once(storage: Storage, tmp_path: Path) -> None:
    time = FakeTime()
    agents = agents_build(storage, tmp_path, time)
    target = system_agent_target("cron")
    first, second = await asyncio.gather(
        agents.agent_id_for_target(USER, target), agents.agent_id_for_target(USER, target)
    )
    assert first == second
    other_user = await agents.agent_id_for_target(Context("user-2"), target)
    heartbeat = await agents.agent_id_for_target(USER, system_agent_target("heartbeat"))
    assert len({first, other_user, heartbeat}) == 3

    record = await storage.agents.find_by_id(first)
    assert record is not None
    assert (record.user_id, record.type, record.descriptor, record.lifecycle, record.tokens, record.stats) == (
        "user-1",
        "system",
        {"type": "system", "tag": "cron"},
        "active",
        None,
        {},
    )
    home = (tmp_path / "users").resolve() / "user-1" / "home"
    assert record.permissions == {
        "workingDir": str(home / "desktop"),
        "writeDirs": [str(home)],
        "readDirs": [str(home), str(home.parent / "skills" / "active")],
    }
    assert record.active_session_id is not None
    session = await storage.sessions.find_by_id(record.active_session_id)
    assert session is not None and session.agent_id == first
    rows = await storage.db.connection().execute_query_dict("SELECT id, descriptor FROM agents")
    assert [row["descriptor"] for row in rows if row["id"] == first] == ['{"type":"system","tag":"cron"}']

    # A fresh port on the same file finds the same agent.
    again = agents_build(Storage.from_database(storage.db), tmp_path)
    assert await again.agent_id_for_target(USER, target) == first


async def test_a_dead_system_agent_is_replaced(storage: Storage, tmp_path: Path) -> None:
    agents = agents_build(storage, tmp_path)
    first = await agents.agent_id_for_target(USER, system_agent_target("cron"))
    await storage.agents.update(first, lifecycle="dead")
    second = await agents.agent_id_for_target(USER, system_agent_target("cron"))
    assert second != first


async def test_the_system_agent_is_looked_up_once_then_checked_by_id(
    storage: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A post must not read all of a user's agents each time (29.8 ms per post with 2,000 agents before)."""
    agents = agents_build(storage, tmp_path)
    for number in range(30):
        await agent_create(storage, f"agent-{number}")  # agents of other types are never parsed for this
    lookups: list[tuple[str, str | None]] = []
    original = storage.agents.find_by_user_id

    async def counted(user_id: str, *, type: str | None = None) -> Any:
        lookups.append((user_id, type))
        return await original(user_id, type=type)

    monkeypatch.setattr(storage.agents, "find_by_user_id", counted)
    target = system_agent_target("cron")
    ids = {await agents.agent_id_for_target(USER, target) for _ in range(50)}
    assert len(ids) == 1
    assert lookups == [("user-1", "system")]
