"""TasksRepository: the legacy tasksRepository.spec tests, plus composite-key isolation."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable

import pytest

from daycare.storage.db.database import Database
from daycare.storage.facade import Storage
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.tasks import TaskRecord, TasksRepository
from tests.storage.cache_checks import assert_cache_matches
from tests.storage.raw_rows import sql_run, stored_rows, stored_types

CTX = Context("user-1", "agent-1")


def task(id: str = "task-1", user_id: str = "user-1", **fields: object) -> TaskRecord:
    values: dict[str, object] = {
        "title": "Daily report",
        "description": "Summarize yesterday",
        "code": "print('hello')",
        "created_at": 10,
        "updated_at": 10,
    }
    values.update(fields)
    return TaskRecord(id=id, user_id=user_id, **values)  # type: ignore[arg-type]


async def test_supports_create_find_update_and_delete(storage: Storage) -> None:
    """Legacy: "supports create, find, update, and delete"."""
    record = task()
    await storage.tasks.create(record)

    assert await storage.tasks.find_by_id(CTX, "task-1") == record
    assert [item.id for item in await storage.tasks.find_many(CTX)] == ["task-1"]

    await storage.tasks.update(CTX, "task-1", title="Daily report updated", code="print('updated')", updated_at=20)
    updated = await storage.tasks.find_by_id(CTX, "task-1")
    assert updated is not None
    assert (updated.title, updated.code, updated.updated_at, updated.deleted_at) == (
        "Daily report updated",
        "print('updated')",
        20,
        None,
    )

    assert await storage.tasks.delete(CTX, "task-1") is True
    assert await storage.tasks.delete(CTX, "task-1") is False
    assert await storage.tasks.find_by_id(CTX, "task-1") is None
    deleted = await storage.tasks.find_any_by_id(CTX, "task-1")
    assert deleted is not None and deleted.id == "task-1"
    assert isinstance(deleted.deleted_at, int)


async def test_returns_cached_task_on_repeated_read(storage: Storage, db: Database) -> None:
    """Legacy: "returns cached task on repeated read"."""
    await storage.tasks.create(task("cached-task", description=None, code="print('cache')", created_at=1, updated_at=1))
    first = await storage.tasks.find_by_id(CTX, "cached-task")
    assert first is not None
    await sql_run(db, "DELETE FROM tasks WHERE user_id = ? AND id = ?", ["user-1", "cached-task"])
    second = await storage.tasks.find_by_id(CTX, "cached-task")
    assert second is not None and second.id == "cached-task"
    # A second repository on the same file has its own cache and sees the row is gone.
    assert await Storage.from_database(db).tasks.find_by_id(CTX, "cached-task") is None


async def test_scopes_ids_by_user(storage: Storage) -> None:
    """Legacy: "scopes ids by user"."""
    await storage.tasks.create(task("task-shared", "user-1", title="A", description=None, created_at=1, updated_at=1))
    await storage.tasks.create(task("task-shared", "user-2", title="B", description=None, created_at=2, updated_at=2))
    first = await storage.tasks.find_by_id(Context("user-1", "agent-1"), "task-shared")
    second = await storage.tasks.find_by_id(Context("user-2", "agent-2"), "task-shared")
    assert first is not None and first.title == "A"
    assert second is not None and second.title == "B"


async def test_same_id_under_two_users_is_two_tasks(db: Database) -> None:
    """Reading, updating and soft-deleting one user's task never touches the other's (fresh caches each step)."""
    alice, bob = Context("alice"), Context("bob")
    writer = Storage.from_database(db).tasks
    await writer.create(task("shared", "alice", title="Alice's"))
    await writer.create(task("shared", "bob", title="Bob's"))

    await Storage.from_database(db).tasks.update(alice, "shared", title="Alice's new", updated_at=30)
    reader = Storage.from_database(db).tasks
    alice_task, bob_task = await reader.find_by_id(alice, "shared"), await reader.find_by_id(bob, "shared")
    assert alice_task is not None and (alice_task.title, alice_task.updated_at) == ("Alice's new", 30)
    assert bob_task == task("shared", "bob", title="Bob's")

    assert await Storage.from_database(db).tasks.delete(bob, "shared") is True
    reader = Storage.from_database(db).tasks
    assert await reader.find_by_id(bob, "shared") is None
    assert await reader.find_by_id(alice, "shared") == alice_task
    rows = await stored_rows(db, "tasks", "user_id")
    assert [(row["user_id"], row["title"], row["deleted_at"] is None) for row in rows] == [
        ("alice", "Alice's new", True),
        ("bob", "Bob's", False),
    ]


async def test_soft_delete_keeps_the_id_reserved(storage: Storage, db: Database) -> None:
    await storage.tasks.create(task())
    assert await storage.tasks.delete(CTX, "task-1")
    with pytest.raises(ValueError, match=r"^Task id is reserved by a deleted task: task-1$"):
        await Storage.from_database(db).tasks.create(task(title="again"))
    with pytest.raises(ValueError, match=r"^Task id is reserved by a deleted task: task-1$"):
        await storage.tasks.create(task(title="again"))
    [row] = await stored_rows(db, "tasks", "id")
    assert row["title"] == "Daily report" and row["deleted_at"] is not None
    # Another user can still use the id, and a soft-deleted task can still be updated.
    await storage.tasks.create(task(user_id="user-2"))
    await storage.tasks.update(CTX, "task-1", title="renamed while deleted")
    deleted = await storage.tasks.find_any_by_id(CTX, "task-1")
    assert deleted is not None and deleted.title == "renamed while deleted" and deleted.deleted_at is not None


async def test_create_overwrites_a_live_task_and_trims_the_user(storage: Storage, db: Database) -> None:
    await storage.tasks.create(task(user_id="  user-1 "))
    await storage.tasks.create(task(title="Replaced", created_at=99, updated_at=99, description=None))
    [row] = await stored_rows(db, "tasks", "id")
    assert row == {
        "id": "task-1",
        "user_id": "user-1",
        "title": "Replaced",
        "description": None,
        "code": "print('hello')",
        "created_at": 99,
        "updated_at": 99,
        "deleted_at": None,
    }
    with pytest.raises(ValueError, match=r"^Task userId is required.$"):
        await storage.tasks.create(task(user_id="   "))


async def test_find_many_and_find_all_skip_deleted_tasks_in_update_order(storage: Storage) -> None:
    await storage.tasks.create(task("late", updated_at=30))
    await storage.tasks.create(task("early", updated_at=10))
    await storage.tasks.create(task("gone", updated_at=20))
    await storage.tasks.create(task("other-user", user_id="user-2", updated_at=15))
    await storage.tasks.delete(CTX, "gone")
    assert [item.id for item in await storage.tasks.find_many(CTX)] == ["early", "late"]
    assert [item.id for item in await storage.tasks.find_all()] == ["early", "other-user", "late"]


async def test_update_merges_and_moves_between_users(storage: Storage, db: Database) -> None:
    await storage.tasks.create(task())
    with pytest.raises(LookupError, match=r"^Task not found: missing$"):
        await storage.tasks.update(CTX, "missing", title="x")
    with pytest.raises(ValueError, match=r"title cannot be None"):
        await storage.tasks.update(CTX, "task-1", title=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"has no field 'colour'"):
        await storage.tasks.update(CTX, "task-1", colour="red")  # type: ignore[call-arg]
    # A blank user id keeps the current user; None clears the description.
    await storage.tasks.update(CTX, "task-1", user_id="  ", description=None)
    kept = await storage.tasks.find_by_id(CTX, "task-1")
    assert kept == task(description=None)

    await storage.tasks.update(CTX, "task-1", user_id=" user-2 ")
    assert await storage.tasks.find_any_by_id(CTX, "task-1") is None
    moved = await storage.tasks.find_by_id(Context("user-2"), "task-1")
    assert moved == task(user_id="user-2", description=None)
    assert [(row["user_id"], row["id"]) for row in await stored_rows(db, "tasks", "id")] == [("user-2", "task-1")]


async def test_records_are_frozen_and_stored_as_integers(storage: Storage, db: Database) -> None:
    record = task()
    await storage.tasks.create(record)
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.title = "changed"  # type: ignore[misc]
    await storage.tasks.delete(CTX, "task-1")
    assert await stored_types(db, "tasks", "deleted_at", "id") == ["integer"]
    assert await stored_types(db, "tasks", "created_at", "id") == ["integer"]


async def test_loads_racing_writes_leave_the_cache_equal_to_the_file(storage: Storage, db: Database) -> None:
    """A load on a cold cache and a write to the same task (update, soft delete, revive, overwrite) run together."""
    await storage.tasks.create(task("raced"))
    await storage.tasks.create(task("calm", updated_at=5))
    await storage.tasks.create(task("raced", "user-2"))  # the same id under another user is another key
    keys = [("user-1", "raced"), ("user-1", "calm"), ("user-2", "raced")]
    for round in range(32):
        repo = TasksRepository(db)  # a fresh instance: its loads miss the cache
        loads: list[Awaitable[object]] = [
            repo.find_all(),
            repo.find_any_by_id(CTX, "raced"),
            repo.find_by_id(Context("user-2"), "raced"),
        ]
        kind = round % 4
        write: Awaitable[object]
        if kind == 0:
            write = repo.update(CTX, "raced", title=f"run {round}", updated_at=round)
        elif kind == 1:
            write = repo.delete(CTX, "raced")
        elif kind == 2:
            write = repo.update(CTX, "raced", deleted_at=None, updated_at=round)
        else:
            write = repo.create(task("raced", title=f"created {round}", updated_at=round))
        loads.insert(round % 3, write)  # the write goes first, second or third
        await asyncio.gather(*loads)
        fresh = TasksRepository(db)
        rows = {key: await fresh.find_any_by_id(Context(key[0]), key[1]) for key in keys}
        assert_cache_matches(repo, rows)
        assert await repo.find_any_by_id(CTX, "raced") == rows[("user-1", "raced")]


async def test_delete_of_a_task_deleted_elsewhere_reports_false_and_rereads(storage: Storage, db: Database) -> None:
    """A stale cached task is not stamped as deleted by this repository: the file is read again."""
    await storage.tasks.create(task())
    assert await storage.tasks.find_by_id(CTX, "task-1") is not None  # cached as live
    assert await TasksRepository(db).delete(CTX, "task-1") is True
    [row] = await stored_rows(db, "tasks", "id")
    assert await storage.tasks.delete(CTX, "task-1") is False
    deleted = await storage.tasks.find_any_by_id(CTX, "task-1")
    assert deleted is not None and deleted.deleted_at == row["deleted_at"]
