"""HeartbeatTasksRepository: the legacy heartbeatTasksRepository.spec tests, plus the composite foreign key."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable

import pytest

from daycare.storage.db.database import Database
from daycare.storage.facade import Storage
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.heartbeat_tasks import HeartbeatTaskRecord, HeartbeatTasksRepository
from daycare.storage.repositories.tasks import TaskRecord
from tests.storage.cache_checks import assert_cache_matches
from tests.storage.helpers import violated
from tests.storage.raw_rows import sql_rows, sql_run, stored_rows


async def task_create(storage: Storage, id: str, user_id: str = "user-1", at: int = 10) -> None:
    await storage.tasks.create(TaskRecord(id, user_id, id.title(), None, f"Check {id}", at, at))


def entry(id: str, task_id: str, user_id: str = "user-1", at: int = 10, **fields: object) -> HeartbeatTaskRecord:
    values: dict[str, object] = {"title": id.title(), "last_run_at": None, "created_at": at, "updated_at": at}
    values.update(fields)
    return HeartbeatTaskRecord(id=id, task_id=task_id, user_id=user_id, **values)  # type: ignore[arg-type]


async def test_supports_create_find_update_delete_and_record_run(storage: Storage) -> None:
    """Legacy: "supports create, find, update, delete, and recordRun"."""
    await task_create(storage, "task-alpha", at=10)
    await task_create(storage, "task-beta", at=11)
    first, second = entry("alpha", "task-alpha", at=10), entry("beta", "task-beta", at=11)
    await storage.heartbeat_tasks.create(first)
    await storage.heartbeat_tasks.create(second)

    assert await storage.heartbeat_tasks.find_by_id("alpha") == first
    assert sorted(item.id for item in await storage.heartbeat_tasks.find_all()) == ["alpha", "beta"]

    await storage.heartbeat_tasks.update("alpha", title="Alpha Deep", updated_at=20)
    updated = await storage.heartbeat_tasks.find_by_id("alpha")
    assert updated is not None and updated.title == "Alpha Deep"

    await storage.heartbeat_tasks.record_run(30)
    assert all(item.last_run_at == 30 for item in await storage.heartbeat_tasks.find_all())

    assert await storage.heartbeat_tasks.delete("beta") is True
    assert await storage.heartbeat_tasks.delete("beta") is False
    assert await storage.heartbeat_tasks.find_by_id("beta") is None


async def test_returns_cached_task_on_repeated_read(storage: Storage, db: Database) -> None:
    """Legacy: "returns cached task on repeated read"."""
    await task_create(storage, "task-cache-heartbeat", at=1)
    await storage.heartbeat_tasks.create(entry("cache-heartbeat", "task-cache-heartbeat", at=1))
    assert await storage.heartbeat_tasks.find_by_id("cache-heartbeat") is not None
    await sql_run(db, "DELETE FROM tasks_heartbeat WHERE id = ?", ["cache-heartbeat"])
    second = await storage.heartbeat_tasks.find_by_id("cache-heartbeat")
    assert second is not None and second.id == "cache-heartbeat"


async def test_record_run_touches_every_user_in_the_file_and_the_cache(storage: Storage, db: Database) -> None:
    await task_create(storage, "t-a", "alice")
    await task_create(storage, "t-b", "bob")
    await storage.heartbeat_tasks.create(entry("a", "t-a", "alice"))
    await storage.heartbeat_tasks.create(entry("b", "t-b", "bob"))
    await storage.heartbeat_tasks.record_run(99)
    assert [(row["last_run_at"], row["updated_at"]) for row in await stored_rows(db, "tasks_heartbeat", "id")] == [
        (99, 99),
        (99, 99),
    ]
    cached = await storage.heartbeat_tasks.find_by_id("b")
    assert cached is not None and (cached.last_run_at, cached.updated_at) == (99, 99)


async def test_a_heartbeat_can_only_point_at_a_task_of_its_own_user(storage: Storage, db: Database) -> None:
    await task_create(storage, "alice-task", "alice")
    with violated("foreign key"):
        await storage.heartbeat_tasks.create(entry("hb", "alice-task", "bob"))
    assert await stored_rows(db, "tasks_heartbeat", "id") == []
    await storage.heartbeat_tasks.create(entry("hb", "alice-task", "alice"))
    with violated("foreign key"):
        await storage.heartbeat_tasks.update("hb", user_id="bob")
    # A soft-deleted task still counts as a parent.
    assert await storage.tasks.delete(Context("alice"), "alice-task")
    await storage.heartbeat_tasks.create(entry("hb2", "alice-task", "alice"))


async def test_find_many_scopes_by_user_and_task(storage: Storage) -> None:
    await task_create(storage, "t-a", "alice")
    await task_create(storage, "t-a2", "alice")
    await task_create(storage, "t-b", "bob")
    await storage.heartbeat_tasks.create(entry("a2", "t-a2", "alice", at=2))
    await storage.heartbeat_tasks.create(entry("a1", "t-a", "alice", at=1))
    await storage.heartbeat_tasks.create(entry("b1", "t-b", "bob", at=0))
    alice = Context("alice")
    assert [item.id for item in await storage.heartbeat_tasks.find_many(alice)] == ["a1", "a2"]
    assert [item.id for item in await storage.heartbeat_tasks.find_many_by_task_id(alice, "t-a2")] == ["a2"]
    assert [item.id for item in await storage.heartbeat_tasks.find_all()] == ["b1", "a1", "a2"]


async def test_update_rules_and_errors(storage: Storage, db: Database) -> None:
    await task_create(storage, "t")
    await storage.heartbeat_tasks.create(entry("hb", " t "))
    cached = await storage.heartbeat_tasks.find_by_id("hb")
    assert cached is not None and cached.task_id == "t"
    with pytest.raises(ValueError, match=r"^Heartbeat trigger taskId is required.$"):
        await storage.heartbeat_tasks.create(entry("hb2", ""))
    with pytest.raises(LookupError, match=r"^Heartbeat task not found: nope$"):
        await storage.heartbeat_tasks.update("nope", title="x")
    await storage.heartbeat_tasks.update("hb", task_id=None, user_id=None, last_run_at=5)
    await storage.heartbeat_tasks.update("hb", last_run_at=None)
    [row] = await stored_rows(db, "tasks_heartbeat", "id")
    assert row == {
        "id": "hb",
        "task_id": "t",
        "user_id": "user-1",
        "title": "Hb",
        "last_run_at": None,
        "created_at": 10,
        "updated_at": 10,
    }


async def test_update_accepts_a_whole_record_but_not_another_id(storage: Storage, db: Database) -> None:
    """A whole record can be passed to update() (its own id is ignored); another id cannot."""
    await task_create(storage, "t")
    await storage.heartbeat_tasks.create(entry("hb", "t"))
    current = await storage.heartbeat_tasks.find_by_id("hb")
    assert current is not None
    changed = dataclasses.replace(current, title="Renamed", last_run_at=40, updated_at=40)
    await storage.heartbeat_tasks.update("hb", **dataclasses.asdict(changed))
    assert await Storage.from_database(db).heartbeat_tasks.find_by_id("hb") == changed
    with pytest.raises(TypeError, match=r"id cannot be changed"):
        await storage.heartbeat_tasks.update("hb", id="other", title="x")  # type: ignore[call-arg]
    assert (await stored_rows(db, "tasks_heartbeat", "id"))[0]["title"] == "Renamed"


async def test_record_run_for_stamps_only_the_given_entries(storage: Storage, db: Database) -> None:
    """The engine's heartbeat runs stamp the entries that ran; record_run stamps them all (legacy)."""
    await task_create(storage, "task-alpha")
    await task_create(storage, "task-beta")
    await task_create(storage, "task-other", user_id="user-2")
    await storage.heartbeat_tasks.create(entry("alpha", "task-alpha"))
    await storage.heartbeat_tasks.create(entry("beta", "task-beta"))
    await storage.heartbeat_tasks.create(entry("other", "task-other", user_id="user-2"))
    assert await storage.heartbeat_tasks.find_by_id("alpha") is not None  # cached

    await storage.heartbeat_tasks.record_run_for(["alpha", "missing"], 40)
    await storage.heartbeat_tasks.record_run_for([], 50)

    alpha = await storage.heartbeat_tasks.find_by_id("alpha")  # from the cache, updated in place
    assert alpha is not None and (alpha.last_run_at, alpha.updated_at) == (40, 40)
    cached = {item.id: (item.last_run_at, item.updated_at) for item in await storage.heartbeat_tasks.find_all()}
    assert cached == {"alpha": (40, 40), "beta": (None, 10), "other": (None, 10)}
    rows = await sql_rows(db, "SELECT id, last_run_at, updated_at FROM tasks_heartbeat ORDER BY id")
    assert [(row["id"], row["last_run_at"], row["updated_at"]) for row in rows] == [
        ("alpha", 40, 40),
        ("beta", None, 10),
        ("other", None, 10),
    ]
    with pytest.raises(TypeError, match="not one string"):
        await storage.heartbeat_tasks.record_run_for("alpha", 60)


