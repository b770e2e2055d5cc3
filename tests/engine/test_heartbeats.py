"""Heartbeats: the legacy heartbeats.spec, heartbeatScheduler.spec and heartbeatPromptBuildBatch.spec
tests, plus the two fixed flaws (a missing task, stamping on a filtered run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from daycare.engine.durable_inbox import DurableInboxAgentSystem
from daycare.engine.heartbeat_prompts import HeartbeatRunTask, heartbeat_prompt_build_batch
from daycare.engine.heartbeat_scheduler import HeartbeatScheduler
from daycare.engine.heartbeats import Heartbeats
from daycare.engine.task_triggers import RunClaim
from daycare.storage.facade import Storage
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.heartbeat_tasks import HeartbeatTaskRecord
from tests.engine.helpers import FakeTime, eventually, inbox_items, system_agent_id, task_create


class Recorder:
    def __init__(self) -> None:
        self.runs: list[tuple[list[HeartbeatRunTask], int]] = []
        self.errors: list[tuple[BaseException, list[str] | None]] = []
        self.completed: list[HeartbeatRunTask] = []

    async def on_run(self, tasks: list[HeartbeatRunTask], run_at: int, claim: RunClaim) -> None:
        async with claim as claimed:
            assert claimed
            self.runs.append((tasks, run_at))

    async def on_error(self, error: BaseException, trigger_ids: list[str] | None) -> None:
        self.errors.append((error, trigger_ids))

    async def on_task_complete(self, task: HeartbeatRunTask, run_at: int) -> None:
        self.completed.append(task)


def scheduler_build(storage: Storage, recorder: Recorder, time: FakeTime | None = None) -> HeartbeatScheduler:
    time = time or FakeTime()
    return HeartbeatScheduler(
        heartbeat_tasks=storage.heartbeat_tasks,
        tasks=storage.tasks,
        on_run=recorder.on_run,
        on_error=recorder.on_error,
        on_task_complete=recorder.on_task_complete,
        clock=time.now,
        sleep=time.sleep,
        interval_ms=60_000,
    )


def heartbeats_build(storage: Storage, tmp_path: Path, time: FakeTime | None = None) -> Heartbeats:
    time = time or FakeTime()
    return Heartbeats(
        heartbeat_tasks=storage.heartbeat_tasks,
        cron_tasks=storage.cron_tasks,
        tasks=storage.tasks,
        agent_system=DurableInboxAgentSystem(storage=storage, users_dir=tmp_path / "users"),
        interval_ms=60_000,
        clock=time.now,
        sleep=time.sleep,
    )


def ctx(user_id: str) -> Context:
    return Context(user_id, "agent-1")


async def test_runs_all_tasks_in_a_single_batch(storage: Storage) -> None:
    """Legacy heartbeatScheduler.spec: "runs all tasks in a single batch"."""
    recorder = Recorder()
    scheduler = scheduler_build(storage, recorder)
    await task_create(storage, "task-alpha", title="Alpha", code="Check alpha.")
    await task_create(storage, "task-beta", title="Beta", code="Check beta.")
    task_a = await scheduler.create_task(ctx("user-1"), task_id="task-alpha")
    task_b = await scheduler.create_task(ctx("user-1"), task_id="task-beta")

    result = await scheduler.run_now()

    assert result.ran == 2 and sorted(result.task_ids) == sorted([task_a.id, task_b.id])
    assert len(recorder.runs) == 1
    tasks, run_at = recorder.runs[0]
    assert [task.code for task in tasks] == ["Check alpha.", "Check beta."]
    assert len(recorder.completed) == 2
    refreshed = await scheduler.list_tasks()
    assert [task.last_run_at for task in refreshed] == [run_at, run_at]


async def test_filters_tasks_by_id_while_keeping_a_single_run(storage: Storage) -> None:
    """Legacy heartbeatScheduler.spec: "filters tasks by id while keeping a single run"."""
    recorder = Recorder()
    scheduler = scheduler_build(storage, recorder)
    await task_create(storage, "task-alpha", title="Alpha")
    await task_create(storage, "task-beta", title="Beta")
    task_a = await scheduler.create_task(ctx("user-1"), task_id="task-alpha")
    task_b = await scheduler.create_task(ctx("user-1"), task_id="task-beta")

    result = await scheduler.run_now([task_a.id])

    assert (result.ran, result.task_ids) == (1, (task_a.id,))
    assert len(recorder.runs) == 1 and [task.id for task in recorder.runs[0][0]] == [task_a.id]
    # Fixed: only the trigger that ran is stamped (the legacy recordRun stamped every row).
    stamped = {task.id: task.last_run_at for task in await scheduler.list_tasks()}
    assert stamped == {task_a.id: recorder.runs[0][1], task_b.id: None}
    rows = await storage.db.connection().execute_query_dict("SELECT id, last_run_at FROM tasks_heartbeat ORDER BY id")
    assert {row["id"]: row["last_run_at"] for row in rows} == stamped


async def test_deletes_tasks_only_for_the_same_ctx_user(storage: Storage) -> None:
    """Legacy heartbeatScheduler.spec: "deletes tasks only for the same ctx user"."""
    scheduler = scheduler_build(storage, Recorder())
    await task_create(storage, "task-owned", title="Owned task")
    task = await scheduler.create_task(ctx("user-1"), task_id="task-owned")
    assert await scheduler.delete_task(ctx("user-2"), task.id) is False
    assert await scheduler.delete_task(ctx("user-1"), task.id) is True


async def test_normalizes_ctx_user_id_when_deleting_tasks(storage: Storage) -> None:
    """Legacy heartbeatScheduler.spec: "normalizes ctx userId when deleting tasks"."""
    scheduler = scheduler_build(storage, Recorder())
    await task_create(storage, "task-trim", title="Trim user id")
    task = await scheduler.create_task(ctx("user-1"), task_id="task-trim")
    assert await scheduler.delete_task(ctx("  user-1  "), task.id) is True


async def test_a_missing_task_is_skipped_and_reported_while_the_others_run(storage: Storage) -> None:
    """Legacy flaw: one missing task aborted the whole run (and onError got no trigger id)."""
    recorder = Recorder()
    scheduler = scheduler_build(storage, recorder)
    await task_create(storage, "task-alpha", title="Alpha")
    await task_create(storage, "task-gone", title="Gone")
    alpha = await scheduler.create_task(ctx("user-1"), task_id="task-alpha", id="alpha")
    await scheduler.create_task(ctx("user-1"), task_id="task-gone", id="gone")
    await storage.tasks.delete(Context("user-1"), "task-gone")

    result = await scheduler.run_now()

    assert (result.ran, result.task_ids) == (1, (alpha.id,))
    assert [[task.id for task in tasks] for tasks, _ in recorder.runs] == [["alpha"]]
    assert [(str(error), ids) for error, ids in recorder.errors] == [
        ("Heartbeat trigger gone references missing task: task-gone", ["gone"])
    ]
    assert {task.id: task.last_run_at is not None for task in await scheduler.list_tasks()} == {
        "alpha": True,
        "gone": False,
    }


async def test_a_failing_run_is_reported_and_still_stamped(storage: Storage) -> None:
    recorder = Recorder()

    async def on_run(tasks: list[HeartbeatRunTask], run_at: int, claim: RunClaim) -> None:
        raise RuntimeError("agent port down")

    scheduler = HeartbeatScheduler(
        heartbeat_tasks=storage.heartbeat_tasks, tasks=storage.tasks, on_run=on_run, on_error=recorder.on_error
    )
    await task_create(storage, "task-alpha")
    await scheduler.create_task(ctx("user-1"), task_id="task-alpha", id="alpha")
    result = await scheduler.run_now()
    assert result.ran == 1
    assert [(str(error), ids) for error, ids in recorder.errors] == [("agent port down", ["alpha"])]
    (stored,) = await scheduler.list_tasks()
    assert stored.last_run_at is not None


async def test_create_task_keeps_the_legacy_checks(storage: Storage) -> None:
    scheduler = scheduler_build(storage, Recorder())
    await task_create(storage, "task-alpha", title="Alpha")
    await task_create(storage, "task-beta", title="Beta")
    await task_create(storage, "task-other", "user-2")
    with pytest.raises(ValueError, match="^Heartbeat id contains invalid characters.$"):
        await scheduler.create_task(ctx("user-1"), task_id="task-alpha", id="no/slash")
    with pytest.raises(LookupError, match="^Task not found: task-other$"):
        await scheduler.create_task(ctx("user-1"), task_id="task-other")
    created = await scheduler.create_task(ctx("user-1"), task_id="task-alpha", id="beat")
    with pytest.raises(ValueError, match="^Heartbeat already exists: beat$"):
        await scheduler.create_task(ctx("user-1"), task_id="task-beta", id="beat")
    with pytest.raises(ValueError, match="^Heartbeat belongs to another user: beat$"):
        await scheduler.create_task(ctx("user-2"), task_id="task-other", id="beat", overwrite=True)
    with pytest.raises(ValueError, match="^Heartbeat id contains invalid characters.$"):
        await scheduler.delete_task(ctx("user-1"), "no/slash")
    moved = await scheduler.create_task(ctx("user-1"), task_id="task-beta", id="beat", overwrite=True)
    assert (moved.task_id, moved.title, moved.created_at) == ("task-beta", "Beta", created.created_at)
    assert await storage.heartbeat_tasks.find_by_id("beat") == moved


async def test_the_interval_runs_the_batch(storage: Storage) -> None:
    time = FakeTime()
    recorder = Recorder()
    scheduler = scheduler_build(storage, recorder, time)
    await task_create(storage, "task-alpha")
    await scheduler.create_task(ctx("user-1"), task_id="task-alpha")
    await scheduler.start()
    assert scheduler.next_run_at == time.now() + 60_000
    await time.advance(59_999)
    assert recorder.runs == []
    await time.advance(1)
    await eventually(lambda: len(recorder.runs) == 1)
    await time.advance(60_000)
    await eventually(lambda: len(recorder.runs) == 2)
    await scheduler.stop()


async def test_adds_and_removes_heartbeat_tasks_with_ctx_scoping(storage: Storage, tmp_path: Path) -> None:
    """Legacy heartbeats.spec: "adds and removes heartbeat tasks with ctx scoping"; the orphaned task goes too."""
    heartbeats = heartbeats_build(storage, tmp_path)
    await task_create(storage, "task-beat", "user-a", title="beat", code="run")
    task = await heartbeats.add_task(ctx("user-a"), task_id="task-beat")
    assert [t.id for t in await heartbeats.list_triggers_for_task(ctx("user-a"), "task-beat")] == [task.id]
    assert await heartbeats.remove_task(ctx("user-b"), task.id) is False
    assert await heartbeats.remove_task(ctx("user-a"), task.id) is True
    assert await storage.tasks.find_by_id(ctx("user-a"), "task-beat") is None
    await task_create(storage, "task-two", "user-a")
    await heartbeats.add_trigger(ctx("user-a"), task_id="task-two", id="one")
    await heartbeats.add_trigger(ctx("user-a"), task_id="task-two", id="two")
    assert await heartbeats.delete_triggers_for_task(ctx("user-a"), "task-two") == 2


async def test_posts_executable_system_message_batch_for_heartbeat_runs(storage: Storage, tmp_path: Path) -> None:
    """Legacy heartbeats.spec: "posts executable system_message batch for heartbeat runs", one batch per user."""
    heartbeats = heartbeats_build(storage, tmp_path)
    await task_create(storage, "task-hb-1", "user-1", title="beat", code="check")
    await storage.heartbeat_tasks.create(HeartbeatTaskRecord("hb-1", "task-hb-1", "user-1", "beat", None, 1, 1))
    await task_create(storage, "task-hb-2", "user-2", title="Zulu", code="z()")
    await task_create(storage, "task-hb-3", "user-2", title="alpha", code="a()")
    await storage.heartbeat_tasks.create(HeartbeatTaskRecord("hb-2", "task-hb-2", "user-2", "Zulu", None, 1, 1))
    await storage.heartbeat_tasks.create(HeartbeatTaskRecord("hb-3", "task-hb-3", "user-2", "alpha", None, 1, 1))

    result = await heartbeats.run_now()
    assert result.ran == 3

    agent_1 = await system_agent_id(storage, "user-1", "heartbeat")
    agent_2 = await system_agent_id(storage, "user-2", "heartbeat")
    assert agent_1 is not None and agent_2 is not None
    (row,) = await storage.inbox.find_by_agent_id(agent_1)
    assert row.data == (
        '{"type":"system_message","text":"Heartbeat: beat (id: hb-1)","code":["check"],'
        '"origin":"heartbeat","execute":true}'
    )
    (batch,) = await inbox_items(storage, agent_2)
    assert (
        batch["text"]
        == "# Heartbeat run\n\nRun all 2 heartbeat tasks together.\n\n1. alpha (id: hb-3)\n2. Zulu (id: hb-2)"
    )
    assert batch["code"] == ["a()", "z()"]


async def test_start_runs_the_triggers_that_never_ran(storage: Storage, tmp_path: Path) -> None:
    time = FakeTime()
    heartbeats = heartbeats_build(storage, tmp_path, time)
    await task_create(storage, "task-new")
    await task_create(storage, "task-old")
    await storage.heartbeat_tasks.create(HeartbeatTaskRecord("new", "task-new", "user-1", "New", None, 1, 1))
    await storage.heartbeat_tasks.create(HeartbeatTaskRecord("old", "task-old", "user-1", "Old", 5, 1, 1))
    await heartbeats.start()
    await heartbeats.stop()
    agent_id = await system_agent_id(storage, "user-1", "heartbeat")
    assert agent_id is not None
    assert [item["text"] for item in await inbox_items(storage, agent_id)] == [
        "Heartbeat: task-new (id: new)"
    ]  # the task's current title
    stamps = {task.id: task.last_run_at for task in await heartbeats.list_tasks()}
    assert stamps == {"new": time.now(), "old": 5}


def _task(id: str, title: str, code: str) -> HeartbeatRunTask:
    return HeartbeatRunTask(id, f"task-{id}", "user-1", title, code, None, 1, 1)


def test_returns_single_task_code_as_array() -> None:
    """Legacy heartbeatPromptBuildBatch.spec: "returns single task code as array"."""
    result = heartbeat_prompt_build_batch([_task("one", "Check mail", "print('hello')")])
    assert result.title == "Heartbeat: Check mail"
    assert result.text == "Heartbeat: Check mail (id: one)"
    assert result.code == ("print('hello')",)


def test_builds_a_sorted_batch_with_code_array() -> None:
    """Legacy heartbeatPromptBuildBatch.spec: "builds a sorted batch with code array"."""
    first = _task("b", "Alpha", "do_alpha()")
    second = _task("a", "Alpha", "do_alpha_second()")
    third = _task("c", "Bravo", "do_bravo()")
    result = heartbeat_prompt_build_batch([third, second, first])
    assert result.title == "Heartbeat batch (3)"
    assert "# Heartbeat run" in result.text
    assert "1. Alpha (id: a)\n2. Alpha (id: b)\n3. Bravo (id: c)" in result.text
    assert result.code == ("do_alpha_second()", "do_alpha()", "do_bravo()")
