"""Crons: the legacy crons.spec and cronScheduler.spec tests, on a real database and a fake clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from daycare.engine.cron_scheduler import CronScheduler, CronTaskContext
from daycare.engine.crons import Crons
from daycare.engine.durable_inbox import DurableInboxAgentSystem
from daycare.engine.task_triggers import RunClaim
from daycare.storage.facade import Storage
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.cron_tasks import CronTaskRecord
from tests.engine.helpers import FakeTime, agent_create, eventually, inbox_items, settle, system_agent_id, task_create

CTX = Context("user-1", "agent-1")


class Recorder:
    """The scheduler's callbacks, recording what they were given."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.runs: list[tuple[CronTaskContext, dict[str, Any]]] = []
        self.errors: list[tuple[BaseException, str]] = []
        self.completed: list[tuple[CronTaskRecord, int]] = []

    async def on_task(self, task: CronTaskContext, message_context: dict[str, Any], claim: RunClaim) -> None:
        async with claim as claimed:
            if not claimed:  # another engine ran this occurrence
                return
            self.runs.append((task, message_context))
            if self.fail:
                raise RuntimeError("Task failed")

    async def on_error(self, error: BaseException, trigger_id: str) -> None:
        self.errors.append((error, trigger_id))

    async def on_task_complete(self, task: CronTaskRecord, run_at: int) -> None:
        self.completed.append((task, run_at))


def scheduler_build(storage: Storage, recorder: Recorder, time: FakeTime) -> CronScheduler:
    return CronScheduler(
        cron_tasks=storage.cron_tasks,
        tasks=storage.tasks,
        on_task=recorder.on_task,
        on_error=recorder.on_error,
        on_task_complete=recorder.on_task_complete,
        clock=time.now,
        sleep=time.sleep,
    )


async def cron_task_insert(
    storage: Storage,
    id: str,
    name: str,
    schedule: str,
    code: str,
    *,
    user_id: str = "user-1",
    enabled: bool = True,
    delete_after_run: bool = False,
) -> CronTaskRecord:
    """The legacy spec's cronTaskInsert: a task `task-<id>` and a trigger for it, written directly."""
    await task_create(storage, f"task-{id}", user_id, title=name, code=code)
    record = CronTaskRecord(
        id, f"task-{id}", user_id, name, None, schedule, None, enabled, delete_after_run, None, 1, 1
    )
    await storage.cron_tasks.create(record)
    return record


async def test_loads_and_schedules_tasks_from_repository(storage: Storage) -> None:
    """Legacy cronScheduler.spec: "loads and schedules tasks from repository"."""
    time = FakeTime()
    await cron_task_insert(storage, "test-task", "Test Task", "* * * * *", "Do something")
    scheduler = scheduler_build(storage, Recorder(), time)
    await scheduler.start()
    assert [task.id for task in scheduler.list_tasks()] == ["test-task"]
    assert scheduler.next_run_of("test-task") == time.now() + 60_000
    await scheduler.stop()


async def test_executes_task_when_scheduled_time_arrives(storage: Storage) -> None:
    """Legacy cronScheduler.spec: "executes task when scheduled time arrives"; last_run_at is recorded."""
    time = FakeTime()  # 10:30:00 local
    created = await cron_task_insert(storage, "exec-test", "Exec Test", "* * * * *", "Execute me")
    recorder = Recorder()
    scheduler = scheduler_build(storage, recorder, time)
    await scheduler.start()
    await time.advance(59_999)
    assert recorder.runs == []
    await time.advance(1)
    await eventually(lambda: len(recorder.completed) == 1)
    await scheduler.stop()

    assert recorder.runs == [
        (CronTaskContext("exec-test", created.task_id, "Exec Test", "Execute me", None, "user-1"), {})
    ]
    stored = await storage.cron_tasks.find_by_id("exec-test")
    assert stored is not None and stored.last_run_at == stored.updated_at == time.now()
    assert recorder.completed[0][0].last_run_at == time.now()
    rows = await storage.db.connection().execute_query_dict("SELECT last_run_at FROM tasks_cron")
    assert rows == [{"last_run_at": time.now()}]


