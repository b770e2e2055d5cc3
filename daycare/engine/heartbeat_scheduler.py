"""HeartbeatScheduler: runs every heartbeat trigger together, on a fixed interval (legacy `HeartbeatScheduler`).

A run reads the triggers (optionally only some ids), resolves each one's task, hands the
resolved ones to `on_run` in one batch, and stamps `last_run_at` on them. Two legacy flaws
are fixed: a trigger whose task is missing is skipped and its error reported (it used to
abort the whole run), and only the triggers that ran are stamped (every user's rows were).

With a `TriggerRunsRepository` (the engine passes one), each round claims its time in the
transaction that posts it, so a round runs once whichever engine leads, and the interval goes on
from the last claimed round: an engine that takes over runs a round that fell due meanwhile at once.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from daycare.engine.heartbeat_prompts import HeartbeatRunTask
from daycare.engine.task_triggers import RunClaim, trigger_id_is_safe
from daycare.engine.ticker import Ticker
from daycare.engine.timing import Clock, Sleep, now_ms, sleep_ms
from daycare.storage.identifiers import cuid_create
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.heartbeat_tasks import HeartbeatTaskRecord, HeartbeatTasksRepository
from daycare.storage.repositories.tasks import TasksRepository
from daycare.storage.repositories.trigger_runs import HEARTBEAT_ROUND, TriggerRunsRepository

log = logging.getLogger("daycare.engine.heartbeat")

DEFAULT_INTERVAL_MS = 30 * 60 * 1000
# The agent id the legacy code put in the context used to read a trigger's task.
SYSTEM_HEARTBEAT_AGENT = "system:heartbeat"

# Posts a round: resolves its targets, then claims the round and posts in one transaction (`async with claim`).
OnRun = Callable[[list[HeartbeatRunTask], int, RunClaim], Awaitable[None]]
OnError = Callable[[BaseException, list[str] | None], Awaitable[None]]
OnTaskComplete = Callable[[HeartbeatRunTask, int], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class HeartbeatRunResult:
    ran: int
    task_ids: tuple[str, ...]


NOTHING_RAN = HeartbeatRunResult(0, ())


class HeartbeatScheduler:
    """Heartbeat triggers, and the loop that runs them every `interval_ms`."""

    def __init__(
        self,
        *,
        heartbeat_tasks: HeartbeatTasksRepository,
        tasks: TasksRepository,
        on_run: OnRun,
        on_error: OnError | None = None,
        on_task_complete: OnTaskComplete | None = None,
        interval_ms: int = DEFAULT_INTERVAL_MS,
        runs: TriggerRunsRepository | None = None,
        engine: str = "",
        clock: Clock = now_ms,
        sleep: Sleep = sleep_ms,
    ) -> None:
        """`runs` keeps the claims of rounds; `engine` names this engine in them."""
        if interval_ms <= 0:
            raise ValueError(f"Heartbeat interval must be positive, got {interval_ms} ms")
        self._heartbeat_tasks = heartbeat_tasks
        self._tasks = tasks
        self._on_run = on_run
        self._on_error = on_error
        self._on_task_complete = on_task_complete
        self.interval_ms = interval_ms
        self._runs = runs
        self._engine = engine
        self._clock = clock
        self._running = False
        self.next_run_at: int | None = None
        self._ticker = Ticker("heartbeat", self._step, sleep)

    async def start(self) -> None:
        """Starts the interval: the first round comes `interval_ms` after the last claimed one, else from now."""
        if self._ticker.running:
            return
        claimed = await self._runs.find_by_id(HEARTBEAT_ROUND) if self._runs is not None else None
        self.next_run_at = (claimed.occurrence_at if claimed is not None else self._clock()) + self.interval_ms
        self._ticker.start()

    async def stop(self) -> None:
        await self._ticker.stop()
        self.next_run_at = None

    async def run_now(self, ids: Sequence[str] | None = None, *, round_at: int | None = None) -> HeartbeatRunResult:
        """Runs every trigger (or those with these ids) now, in one batch; a run in progress makes it a no-op.

        `round_at` is the scheduled time of an interval's round, claimed so that it runs once across engines.
        """
        if self._running:
            log.debug("heartbeat run skipped: one is already running")
            return NOTHING_RAN
        self._running = True
        try:
            return await self._run(ids, round_at)
        except Exception as error:
            log.warning("heartbeat run failed: %s", error)
            await self._error_report(error, None)
            return NOTHING_RAN
        finally:
            self._running = False

    async def list_tasks(self) -> list[HeartbeatTaskRecord]:
        return await self._heartbeat_tasks.find_all()

    async def create_task(
        self, ctx: Context, *, task_id: str, id: str | None = None, overwrite: bool = False
    ) -> HeartbeatTaskRecord:
        """Creates a heartbeat trigger for the user's task, or with `overwrite` repoints an existing one.

        Raises ValueError for an unsafe id, another user's id or an existing id without
        `overwrite`; LookupError when the user has no such task.
        """
        trigger_id = (id or "").strip()
        if trigger_id and not trigger_id_is_safe(trigger_id):
            raise ValueError("Heartbeat id contains invalid characters.")
        trigger_id = trigger_id or cuid_create()
        existing = await self._heartbeat_tasks.find_by_id(trigger_id)
        if existing is not None and existing.user_id != ctx.user_id:
            raise ValueError(f"Heartbeat belongs to another user: {trigger_id}")
        if existing is not None and not overwrite:
            raise ValueError(f"Heartbeat already exists: {trigger_id}")
        linked_task_id = task_id.strip()
        linked = await self._tasks.find_by_id(ctx, linked_task_id) if linked_task_id else None
        if linked is None:
            raise LookupError(f"Task not found: {task_id}")
        now = self._clock()
        if existing is not None:
            updated = dataclasses.replace(
                existing, task_id=linked_task_id, user_id=ctx.user_id, title=linked.title, updated_at=now
            )
            await self._heartbeat_tasks.update(
                trigger_id, task_id=linked_task_id, user_id=ctx.user_id, title=linked.title, updated_at=now
            )
            return updated
        record = HeartbeatTaskRecord(trigger_id, linked_task_id, ctx.user_id, linked.title, None, now, now)
        await self._heartbeat_tasks.create(record)
        return record

    async def delete_task(self, ctx: Context, trigger_id: str) -> bool:
        """Deletes the user's heartbeat trigger; False when it is missing or another user's."""
        if not trigger_id_is_safe(trigger_id):
            raise ValueError("Heartbeat id contains invalid characters.")
        existing = await self._heartbeat_tasks.find_by_id(trigger_id)
        if existing is None or existing.user_id != ctx.user_id:
            return False
        return await self._heartbeat_tasks.delete(trigger_id)

    async def _step(self) -> int:
        if self.next_run_at is not None and self._clock() < self.next_run_at:
            return self.next_run_at - self._clock()
        await self.run_now(round_at=self.next_run_at)
        self.next_run_at = self._clock() + self.interval_ms
        return self.interval_ms

    async def _run(self, ids: Sequence[str] | None, round_at: int | None) -> HeartbeatRunResult:
        triggers = await self._heartbeat_tasks.find_all()
        if ids:
            wanted = set(ids)
            triggers = [trigger for trigger in triggers if trigger.id in wanted]
        run_tasks: list[HeartbeatRunTask] = []
        for trigger in triggers:
            task = await self._task_resolve(trigger)
            if task is not None:
                run_tasks.append(task)
        if not run_tasks:
            return NOTHING_RAN
        run_at = self._clock()
        ran_ids = [task.id for task in run_tasks]
        runs = self._runs if round_at is not None else None  # a round asked for by id or by hand is not claimed
        claim = RunClaim(runs, HEARTBEAT_ROUND, round_at or run_at, now=run_at, engine=self._engine)
        log.info("heartbeat run of %d tasks: %s", len(ran_ids), ", ".join(ran_ids))
        try:
            await self._on_run(run_tasks, run_at, claim)
        except Exception as error:
            log.warning("heartbeat run of %s failed: %s", ", ".join(ran_ids), error)
            await self._error_report(error, ran_ids)
        if not await claim.settle():
            log.info("heartbeat round at %d was claimed by another engine", claim.occurrence_at)
            return NOTHING_RAN
        await self._heartbeat_tasks.record_run_for(ran_ids, run_at)
        if self._on_task_complete is not None:
            for task in run_tasks:
                await self._on_task_complete(dataclasses.replace(task, last_run_at=run_at, updated_at=run_at), run_at)
        return HeartbeatRunResult(len(ran_ids), tuple(ran_ids))

    async def _task_resolve(self, trigger: HeartbeatTaskRecord) -> HeartbeatRunTask | None:
        """The trigger with its task's title and code; None (error reported) when the task is missing."""
        linked = await self._tasks.find_by_id(Context(trigger.user_id, SYSTEM_HEARTBEAT_AGENT), trigger.task_id)
        if linked is None:
            error = LookupError(f"Heartbeat trigger {trigger.id} references missing task: {trigger.task_id}")
            log.warning("%s; skipped", error)
            await self._error_report(error, [trigger.id])
            return None
        return HeartbeatRunTask(
            trigger.id,
            linked.id,
            trigger.user_id,
            linked.title,
            linked.code,
            trigger.last_run_at,
            trigger.created_at,
            trigger.updated_at,
        )

    async def _error_report(self, error: BaseException, trigger_ids: list[str] | None) -> None:
        if self._on_error is not None:
            await self._on_error(error, trigger_ids)
