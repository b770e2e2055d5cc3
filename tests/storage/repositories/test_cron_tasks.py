"""CronTasksRepository: the legacy cronTasksRepository.spec tests, plus the composite foreign key."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest

from daycare.storage.db.database import Database
from daycare.storage.facade import Storage
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.cron_tasks import CronTaskRecord, CronTasksRepository
from daycare.storage.repositories.tasks import TaskRecord
from tests.storage.cache_checks import assert_cache_matches
from tests.storage.helpers import violated
from tests.storage.raw_rows import sql_run, stored_rows
from tests.storage.seeds import task_insert


def trigger(id: str = "daily-report", task_id: str = "task-daily-report", **fields: object) -> CronTaskRecord:
    values: dict[str, object] = {
        "user_id": "user-1",
        "name": "Daily Report",
        "description": "Generate daily summary",
        "schedule": "0 9 * * *",
        "agent_id": None,
        "enabled": True,
        "delete_after_run": False,
        "last_run_at": None,
        "created_at": 10,
        "updated_at": 10,
    }
    values.update(fields)
    return CronTaskRecord(id=id, task_id=task_id, **values)  # type: ignore[arg-type]


async def task_create(storage: Storage, id: str, user_id: str = "user-1") -> None:
    await storage.tasks.create(TaskRecord(id, user_id, "Daily Report", None, "Summarize yesterday.", 10, 10))


async def test_supports_create_find_update_and_delete(storage: Storage) -> None:
    """Legacy: "supports create, find, update, and delete"."""
    await task_create(storage, "task-daily-report")
    record = trigger()
    await storage.cron_tasks.create(record)

    assert await storage.cron_tasks.find_by_id("daily-report") == record
    enabled_only = await storage.cron_tasks.find_all()
    assert [item.id for item in enabled_only] == ["daily-report"]

    await storage.cron_tasks.update("daily-report", enabled=False, last_run_at=20, updated_at=20)
    updated = await storage.cron_tasks.find_by_id("daily-report")
    assert updated is not None and updated.enabled is False and updated.last_run_at == 20

    assert await storage.cron_tasks.find_all() == []
    include_disabled = await storage.cron_tasks.find_all(include_disabled=True)
    assert len(include_disabled) == 1 and include_disabled[0].enabled is False

    assert await storage.cron_tasks.delete("daily-report") is True
    assert await storage.cron_tasks.delete("daily-report") is False
    assert await storage.cron_tasks.find_by_id("daily-report") is None


async def test_returns_cached_task_on_repeated_read(storage: Storage, db: Database) -> None:
    """Legacy: "returns cached task on repeated read"."""
    await task_create(storage, "task-cached-task")
    await storage.cron_tasks.create(trigger("cached-task", "task-cached-task"))
    assert await storage.cron_tasks.find_by_id("cached-task") is not None
    await sql_run(db, "DELETE FROM tasks_cron WHERE id = ?", ["cached-task"])
    second = await storage.cron_tasks.find_by_id("cached-task")
    assert second is not None and second.id == "cached-task"


async def test_a_trigger_can_only_point_at_a_task_of_its_own_user(storage: Storage, db: Database) -> None:
    await task_create(storage, "alice-task", "alice")
    with violated("foreign key"):
        await storage.cron_tasks.create(trigger(task_id="alice-task", user_id="bob"))
    with violated("foreign key"):
        await storage.cron_tasks.create(trigger(task_id="no-such-task", user_id="alice"))
    assert await stored_rows(db, "tasks_cron", "id") == []
    assert await storage.cron_tasks.find_by_id("daily-report") is None
    await storage.cron_tasks.create(trigger(task_id="alice-task", user_id="alice"))
    with violated("foreign key"):
        await storage.cron_tasks.update("daily-report", user_id="bob")
    assert [row["user_id"] for row in await stored_rows(db, "tasks_cron", "id")] == ["alice"]


async def test_task_id_is_trimmed_and_required(storage: Storage, db: Database) -> None:
    await task_create(storage, "task-1")
    with pytest.raises(ValueError, match=r"^Cron trigger taskId is required.$"):
        await storage.cron_tasks.create(trigger(task_id="   "))
    await storage.cron_tasks.create(trigger(task_id="  task-1 "))
    [row] = await stored_rows(db, "tasks_cron", "id")
    assert row["task_id"] == "task-1"
    # The cache holds what the table holds (the legacy cache kept the untrimmed id).
    cached = await storage.cron_tasks.find_by_id("daily-report")
    assert cached is not None and cached.task_id == "task-1"
    with pytest.raises(ValueError, match=r"^Cron trigger taskId is required.$"):
        await storage.cron_tasks.update("daily-report", task_id=" ")
    await storage.cron_tasks.update("daily-report", task_id=None, description=None, agent_id="agent-9")
    [row] = await stored_rows(db, "tasks_cron", "id")
    assert (row["task_id"], row["description"], row["agent_id"]) == ("task-1", None, "agent-9")
    with pytest.raises(LookupError, match=r"^Cron task not found: nope$"):
        await storage.cron_tasks.update("nope", enabled=False)


async def test_a_row_without_task_id_is_left_out_of_reads(
    storage: Storage, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    await task_create(storage, "task-1")
    await storage.cron_tasks.create(trigger(task_id="task-1"))
    # Only a raw write can blank the column (pointing it at a raw task with a blank id, which the
    # foreign key accepts); the repository cannot read such a row and skips it.
    await task_insert(db, " ", "user-1")
    await sql_run(db, "UPDATE tasks_cron SET task_id = ' '")
    fresh = Storage.from_database(db).cron_tasks
    assert await fresh.find_by_id("daily-report") is None
    assert await fresh.find_all(include_disabled=True) == []
    [message] = [r.getMessage() for r in caplog.records if "unreadable row" in r.getMessage()]
    assert "tasks_cron (id='daily-report'): Cron trigger daily-report is missing required task_id." in message


async def test_find_many_filters_by_user_and_enabled(storage: Storage) -> None:
    await task_create(storage, "t-a", "alice")
    await task_create(storage, "t-b", "bob")
    await storage.cron_tasks.create(trigger("a-on", "t-a", user_id="alice", updated_at=3))
    await storage.cron_tasks.create(trigger("a-off", "t-a", user_id="alice", enabled=False, updated_at=2))
    await storage.cron_tasks.create(trigger("b-on", "t-b", user_id="bob", updated_at=1))
    alice = Context("alice")
    assert [item.id for item in await storage.cron_tasks.find_many(alice)] == ["a-on"]
    assert [item.id for item in await storage.cron_tasks.find_many(alice, include_disabled=True)] == ["a-off", "a-on"]
    assert [item.id for item in await storage.cron_tasks.find_many_by_task_id(alice, "t-a")] == ["a-off", "a-on"]
    assert await storage.cron_tasks.find_many_by_task_id(Context("bob"), "t-a") == []


async def test_only_the_full_find_all_makes_the_cache_authoritative(storage: Storage, db: Database) -> None:
    await task_create(storage, "t")
    await storage.cron_tasks.create(trigger("on", "t", updated_at=2))
    await storage.cron_tasks.create(trigger("off", "t", enabled=False, updated_at=1))
    repo = Storage.from_database(db).cron_tasks
    assert [item.id for item in await repo.find_all()] == ["on"]
    # The enabled-only load does not make a miss authoritative: "off" is still read from the file.
    assert await repo.find_by_id("off") is not None
    assert [item.id for item in await repo.find_all(include_disabled=True)] == ["off", "on"]
    await sql_run(
        db,
        "INSERT INTO tasks_cron (id, task_id, user_id, name, schedule, created_at, updated_at) "
        "VALUES ('raw', 't', 'user-1', 'n', '* * * * *', 5, 5)",
    )
    assert await repo.find_by_id("raw") is None
    assert [item.id for item in await repo.find_all(include_disabled=True)] == ["off", "on"]


async def test_rows_are_stored_as_the_legacy_code_stored_them(storage: Storage, db: Database) -> None:
    await task_create(storage, "t")
    await storage.cron_tasks.create(trigger(task_id="t", agent_id="agent-1", delete_after_run=True, last_run_at=7))
    [row] = await stored_rows(db, "tasks_cron", "id")
    assert row == {
        "id": "daily-report",
        "task_id": "t",
        "user_id": "user-1",
        "name": "Daily Report",
        "description": "Generate daily summary",
        "schedule": "0 9 * * *",
        "agent_id": "agent-1",
        "enabled": 1,
        "delete_after_run": 1,
        "last_run_at": 7,
        "created_at": 10,
        "updated_at": 10,
    }
    await storage.cron_tasks.update("daily-report", enabled=False)
    assert (await stored_rows(db, "tasks_cron", "id"))[0]["enabled"] == 0


async def test_update_refuses_an_unknown_field(storage: Storage) -> None:
    await task_create(storage, "t")
    await storage.cron_tasks.create(trigger(task_id="t"))
    with pytest.raises(TypeError, match=r"^Cron task has no field 'colour'$"):
        await storage.cron_tasks.update("daily-report", colour="red")  # type: ignore[call-arg]


async def test_loads_racing_writes_leave_the_cache_equal_to_the_file(storage: Storage, db: Database) -> None:
    """A load on a cold cache and a write to the same trigger run together, in both orders."""
    await task_create(storage, "t")
    await storage.cron_tasks.create(trigger("raced", "t"))
    await storage.cron_tasks.create(trigger("calm", "t", updated_at=5))
    repo = CronTasksRepository(db)
    for round in range(30):
        repo = CronTasksRepository(db)  # a fresh instance: its loads miss the cache
        loads: list[Awaitable[object]] = [
            repo.find_all(include_disabled=True),
            repo.find_by_id("raced"),
            repo.find_all(),
        ]
        write: Awaitable[object]
        if round % 3:
            write = repo.update("raced", enabled=round % 3 == 1, last_run_at=round, updated_at=round)
        else:
            write = repo.create(trigger("raced", "t", name=f"run {round}", updated_at=round))
        loads.insert(round % 4, write)  # the write goes first, second, third or last
        await asyncio.gather(*loads)
        rows = {record.id: record for record in await CronTasksRepository(db).find_all(include_disabled=True)}
        assert_cache_matches(repo, rows)
        assert await repo.find_by_id("raced") == rows["raced"]
    await asyncio.gather(repo.delete("raced"), repo.find_all(include_disabled=True))
    assert_cache_matches(repo, {"calm": await CronTasksRepository(db).find_by_id("calm")})
    assert await repo.find_by_id("raced") is None