async def test_runs_again_every_minute_and_not_twice_in_one(storage: Storage) -> None:
    time = FakeTime()
    await cron_task_insert(storage, "every", "Every", "* * * * *", "tick")
    recorder = Recorder()
    scheduler = scheduler_build(storage, recorder, time)
    await scheduler.start()
    for expected in (1, 2, 3):
        await time.advance(60_000)
        await eventually(lambda: len(recorder.completed) == expected)  # noqa: B023
    await settle()
    await scheduler.stop()
    assert len(recorder.runs) == 3


async def test_skips_disabled_tasks(storage: Storage) -> None:
    """Legacy cronScheduler.spec: "skips disabled tasks"."""
    time = FakeTime()
    await cron_task_insert(storage, "disabled-task", "Disabled Task", "* * * * *", "Should not run", enabled=False)
    recorder = Recorder()
    scheduler = scheduler_build(storage, recorder, time)
    await scheduler.start()
    assert scheduler.list_tasks() == []
    await time.advance(120_000)
    await scheduler.stop()
    assert recorder.runs == []


async def test_reloads_tasks_from_repository(storage: Storage) -> None:
    """Legacy cronScheduler.spec: "reloads tasks from repository"."""
    time = FakeTime()
    scheduler = scheduler_build(storage, Recorder(), time)
    await scheduler.start()
    assert scheduler.list_tasks() == []
    await cron_task_insert(storage, "new-task", "New Task", "* * * * *", "New prompt")
    await scheduler.reload()
    assert [task.id for task in scheduler.list_tasks()] == ["new-task"]
    await scheduler.stop()


async def test_provides_task_context(storage: Storage) -> None:
    """Legacy cronScheduler.spec: "provides task context"."""
    time = FakeTime()
    created = await cron_task_insert(storage, "context-test", "Context Test", "0 9 * * *", "Test prompt")
    scheduler = scheduler_build(storage, Recorder(), time)
    await scheduler.start()
    context = scheduler.get_task_context("context-test")
    assert context is not None
    assert (context.trigger_id, context.task_id, context.task_name, context.user_id) == (
        "context-test",
        created.task_id,
        "Context Test",
        "user-1",
    )
    assert scheduler.get_task_context("missing") is None
    await scheduler.stop()


async def test_handles_task_execution_errors(storage: Storage) -> None:
    """Legacy cronScheduler.spec: "handles task execution errors"; the run is still recorded."""
    time = FakeTime()
    await cron_task_insert(storage, "error-task", "Error Task", "* * * * *", "Will fail")
    recorder = Recorder(fail=True)
    scheduler = scheduler_build(storage, recorder, time)
    await scheduler.start()
    await time.advance(60_000)
    await eventually(lambda: len(recorder.completed) == 1)
    await scheduler.stop()
    assert [(str(error), trigger_id) for error, trigger_id in recorder.errors] == [("Task failed", "error-task")]
    stored = await storage.cron_tasks.find_by_id("error-task")
    assert stored is not None and stored.last_run_at == time.now()


async def test_a_trigger_whose_task_is_missing_reports_the_error_and_is_not_recorded(storage: Storage) -> None:
    time = FakeTime()
    await cron_task_insert(storage, "orphan", "Orphan", "* * * * *", "gone")
    await storage.tasks.delete(Context("user-1"), "task-orphan")
    recorder = Recorder()
    scheduler = scheduler_build(storage, recorder, time)
    await scheduler.start()
    await time.advance(60_000)
    await eventually(lambda: len(recorder.errors) == 1)
    await scheduler.stop()
    assert recorder.runs == [] and recorder.completed == []
    assert str(recorder.errors[0][0]) == "Cron trigger orphan references missing task: task-orphan"
    stored = await storage.cron_tasks.find_by_id("orphan")
    assert stored is not None and stored.last_run_at is None


