"""SystemPromptsRepository: the legacy systemPromptsRepository.spec tests."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable

import pytest

from daycare.storage.clock import now_ms
from daycare.storage.db.database import Database
from daycare.storage.facade import Storage
from daycare.storage.repositories.system_prompts import SystemPromptRecord, SystemPromptsRepository
from tests.storage.cache_checks import assert_cache_matches
from tests.storage.raw_rows import sql_run, stored_rows

_ids = itertools.count()


def prompt(**fields: object) -> SystemPromptRecord:
    now = now_ms()
    values: dict[str, object] = {
        "id": f"prompt-{next(_ids)}",
        "scope": "global",
        "user_id": None,
        "kind": "system",
        "condition": None,
        "prompt": "You are a helpful assistant.",
        "enabled": True,
        "created_at": now,
        "updated_at": now,
    }
    values.update(fields)
    return SystemPromptRecord(**values)  # type: ignore[arg-type]


async def test_creates_and_finds_a_prompt_by_id(storage: Storage) -> None:
    """Legacy: "creates and finds a prompt by id"."""
    await storage.system_prompts.create(prompt(id="p1"))
    found = await storage.system_prompts.find_by_id("p1")
    assert found is not None
    assert (found.id, found.prompt, found.scope, found.enabled) == (
        "p1",
        "You are a helpful assistant.",
        "global",
        True,
    )


async def test_returns_none_for_non_existent_prompt(storage: Storage) -> None:
    """Legacy: "returns null for non-existent prompt"."""
    assert await storage.system_prompts.find_by_id("nonexistent") is None


async def test_lists_all_prompts(storage: Storage) -> None:
    """Legacy: "lists all prompts"."""
    await storage.system_prompts.create(prompt(id="p1", created_at=1000))
    await storage.system_prompts.create(prompt(id="p2", created_at=2000))
    assert [item.id for item in await storage.system_prompts.find_all()] == ["p1", "p2"]


async def test_finds_prompts_by_scope(storage: Storage) -> None:
    """Legacy: "finds prompts by scope"."""
    await storage.system_prompts.create(prompt(id="g1", scope="global"))
    await storage.system_prompts.create(prompt(id="u1", scope="user", user_id="user-abc"))
    assert [item.id for item in await storage.system_prompts.find_by_scope("global")] == ["g1"]
    assert [item.id for item in await storage.system_prompts.find_by_scope("user", "user-abc")] == ["u1"]


async def test_finds_enabled_prompts_for_a_user(storage: Storage) -> None:
    """Legacy: "finds enabled prompts for a user (global + per-user)"."""
    await storage.system_prompts.create(prompt(id="g1", scope="global", enabled=True))
    await storage.system_prompts.create(prompt(id="g2", scope="global", enabled=False))
    await storage.system_prompts.create(prompt(id="u1", scope="user", user_id="user-abc", enabled=True))
    await storage.system_prompts.create(prompt(id="u2", scope="user", user_id="user-other", enabled=True))
    ids = [item.id for item in await storage.system_prompts.find_enabled("user-abc")]
    assert sorted(ids) == ["g1", "u1"]


async def test_updates_a_prompt(storage: Storage) -> None:
    """Legacy: "updates a prompt"."""
    await storage.system_prompts.create(prompt(id="p1", prompt="original"))
    await storage.system_prompts.update("p1", prompt="updated", updated_at=now_ms())
    found = await storage.system_prompts.find_by_id("p1")
    assert found is not None and found.prompt == "updated"


async def test_deletes_a_prompt(storage: Storage) -> None:
    """Legacy: "deletes a prompt"."""
    await storage.system_prompts.create(prompt(id="p1"))
    assert await storage.system_prompts.delete("p1") is True
    assert await storage.system_prompts.find_by_id("p1") is None


async def test_returns_false_when_deleting_non_existent_prompt(storage: Storage) -> None:
    """Legacy: "returns false when deleting non-existent prompt"."""
    assert await storage.system_prompts.delete("nonexistent") is False


async def test_stores_and_retrieves_condition_field(storage: Storage) -> None:
    """Legacy: "stores and retrieves condition field"."""
    await storage.system_prompts.create(prompt(id="p1", condition="new_user"))
    await storage.system_prompts.create(prompt(id="p2", condition="returning_user"))
    await storage.system_prompts.create(prompt(id="p3", condition=None))
    conditions = [await storage.system_prompts.find_by_id(id) for id in ("p1", "p2", "p3")]
    assert [item.condition if item else "missing" for item in conditions] == ["new_user", "returning_user", None]


async def test_stores_first_message_kind(storage: Storage) -> None:
    """Legacy: "stores first_message kind"."""
    await storage.system_prompts.create(prompt(id="fm1", kind="first_message", prompt="Welcome!"))
    found = await storage.system_prompts.find_by_id("fm1")
    assert found is not None and (found.kind, found.prompt) == ("first_message", "Welcome!")


async def test_scope_and_enabled_queries_without_a_user(storage: Storage) -> None:
    await storage.system_prompts.create(prompt(id="u1", scope="user", user_id="a", created_at=2))
    await storage.system_prompts.create(prompt(id="u2", scope="user", user_id="b", created_at=1))
    await storage.system_prompts.create(prompt(id="g", scope="global", created_at=3))
    # "user" without a user id returns every user-scoped prompt, oldest first.
    assert [item.id for item in await storage.system_prompts.find_by_scope("user")] == ["u2", "u1"]
    assert [item.id for item in await storage.system_prompts.find_enabled()] == ["g"]
    assert [item.id for item in await storage.system_prompts.find_enabled("a")] == ["u1", "g"]


async def test_cached_find_all_is_ordered_like_the_query(storage: Storage, db: Database) -> None:
    """The legacy cached path returned insertion order; find_all sorts by created_at like the query."""
    await storage.system_prompts.create(prompt(id="late", created_at=20))
    await storage.system_prompts.create(prompt(id="early", created_at=10))
    assert [item.id for item in await storage.system_prompts.find_all()] == ["early", "late"]
    await storage.system_prompts.create(prompt(id="earliest", created_at=5))
    assert [item.id for item in await storage.system_prompts.find_all()] == ["earliest", "early", "late"]
    await sql_run(db, "DELETE FROM system_prompts")
    assert len(await storage.system_prompts.find_all()) == 3
    assert await storage.system_prompts.find_by_id("unknown") is None


async def test_update_rules_and_stored_bytes(storage: Storage, db: Database) -> None:
    await storage.system_prompts.create(
        prompt(
            id="p",
            scope="user",
            user_id="u",
            condition="new_user",
            prompt="Говори по-русски.",
            created_at=1,
            updated_at=1,
        )
    )
    with pytest.raises(LookupError, match=r"^System prompt not found: nope$"):
        await storage.system_prompts.update("nope", prompt="x")
    with pytest.raises(ValueError, match=r"prompt cannot be None"):
        await storage.system_prompts.update("p", prompt=None)  # type: ignore[arg-type]
    await storage.system_prompts.update("p", user_id=None, condition=None, scope="global", enabled=False)
    assert await stored_rows(db, "system_prompts", "id") == [
        {
            "id": "p",
            "scope": "global",
            "user_id": None,
            "kind": "system",
            "condition": None,
            "prompt": "Говори по-русски.",
            "enabled": 0,
            "created_at": 1,
            "updated_at": 1,
        }
    ]


async def test_update_refuses_an_unknown_field(storage: Storage) -> None:
    await storage.system_prompts.create(prompt(id="p"))
    with pytest.raises(TypeError, match=r"^System prompt has no field 'colour'$"):
        await storage.system_prompts.update("p", colour="red")  # type: ignore[call-arg]


async def test_loads_racing_writes_leave_the_cache_equal_to_the_file(storage: Storage, db: Database) -> None:
    """A load on a cold cache and a write to the same prompt (update, overwrite, delete) run together."""
    await storage.system_prompts.create(prompt(id="calm", created_at=1))
    for round in range(30):
        if round % 3 == 0:
            await storage.system_prompts.create(prompt(id="raced", created_at=2))
        repo = SystemPromptsRepository(db)  # a fresh instance: its loads miss the cache
        loads: list[Awaitable[object]] = [repo.find_all(), repo.find_by_id("raced"), repo.find_all()]
        kind = round % 3
        write: Awaitable[object]
        if kind == 0:
            write = repo.update("raced", prompt=f"run {round}", enabled=bool(round % 2))
        elif kind == 1:
            write = repo.create(prompt(id="raced", prompt=f"created {round}", created_at=2))
        else:
            write = repo.delete("raced")
        loads.insert(round % 4, write)  # the write goes first, second, third or last
        await asyncio.gather(*loads)
        rows = {record.id: record for record in await SystemPromptsRepository(db).find_all()}
        assert_cache_matches(repo, rows)
        assert await repo.find_by_id("raced") == rows.get("raced")
