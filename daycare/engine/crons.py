"""Crons: cron triggers of tasks, run by posting the task's code to an agent.

A due trigger posts an executable `system_message` (origin `cron`) to its agent, or, without
one, to the user's system agent tagged `cron`. Deleting a task's last trigger soft-deletes
the task.
"""

from __future__ import annotations

import logging
from typing import Any

from daycare.engine.agent_system import AgentSystem, AgentTarget, system_agent_target
from daycare.engine.cron_scheduler import CronScheduler, CronTaskContext
from daycare.engine.events import EngineEvents
from daycare.engine.task_triggers import RunClaim, task_delete_if_orphan
from daycare.engine.timing import Clock, Sleep, now_ms, sleep_ms
from daycare.storage.repositories.context import Context, context_for_user
from daycare.storage.repositories.cron_tasks import CronTaskRecord, CronTasksRepository
from daycare.storage.repositories.heartbeat_tasks import HeartbeatTasksRepository
from daycare.storage.repositories.tasks import TasksRepository
from daycare.storage.repositories.trigger_runs import TriggerRunsRepository

log = logging.getLogger("daycare.engine.cron")


def cron_task_prompt(task: CronTaskContext) -> str:
    """The text of a cron run's system message."""
    return f"[cron]\ntriggerId: {task.trigger_id}\ntaskId: {task.task_id}\ntaskName: {task.task_name}"


class Crons:
    """Cron triggers and their scheduler, delivering through the agent port."""

    def __init__(
        self,
        *,
        cron_tasks: CronTasksRepository,
        heartbeat_tasks: HeartbeatTasksRepository,
        tasks: TasksRepository,
        agent_system: AgentSystem,
        events: EngineEvents | None = None,
        clock: Clock = now_ms,
        sleep: Sleep = sleep_ms,
        runs: TriggerRunsRepository | None = None,
        engine: str = "",
    ) -> None:
        """`runs` keeps the claims that make each occurrence run once across engines; `engine` names this one."""
        self._cron_tasks = cron_tasks
        self._heartbeat_tasks = heartbeat_tasks
        self._tasks = tasks
        self._agents = agent_system
        self._events = events or EngineEvents()
        self.scheduler = CronScheduler(
            cron_tasks=cron_tasks,
            tasks=tasks,
            on_task=self.task_post,
            on_error=self._error_log,
            on_task_complete=self._task_ran,
            runs=runs,
            engine=engine,
            clock=clock,
            sleep=sleep,
        )

    async def start(self) -> None:
        await self.scheduler.start()
        self._events.emit("cron.started", {"tasks": self.scheduler.list_tasks()})

    async def stop(self) -> None:
        await self.scheduler.stop()

    def list_scheduled_tasks(self) -> list[CronTaskRecord]:
        return self.scheduler.list_tasks()

    async def list_tasks(self) -> list[CronTaskRecord]:
        """Every trigger, disabled ones included."""
        return await self._cron_tasks.find_all(include_disabled=True)

    async def add_task(
        self,
        ctx: Context,
        *,
        task_id: str,
        schedule: str,
        id: str | None = None,
        agent_id: str | None = None,
        enabled: bool = True,
        delete_after_run: bool = False,
    ) -> CronTaskRecord:
        """Creates or overwrites a trigger (see `CronScheduler.add_task`) and announces it."""
        record = await self.scheduler.add_task(
            ctx,
            task_id=task_id,
            schedule=schedule,
            id=id,
            agent_id=agent_id,
            enabled=enabled,
            delete_after_run=delete_after_run,
        )
        self._events.emit("cron.task.added", {"task": record})
        return record

    # The legacy name for the same operation, used by the task tools.
    add_trigger = add_task

    async def delete_task(self, ctx: Context, trigger_id: str) -> bool:
        """Deletes the user's trigger, then its task if no trigger points at it any more."""
        existing = await self._cron_tasks.find_by_id(trigger_id)
        if existing is None or existing.user_id != ctx.user_id:
            return False
        deleted = await self.scheduler.delete_task(ctx, trigger_id)
        if deleted:
            await task_delete_if_orphan(
                ctx,
                existing.task_id,
                tasks=self._tasks,
                cron_tasks=self._cron_tasks,
                heartbeat_tasks=self._heartbeat_tasks,
            )
        return deleted

    async def load_task(self, trigger_id: str) -> CronTaskRecord | None:
        return await self.scheduler.load_task(trigger_id)

    async def list_triggers_for_task(self, ctx: Context, task_id: str) -> list[CronTaskRecord]:
        return await self._cron_tasks.find_many_by_task_id(ctx, task_id)

    async def delete_triggers_for_task(self, ctx: Context, task_id: str) -> int:
        """Deletes every trigger of the user's task; returns how many."""
        removed = 0
        for trigger in await self._cron_tasks.find_many_by_task_id(ctx, task_id):
            if await self.delete_task(ctx, trigger.id):
                removed += 1
        return removed

    async def task_post(
        self, task: CronTaskContext, message_context: dict[str, Any], claim: RunClaim | None = None
    ) -> None:
        """Posts the run to the trigger's agent, or to the user's `cron` system agent; with a `claim`, the
        post commits with the claim of the run, and is skipped when another engine claimed it."""
        ctx = context_for_user(task.user_id)
        target = await self._agents.target_prepare(
            ctx, AgentTarget(task.agent_id) if task.agent_id else system_agent_target("cron")
        )
        # Key order as the legacy code wrote it.
        item = {
            "type": "system_message",
            "text": cron_task_prompt(task),
            "code": [task.code],
            "origin": "cron",
            "execute": True,
            "context": message_context,
        }
        if claim is None:
            await self._agents.post(ctx, target, item)
            return
        async with claim as claimed:
            if claimed:
                await self._agents.post(ctx, target, item)

    async def _error_log(self, error: BaseException, trigger_id: str) -> None:
        log.warning("cron task %s failed: %s", trigger_id, error)

    async def _task_ran(self, task: CronTaskRecord, run_at: int) -> None:
        self._events.emit("cron.task.ran", {"taskId": task.id, "runAt": run_at})