async def test_a_delete_after_run_trigger_runs_once_and_is_deleted(storage: Storage) -> None:
    time = FakeTime()
    await cron_task_insert(storage, "once", "Once", "* * * * *", "run once", delete_after_run=True)
    recorder = Recorder()
    scheduler = scheduler_build(storage, recorder, time)
    await scheduler.start()
    await time.advance(60_000)
    await eventually(lambda: scheduler.list_tasks() == [])
    await eventually(lambda: _missing(storage, "once"))
    await time.advance(60_000)
    await settle()
    await scheduler.stop()
    assert len(recorder.runs) == 1


async def _missing(storage: Storage, trigger_id: str) -> bool:
    return await storage.cron_tasks.find_by_id(trigger_id) is None


async def test_add_task_checks_and_schedules(storage: Storage) -> None:
    time = FakeTime()
    await task_create(storage, "task-a", title="Report")
    await task_create(storage, "task-b", "user-2")
    recorder = Recorder()
    scheduler = scheduler_build(storage, recorder, time)
    await scheduler.start()
    with pytest.raises(ValueError, match="^Cron trigger id contains invalid characters.$"):
        await scheduler.add_task(CTX, task_id="task-a", schedule="* * * * *", id="bad id")
    with pytest.raises(ValueError, match="^Invalid cron schedule: '61 \\* \\* \\* \\*'"):
        await scheduler.add_task(CTX, task_id="task-a", schedule="61 * * * *", id="daily")
    with pytest.raises(LookupError, match="^Task not found: task-b$"):
        await scheduler.add_task(CTX, task_id="task-b", schedule="* * * * *", id="daily")
    assert await storage.cron_tasks.find_all(include_disabled=True) == []

    created = await scheduler.add_task(CTX, task_id=" task-a ", schedule=" */5 * * * * ", id="daily", agent_id=" ")
    assert (created.name, created.schedule, created.agent_id, created.enabled, created.last_run_at) == (
        "Report",
        "*/5 * * * *",
        None,
        True,
        None,
    )
    assert await storage.cron_tasks.find_by_id("daily") == created
    assert scheduler.next_run_of("daily") == time.now() + 5 * 60_000
    with pytest.raises(ValueError, match="^Cron task belongs to another user: daily$"):
        await scheduler.add_task(Context("user-2"), task_id="task-b", schedule="* * * * *", id="daily")

    disabled = await scheduler.add_task(CTX, task_id="task-a", schedule="* * * * *", id="daily", enabled=False)
    assert disabled.enabled is False and scheduler.list_tasks() == []
    generated = await scheduler.add_task(CTX, task_id="task-a", schedule="0 9 * * *")
    assert len(generated.id) == 24 and [task.id for task in scheduler.list_tasks()] == [generated.id]
    await scheduler.stop()


async def test_requires_ctx_for_add_delete_and_scopes_deletion_by_ctx_user(storage: Storage, tmp_path: Path) -> None:
    """Legacy crons.spec: "requires ctx for add/delete and scopes deletion by ctx user"; the orphaned task goes too."""
    agents = DurableInboxAgentSystem(storage=storage, users_dir=tmp_path / "users")
    crons = Crons(
        cron_tasks=storage.cron_tasks, heartbeat_tasks=storage.heartbeat_tasks, tasks=storage.tasks, agent_system=agents
    )
    ctx_a, ctx_b = Context("user-a", "agent-1"), Context("user-b", "agent-1")
    await task_create(storage, "task-scoped", "user-a", title="Scoped task", code="Run scoped task")
    task = await crons.add_task(ctx_a, task_id="task-scoped", schedule="* * * * *")
    second = await crons.add_trigger(ctx_a, task_id="task-scoped", schedule="0 9 * * *")
    assert [t.id for t in await crons.list_triggers_for_task(ctx_a, "task-scoped")] == [task.id, second.id]

    assert await crons.delete_task(ctx_b, task.id) is False
    assert await crons.delete_task(ctx_a, task.id) is True
    assert await storage.tasks.find_by_id(ctx_a, "task-scoped") is not None  # another trigger still uses it
    assert await crons.delete_triggers_for_task(ctx_a, "task-scoped") == 1
    assert await storage.tasks.find_by_id(ctx_a, "task-scoped") is None
    deleted = await storage.tasks.find_any_by_id(ctx_a, "task-scoped")
    assert deleted is not None and deleted.deleted_at is not None


