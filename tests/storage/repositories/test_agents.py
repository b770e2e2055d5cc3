"""AgentsRepository: the legacy agentsRepository.spec plus update semantics, JSON bytes,
strict JSON reads, frozen caches and the upsert that must not cascade."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from daycare.storage.facade import Storage
from daycare.storage.repositories.agents import AgentsRepository
from daycare.storage.repositories.history import HistoryRecord
from tests.storage.helpers import PERMISSIONS, agent_record, owner_id
from tests.storage.raw_rows import sql_rows, sql_run, stored_query


async def test_supports_create_find_and_update(storage: Storage) -> None:
    """agentsRepository.spec: supports create, find and update."""
    repo = AgentsRepository(storage.db)
    record = agent_record("agent-1", await owner_id(storage))
    await repo.create(record)
    assert await repo.find_by_id("agent-1") == record

    await repo.update("agent-1", lifecycle="sleeping", updated_at=2)
    updated = await repo.find_by_id("agent-1")
    assert updated is not None
    assert (updated.lifecycle, updated.updated_at) == ("sleeping", 2)

    listed = await repo.find_all()
    assert [agent.id for agent in listed] == ["agent-1"]


async def test_returns_cached_agent_on_repeated_read(storage: Storage) -> None:
    """agentsRepository.spec: returns cached agent on repeated read."""
    repo = AgentsRepository(storage.db)
    await repo.create(agent_record("agent-cache", await owner_id(storage)))
    assert (await repo.find_by_id("agent-cache")) is not None
    await sql_run(storage.db, "DELETE FROM agents WHERE id = ?", ["agent-cache"])
    second = await repo.find_by_id("agent-cache")
    assert second is not None and second.id == "agent-cache"


async def test_loads_from_db_on_cache_miss(storage: Storage) -> None:
    """agentsRepository.spec: loads from db on cache miss."""
    repo = AgentsRepository(storage.db)
    await sql_run(
        storage.db,
        "INSERT INTO agents (id, user_id, type, descriptor, active_session_id, permissions, tokens, stats, "
        "lifecycle, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            "agent-db",
            await owner_id(storage),
            "cron",
            '{"type":"cron","id":"agent-db","name":"db"}',
            None,
            '{"workingDir":"/workspace","writeDirs":["/workspace"]}',
            None,
            "{}",
            "active",
            1,
            2,
        ],
    )
    loaded = await repo.find_by_id("agent-db")
    assert loaded is not None
    assert (loaded.id, loaded.updated_at, loaded.tokens) == ("agent-db", 2, None)
    assert loaded.descriptor == {"type": "cron", "id": "agent-db", "name": "db"}


async def test_finds_agents_by_user_id(storage: Storage) -> None:
    """agentsRepository.spec: finds agents by user id."""
    owner = await owner_id(storage)
    other = await storage.users.create(nametag="other-user-42")
    repo = AgentsRepository(storage.db)
    await repo.create(agent_record("agent-owner", owner))
    await repo.create(agent_record("agent-other", other.id, created_at=2, updated_at=2))
    assert [agent.id for agent in await repo.find_by_user_id(owner)] == ["agent-owner"]
    assert [agent.id for agent in await repo.find_by_user_id(other.id)] == ["agent-other"]


async def test_find_many_orders_by_updated_at_and_then_serves_the_cache(storage: Storage) -> None:
    owner = await owner_id(storage)
    repo = storage.agents
    for agent_id, updated_at in (("c", 5), ("a", 9), ("b", 5)):
        await repo.create(agent_record(agent_id, owner, updated_at=updated_at))
    assert [agent.id for agent in await repo.find_all()] == ["c", "b", "a"]
    await sql_run(storage.db, "DELETE FROM agents")
    assert [agent.id for agent in await repo.find_all()] == ["c", "b", "a"]
    assert [agent.id for agent in await repo.find_by_user_id(owner)] == ["c", "b", "a"]
    # A write that fails evicts its key and forgets that every row was loaded: the next read asks the file.
    with pytest.raises(ValueError, match="lifecycle cannot be None"):
        await repo.update("a", lifecycle=None)  # type: ignore[typeddict-item]
    assert await repo.find_all() == []


async def test_update_merges_like_legacy(storage: Storage) -> None:
    repo = storage.agents
    tokens = {"provider": "openai", "model": "gpt-5", "size": {"input": 1, "output": 2}}
    await repo.create(agent_record("agent-1", await owner_id(storage), tokens=tokens, stats={"openai": {}}))
    await repo.update("agent-1", descriptor=None, permissions=None, stats=None, active_session_id="s1")
    kept = await repo.find_by_id("agent-1")
    assert kept is not None
    assert (kept.descriptor["name"], kept.permissions, kept.stats, kept.tokens) == (
        "job",
        PERMISSIONS,
        {"openai": {}},
        tokens,
    )
    assert kept.active_session_id == "s1"
    await repo.update("agent-1", tokens=None, active_session_id=None)
    cleared = await AgentsRepository(storage.db).find_by_id("agent-1")
    assert cleared is not None and (cleared.tokens, cleared.active_session_id) == (None, None)


async def test_update_rejects_bad_input_and_missing_agents(storage: Storage) -> None:
    repo = storage.agents
    await repo.create(agent_record("agent-1", await owner_id(storage)))
    with pytest.raises(TypeError, match="colour"):
        await repo.update("agent-1", colour="red")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="never changes"):
        await repo.update("agent-1", id="agent-2")
    with pytest.raises(LookupError, match=r"^Agent not found: missing$"):
        await repo.update("missing", lifecycle="dead")
    with pytest.raises(ValueError, match="Agent lifecycle cannot be None"):
        await repo.update("agent-1", lifecycle=None)  # type: ignore[typeddict-item]
    assert (await repo.find_by_id("agent-1")) == agent_record("agent-1", (await owner_id(storage)))


async def test_json_is_written_as_legacy_wrote_it(storage: Storage) -> None:
    descriptor = {"type": "permanent", "name": "Chef", "description": "Cooking 🍳 — рецепты", "z": 1, "a": [1.5]}
    record = agent_record("agent-json", await owner_id(storage), descriptor=descriptor, tokens={})
    await storage.agents.create(record)
    [row] = await stored_query(
        storage.db, "SELECT descriptor, permissions, tokens, stats FROM agents WHERE id = 'agent-json'"
    )
    assert tuple(row.values()) == (
        '{"type":"permanent","name":"Chef","description":"Cooking 🍳 — рецепты","z":1,"a":[1.5]}',
        '{"workingDir":"/workspace","writeDirs":["/workspace"]}',
        "{}",  # an empty object is a value (JS `{}` is truthy); only None is NULL
        "{}",
    )


async def test_a_row_with_broken_json_reads_as_missing_and_is_logged_once(
    storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    await storage.agents.create(agent_record("good", await owner_id(storage), updated_at=5))
    await sql_run(
        storage.db,
        "INSERT INTO agents (id, user_id, type, descriptor, permissions, created_at, updated_at) "
        "VALUES ('broken', 'u', 'cron', '{not json', '{}', 1, 1)",
    )
    fresh = Storage.from_database(storage.db).agents
    assert await fresh.find_by_id("broken") is None
    assert await fresh.find_by_id("broken") is None
    assert [record.id for record in await fresh.find_all()] == ["good"]
    skipped = [r.getMessage() for r in caplog.records if "unreadable row of agents" in r.getMessage()]
    assert len(skipped) == 1, skipped
    assert "(id='broken'): descriptor is not JSON" in skipped[0]


async def test_empty_tokens_text_reads_as_none(storage: Storage) -> None:
    await sql_run(
        storage.db,
        "INSERT INTO agents (id, user_id, type, descriptor, permissions, tokens, created_at, updated_at) "
        "VALUES ('empty', 'u', 'cron', '{}', '{}', '', 1, 1)",
    )
    loaded = await storage.agents.find_by_id("empty")
    assert loaded is not None and loaded.tokens is None and loaded.stats == {}


async def test_callers_cannot_change_the_cache(storage: Storage) -> None:
    descriptor: dict[str, Any] = {"type": "cron", "id": "agent-1", "name": "before", "tags": ["x"]}
    record = agent_record("agent-1", await owner_id(storage), descriptor=descriptor)
    await storage.agents.create(record)
    descriptor["name"] = "after"
    descriptor["tags"].append("y")
    cached = await storage.agents.find_by_id("agent-1")
    assert cached is not None and cached.descriptor == {
        "type": "cron",
        "id": "agent-1",
        "name": "before",
        "tags": ["x"],
    }
    with pytest.raises(TypeError):
        cached.descriptor["name"] = "mutated"  # type: ignore[index]
    with pytest.raises(TypeError):
        cached.descriptor["tags"].append("z")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cached.lifecycle = "dead"  # type: ignore[misc]
    assert (await storage.agents.find_by_id("agent-1")) == cached


async def test_upsert_keeps_sessions_and_history(storage: Storage) -> None:
    """ON CONFLICT DO UPDATE, never REPLACE: re-creating an agent must not cascade-delete its data."""
    record = agent_record("agent-1", await owner_id(storage))
    created = await storage.create_agent_with_session(record)
    await storage.append_history("agent-1", HistoryRecord("note", 5, {"text": "kept"}))
    await storage.agents.create(dataclasses.replace(record, lifecycle="sleeping", created_at=7))
    assert len(await storage.sessions.find_by_agent_id("agent-1")) == 1
    assert await storage.history.find_by_session_id(created.session_id) == [HistoryRecord("note", 5, {"text": "kept"})]
    rows = await sql_rows(storage.db, "SELECT lifecycle, created_at FROM agents")
    assert [tuple(row.values()) for row in rows] == [("sleeping", 7)]


@pytest.mark.parametrize("reader", ["row_load", "_read"])
async def test_a_slow_load_never_caches_the_row_a_write_replaced(
    storage: Storage, monkeypatch: pytest.MonkeyPatch, reader: str
) -> None:
    """The driver suspends after a read (as asyncpg does); a write commits meanwhile; the old row must not win."""
    await storage.agents.create(agent_record("a", await owner_id(storage), updated_at=1))
    repo = AgentsRepository(storage.db)
    read_done, release = asyncio.Event(), asyncio.Event()
    original = getattr(repo, reader)

    async def slow(*args: Any) -> Any:
        result = await original(*args)
        read_done.set()
        await release.wait()
        return result

    monkeypatch.setattr(repo, reader, slow)
    load = asyncio.create_task(repo.find_by_id("a") if reader == "row_load" else repo.find_all())
    await read_done.wait()
    monkeypatch.setattr(repo, reader, original)
    await repo.update("a", updated_at=2)
    release.set()
    await load
    fresh = await AgentsRepository(storage.db).find_by_id("a")
    assert fresh is not None and fresh.updated_at == 2
    assert await repo.find_by_id("a") == fresh


async def test_loads_racing_writes_never_cache_an_older_agent(storage: Storage) -> None:
    owner = await owner_id(storage)
    await storage.agents.create(agent_record("a", owner, updated_at=0))
    for round in range(30):
        repo = AgentsRepository(storage.db)  # a cold cache: loads must read the file
        loads = [repo.find_all() if n % 2 else repo.find_by_id("a") for n in range(4)]
        writes = [repo.update("a", updated_at=round * 10 + n) for n in range(1, 4)]
        await asyncio.gather(*(loads[:2] + writes[:1] + loads[2:] + writes[1:]))
        stored = await AgentsRepository(storage.db).find_by_id("a")
        assert stored is not None and stored.updated_at == round * 10 + 3
        assert repo.cached("a") in (None, stored)
        assert await repo.find_by_id("a") == stored