async def test_update_refuses_an_unknown_field(storage: Storage) -> None:
    await task_create(storage, "t")
    await storage.heartbeat_tasks.create(entry("hb", "t"))
    with pytest.raises(TypeError, match=r"^Heartbeat task has no field 'colour'$"):
        await storage.heartbeat_tasks.update("hb", colour="red")  # type: ignore[call-arg]


async def test_loads_racing_writes_leave_the_cache_equal_to_the_file(storage: Storage, db: Database) -> None:
    """A load on a cold cache and a write (update, create, or a run stamp of many rows) run together."""
    await task_create(storage, "t")
    for id in ("a", "b", "c"):
        await storage.heartbeat_tasks.create(entry(id, "t"))
    for round in range(30):
        repo = HeartbeatTasksRepository(db)  # a fresh instance: its loads miss the cache
        loads: list[Awaitable[object]] = [repo.find_all(), repo.find_by_id("a"), repo.find_by_id("c")]
        kind = round % 4
        write: Awaitable[object]
        if kind == 0:
            write = repo.update("a", title=f"run {round}", updated_at=round)
        elif kind == 1:
            write = repo.record_run(round)
        elif kind == 2:
            write = repo.record_run_for(["a", "c"], round)
        else:
            write = repo.create(entry("a", "t", title=f"created {round}", at=round))
        loads.insert(round % 3, write)  # the write goes first, second or third
        await asyncio.gather(*loads)
        rows = {record.id: record for record in await HeartbeatTasksRepository(db).find_all()}
        assert_cache_matches(repo, rows)
        assert await repo.find_by_id("a") == rows["a"]


async def test_a_run_stamp_and_an_update_of_the_same_entry_lose_neither(storage: Storage, db: Database) -> None:
    """The stamp holds the entries' write locks, so an update's read-modify-write cannot undo it."""
    await task_create(storage, "t")
    for id in ("a", "b"):
        await storage.heartbeat_tasks.create(entry(id, "t"))
    repo = storage.heartbeat_tasks
    for round in range(1, 21):
        assert await repo.find_by_id("a") is not None  # cached, so the update starts from the cache
        update = repo.update("a", title=f"run {round}")
        stamp = repo.record_run_for(["b", "a"], round) if round % 4 < 2 else repo.record_run(round)
        await asyncio.gather(*((update, stamp) if round % 2 else (stamp, update)))
        stored = await HeartbeatTasksRepository(db).find_by_id("a")
        assert stored is not None and (stored.title, stored.last_run_at) == (f"run {round}", round)
        assert await repo.find_by_id("a") == stored