async def test_posts_executable_system_message_for_cron_task_runs(storage: Storage, tmp_path: Path) -> None:
    """Legacy crons.spec: "posts executable system_message for cron task runs" (to the user's cron agent)."""
    agents = DurableInboxAgentSystem(storage=storage, users_dir=tmp_path / "users")
    crons = Crons(
        cron_tasks=storage.cron_tasks, heartbeat_tasks=storage.heartbeat_tasks, tasks=storage.tasks, agent_system=agents
    )
    task = CronTaskContext("trigger-1", "task-1", "Nightly sync", "Run checks", None, "user-1")
    await crons.task_post(task, {"messageId": "msg-1"})

    agent_id = await system_agent_id(storage, "user-1", "cron")
    assert agent_id is not None
    rows = await storage.inbox.find_by_agent_id(agent_id)
    assert [row.type for row in rows] == ["system_message"]
    assert rows[0].data == (
        '{"type":"system_message","text":"[cron]\\ntriggerId: trigger-1\\ntaskId: task-1\\ntaskName: Nightly sync",'
        '"code":["Run checks"],"origin":"cron","execute":true,"context":{"messageId":"msg-1"}}'
    )
    # A trigger with an agent posts to that agent instead.
    await agent_create(storage, "agent-x")
    await crons.task_post(CronTaskContext("trigger-2", "task-1", "Nightly sync", "Run checks", "agent-x", "user-1"), {})
    assert [item["origin"] for item in await inbox_items(storage, "agent-x")] == ["cron"]
    assert len(await storage.inbox.find_by_agent_id(agent_id)) == 1


async def test_with_claims_a_restart_runs_the_latest_missed_occurrence_once_and_a_claimed_one_never(
    storage: Storage,
) -> None:
    """The claims of trigger_runs: after downtime the latest occurrence runs once (several missed collapse);
    an occurrence another engine claimed is not run again."""
    time = FakeTime()  # 10:30:00 local
    await cron_task_insert(storage, "nightly", "Nightly", "* * * * *", "run")

    def build(recorder: Recorder) -> CronScheduler:
        return CronScheduler(
            cron_tasks=storage.cron_tasks,
            tasks=storage.tasks,
            on_task=recorder.on_task,
            on_error=recorder.on_error,
            runs=storage.trigger_runs,
            engine="test",
            clock=time.now,
            sleep=time.sleep,
        )

    first = Recorder()
    scheduler = build(first)
    await scheduler.start()
    await time.advance(60_000)  # 10:31: runs and claims it
    await eventually(lambda: len(first.runs) == 1)
    await scheduler.stop()
    claimed = await storage.trigger_runs.find_by_id("cron:nightly")
    assert claimed is not None and claimed.occurrence_at == time.now()

    await time.advance(5 * 60_000 + 30_000)  # 10:36:30: 10:32 ... 10:36 fell due while nothing ran
    second = Recorder()
    scheduler = build(second)
    await scheduler.start()
    await eventually(lambda: len(second.runs) == 1)
    await settle()
    assert len(second.runs) == 1
    claimed = await storage.trigger_runs.find_by_id("cron:nightly")
    assert claimed is not None and claimed.occurrence_at == time.now() - 30_000  # the latest: 10:36
    # Another engine claims 10:37 first: this one finds it claimed and does not run it.
    assert await storage.trigger_runs.claim("cron:nightly", time.now() + 30_000, claimed_at=0, engine="other")
    await time.advance(30_000)
    await settle()
    await scheduler.stop()
    assert len(second.runs) == 1 and second.errors == []
