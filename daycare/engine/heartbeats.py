"""Heartbeats: tasks run together on an interval, posted per user to the `heartbeat` system agent.

On start, triggers that never ran run at once. Each run posts one executable
`system_message` (origin `heartbeat`) per user, holding the batch of that user's tasks.
Removing a task's last trigger soft-deletes the task.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from daycare.engine.agent_system import AgentSystem, PostTarget, system_agent_target
from daycare.engine.events import EngineEvents
from daycare.engine.heartbeat_prompts import HeartbeatRunTask, heartbeat_prompt_build_batch
from daycare.engine.heartbeat_scheduler import DEFAULT_INTERVAL_MS, HeartbeatRunResult, HeartbeatScheduler
from daycare.engine.task_triggers import RunClaim, task_delete_if_orphan
from daycare.engine.timing import Clock, Sleep, now_ms, sleep_ms
from daycare.storage.repositories.context import Context, context_for_user
from daycare.storage.repositories.cron_tasks import CronTasksRepository
from daycare.storage.repositories.heartbeat_tasks import HeartbeatTaskRecord, HeartbeatTasksRepository
from daycare.storage.repositories.tasks import TasksRepository
from daycare.storage.repositories.trigger_runs import TriggerRunsRepository

log = logging.getLogger("daycare.engine.heartbeat")


class Heartbeats:
    """Heartbeat triggers and their scheduler, delivering through the agent port."""

    def __init__(
        self,
        *,
        heartbeat_tasks: HeartbeatTasksRepository,
        cron_tasks: CronTasksRepository,
        tasks: TasksRepository,
        agent_system: AgentSystem,
        events: EngineEvents | None = None,
        interval_ms: int = DEFAULT_INTERVAL_MS,
        clock: Clock = now_ms,
        sleep: Sleep = sleep_ms,
        runs: TriggerRunsRepository | None = None,
        engine: str = "",
    ) -> None:
        """`runs` keeps the claims that make each round run once across engines; `engine` names this one."""
        self._heartbeat_tasks = heartbeat_tasks
        self._cron_tasks = cron_tasks
        self._tasks = tasks
        self._agents = agent_system
        self._events = events or EngineEvents()
        self.scheduler = HeartbeatScheduler(
            heartbeat_tasks=heartbeat_tasks,
            tasks=tasks,
            on_run=self.batch_post,
            on_error=self._error_log,
            on_task_complete=self._task_ran,
            interval_ms=interval_ms,
            runs=runs,
            engine=engine,
            clock=clock,
            sleep=sleep,
        )

    async def start(self) -> None:
        """Starts the interval, then runs at once the triggers that never ran."""
        await self.scheduler.start()
        tasks = await self.list_tasks()
        self._events.emit("heartbeat.started", {"tasks": tasks})
        never_ran = [task.id for task in tasks if task.last_run_at is None]
        if never_ran:
            log.info("heartbeat tasks without a last run, running now: %s", ", ".join(never_ran))
            await self.run_now(never_ran)

    async def stop(self) -> None:
        await self.scheduler.stop()

    async def list_tasks(self) -> list[HeartbeatTaskRecord]:
        return await self.scheduler.list_tasks()

    async def run_now(self, ids: Sequence[str] | None = None) -> HeartbeatRunResult:
        return await self.scheduler.run_now(ids)

    async def add_task(
        self, ctx: Context, *, task_id: str, id: str | None = None, overwrite: bool = False
    ) -> HeartbeatTaskRecord:
        return await self.scheduler.create_task(ctx, task_id=task_id, id=id, overwrite=overwrite)

    async def add_trigger(self, ctx: Context, *, task_id: str, id: str | None = None) -> HeartbeatTaskRecord:
        return await self.add_task(ctx, task_id=task_id, id=id)

    async def remove_task(self, ctx: Context, trigger_id: str) -> bool:
        """Deletes the user's trigger, then its task if no trigger points at it any more."""
        existing = await self._heartbeat_tasks.find_by_id(trigger_id)
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

    async def list_triggers_for_task(self, ctx: Context, task_id: str) -> list[HeartbeatTaskRecord]:
        return await self._heartbeat_tasks.find_many_by_task_id(ctx, task_id)

    async def delete_triggers_for_task(self, ctx: Context, task_id: str) -> int:
        removed = 0
        for trigger in await self._heartbeat_tasks.find_many_by_task_id(ctx, task_id):
            if await self.remove_task(ctx, trigger.id):
                removed += 1
        return removed

    async def batch_post(self, tasks: list[HeartbeatRunTask], run_at: int, claim: RunClaim | None = None) -> None:
        """Posts one batch per user, in the order the users first appear; with a `claim`, the posts commit
        with the claim of the round, and are skipped when another engine claimed it."""
        by_user: dict[str, list[HeartbeatRunTask]] = {}
        for task in tasks:
            by_user.setdefault(task.user_id, []).append(task)
        posts: list[tuple[Context, PostTarget, dict[str, Any]]] = []
        for user_id, user_tasks in by_user.items():
            batch = heartbeat_prompt_build_batch(user_tasks)
            # Key order as the legacy code wrote it.
            item = {
                "type": "system_message",
                "text": batch.text,
                "code": list(batch.code),
                "origin": "heartbeat",
                "execute": True,
            }
            ctx = context_for_user(user_id)
            posts.append((ctx, await self._agents.target_prepare(ctx, system_agent_target("heartbeat")), item))
        if claim is None:
            for ctx, target, item in posts:
                await self._agents.post(ctx, target, item)
            return
        async with claim as claimed:
            if claimed:
                for ctx, target, item in posts:
                    await self._agents.post(ctx, target, item)

    async def _error_log(self, error: BaseException, trigger_ids: list[str] | None) -> None:
        log.warning("heartbeat tasks %s failed: %s", trigger_ids or "(all)", error)

    async def _task_ran(self, task: HeartbeatRunTask, run_at: int) -> None:
        self._events.emit("heartbeat.task.ran", {"taskId": task.id, "runAt": run_at})
