"""CronScheduler: runs each enabled cron trigger when its schedule falls due (legacy `CronScheduler`).

The loop wakes at the earliest next run (at most every minute), computes each due trigger's
next run, and runs the due ones together. Occurrences that fell due while the loop was late
collapse into one run, of the latest (as the legacy loop did).

With a `TriggerRunsRepository` (the engine always passes one), each run claims its occurrence
in the transaction that posts it, so an occurrence runs once whichever engine leads, and a
trigger is scheduled from its last claimed occurrence: an engine that takes over runs the
occurrence that fell due while no engine led (once, however many fell due). A trigger never
claimed (written before claims existed) is scheduled from now, as the legacy loop did.

A run resolves the trigger's task, hands it to `on_task` (which posts it inside the claim),
and then records `last_run_at`, even when `on_task` failed (the error goes to `on_error`). A
trigger whose task is missing is not run and its `last_run_at` stays; the error goes to
`on_error` (the legacy code swallowed it). A `delete_after_run` trigger is deleted after its
run, whatever the outcome.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from daycare.engine.cron_expressions import cron_next_run, cron_schedule_check
from daycare.engine.task_triggers import RunClaim, trigger_id_is_safe
from daycare.engine.ticker import Ticker
from daycare.engine.timing import Clock, Sleep, now_ms, sleep_ms
from daycare.storage.identifiers import cuid_create
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.cron_tasks import CronTaskRecord, CronTasksRepository
from daycare.storage.repositories.tasks import TasksRepository
from daycare.storage.repositories.trigger_runs import TriggerRunsRepository, cron_run_id

log = logging.getLogger("daycare.engine.cron")

# The scheduler looks at its triggers at least this often.
TICK_MAX_MS = 60_000
# A due trigger's occurrences are walked at most this far when the loop is late (a schedule that matches every
# minute, a year late, is 525,600 steps): beyond it the run takes the occurrence reached.
_CATCH_UP_STEPS = 10_000
# The agent id the legacy code put in the context used to read a trigger's task.
SYSTEM_CRON_AGENT = "system:cron"


@dataclass(frozen=True, slots=True)
class CronTaskContext:
    """What a run hands to `on_task`: the trigger and its task's current title and code."""

    trigger_id: str
    task_id: str
    task_name: str
    code: str
    agent_id: str | None
    user_id: str


@dataclass(frozen=True, slots=True)
class CronTaskInfo:
    """A scheduled trigger, as `get_task_context` describes it."""

    trigger_id: str
    task_id: str
    task_name: str
    agent_id: str | None
    user_id: str


# Posts a run: resolves its target, then claims the run and posts it in one transaction (`async with claim`).
OnTask = Callable[[CronTaskContext, dict[str, Any], RunClaim], Awaitable[None]]
OnError = Callable[[BaseException, str], Awaitable[None]]
OnTaskComplete = Callable[[CronTaskRecord, int], Awaitable[None]]


@dataclass(slots=True)
class _Scheduled:
    task: CronTaskRecord
    next_run: int


class CronScheduler:
    """The enabled triggers in memory with their next run, and the loop that runs them."""

    def __init__(
        self,
        *,
        cron_tasks: CronTasksRepository,
        tasks: TasksRepository,
        on_task: OnTask,
        on_error: OnError | None = None,
        on_task_complete: OnTaskComplete | None = None,
        runs: TriggerRunsRepository | None = None,
        engine: str = "",
        clock: Clock = now_ms,
        sleep: Sleep = sleep_ms,
    ) -> None:
        """`runs` keeps the claims of occurrences; `engine` names this engine in them."""
        self._cron_tasks = cron_tasks
        self._tasks = tasks
        self._runs = runs
        self._engine = engine
        self._on_task = on_task
        self._on_error = on_error
        self._on_task_complete = on_task_complete
        self._clock = clock
        self._scheduled: dict[str, _Scheduled] = {}
        self._active = False
        self._ticker = Ticker("cron", self._step, sleep)

    async def start(self) -> None:
        """Schedules the enabled triggers and starts the loop; a second call does nothing, one after stop() restarts."""
        if self._active:
            return
        self._active = True
        await self._schedule_all()
        self._ticker.start()

    async def stop(self) -> None:
        """Ends the loop after the runs in progress."""
        if not self._active:
            return
        self._active = False
        await self._ticker.stop()
        self._scheduled.clear()

    async def reload(self) -> None:
        """Reads the enabled triggers from the database again."""
        self._scheduled.clear()
        if self._active:
            await self._schedule_all()
            self._ticker.poke()

    def list_tasks(self) -> list[CronTaskRecord]:
        """The scheduled (enabled) triggers."""
        return [scheduled.task for scheduled in self._scheduled.values()]

    def next_run_of(self, trigger_id: str) -> int | None:
        scheduled = self._scheduled.get(trigger_id)
        return scheduled.next_run if scheduled else None

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
        """Creates or overwrites a trigger of the user's task; overwriting resets created_at and last_run_at.

        Raises ValueError for an unsafe id, an invalid schedule or another user's trigger id,
        LookupError when the user has no such task.
        """
        trigger_id = (id or "").strip()
        if trigger_id and not trigger_id_is_safe(trigger_id):
            raise ValueError("Cron trigger id contains invalid characters.")
        checked_schedule = cron_schedule_check(schedule)
        linked_task_id = task_id.strip()
        if not linked_task_id:
            raise ValueError("Cron trigger taskId is required.")
        trigger_id = trigger_id or cuid_create()
        existing = await self._cron_tasks.find_by_id(trigger_id)
        if existing is not None and existing.user_id != ctx.user_id:
            raise ValueError(f"Cron task belongs to another user: {trigger_id}")
        linked = await self._tasks.find_by_id(ctx, linked_task_id)
        if linked is None:
            raise LookupError(f"Task not found: {linked_task_id}")
        now = self._clock()
        record = CronTaskRecord(
            id=trigger_id,
            task_id=linked_task_id,
            user_id=ctx.user_id,
            name=linked.title,
            description=linked.description,
            schedule=checked_schedule,
            agent_id=(agent_id or "").strip() or None,
            enabled=enabled,
            delete_after_run=delete_after_run,
            last_run_at=None,
            created_at=now,
            updated_at=now,
        )
        await self._cron_tasks.create(record)
        if self._runs is not None:
            # From now on an engine that takes over runs an occurrence that no engine ran, the first one included.
            await self._runs.claim(cron_run_id(trigger_id), now, claimed_at=now, engine=self._engine)
        # An overwrite that disables a trigger unschedules it (the legacy code kept running it).
        self._scheduled.pop(trigger_id, None)
        if record.enabled and self._active:
            await self._schedule(record)
            self._ticker.poke()
        return record

    async def delete_task(self, ctx: Context, trigger_id: str) -> bool:
        """Deletes the user's trigger; False when it is missing or another user's."""
        existing = await self._cron_tasks.find_by_id(trigger_id)
        if existing is None or existing.user_id != ctx.user_id:
            return False
        self._scheduled.pop(trigger_id, None)
        deleted = await self._cron_tasks.delete(trigger_id)
        if deleted and self._runs is not None:
            await self._runs.delete(cron_run_id(trigger_id))
        return deleted

    async def load_task(self, trigger_id: str) -> CronTaskRecord | None:
        return await self._cron_tasks.find_by_id(trigger_id)

    def get_task_context(self, trigger_id: str) -> CronTaskInfo | None:
        scheduled = self._scheduled.get(trigger_id)
        if scheduled is None:
            return None
        task = scheduled.task
        return CronTaskInfo(task.id, task.task_id, task.name, task.agent_id, task.user_id)

    async def _schedule_all(self) -> None:
        claims = {run.id: run.occurrence_at for run in await self._runs.find_all()} if self._runs is not None else {}
        for record in await self._cron_tasks.find_all():
            await self._schedule(record, claims.get(cron_run_id(record.id)))

    async def _schedule(self, record: CronTaskRecord, claimed: int | None = None) -> None:
        """Schedules after `claimed`, the trigger's last claimed occurrence (one that fell due while no engine
        led runs at once), else from now."""
        next_run = cron_next_run(record.schedule, self._clock() if claimed is None else claimed)
        if next_run is None:
            # Only rows written before schedules were checked on creation can get here.
            log.warning("cron trigger %s: invalid schedule %r; not scheduled", record.id, record.schedule)
            await self._error_report(ValueError(f"Invalid cron schedule: {record.schedule}"), record.id)
            return
        self._scheduled[record.id] = _Scheduled(record, next_run)

    async def _step(self) -> int | None:
        now = self._clock()
        due: list[tuple[CronTaskRecord, int]] = []
        for scheduled in list(self._scheduled.values()):
            if now < scheduled.next_run:
                continue
            task = scheduled.task
            occurrence, next_run = _occurrence_latest(task.schedule, scheduled.next_run, now)
            if next_run is None or task.delete_after_run:
                del self._scheduled[task.id]
            else:
                scheduled.next_run = next_run
            due.append((task, occurrence))
        await asyncio.gather(*(self._run(task, occurrence) for task, occurrence in due))
        if not self._scheduled:
            return None
        earliest = min(scheduled.next_run for scheduled in self._scheduled.values())
        return min(TICK_MAX_MS, max(0, earliest - self._clock()))

    async def _run(self, task: CronTaskRecord, occurrence: int) -> None:
        try:
            await self._execute(task, occurrence)
        except Exception as error:
            log.warning("cron trigger %s failed: %s", task.id, error)
            await self._error_report(error, task.id)
        finally:
            if task.delete_after_run:
                try:
                    await self._cron_tasks.delete(task.id)
                except Exception:
                    log.warning("cron trigger %s: could not delete it after its run", task.id, exc_info=True)

    async def _execute(self, task: CronTaskRecord, occurrence: int) -> None:
        run_at = self._clock()
        linked = await self._tasks.find_by_id(Context(task.user_id, task.agent_id or SYSTEM_CRON_AGENT), task.task_id)
        if linked is None:
            raise LookupError(f"Cron trigger {task.id} references missing task: {task.task_id}")
        context = CronTaskContext(task.id, linked.id, linked.title, linked.code, task.agent_id, task.user_id)
        claim = RunClaim(self._runs, cron_run_id(task.id), occurrence, now=run_at, engine=self._engine)
        log.info("running cron trigger %s (%s)", task.id, task.name)
        try:
            await self._on_task(context, {}, claim)
        except Exception as error:
            log.warning("cron trigger %s: its task failed: %s", task.id, error)
            await self._error_report(error, task.id)
        if not await claim.settle():
            log.info("cron trigger %s: its run at %d was claimed by another engine", task.id, occurrence)
            return
        await self._cron_tasks.update(task.id, last_run_at=run_at, updated_at=run_at)
        ran = dataclasses.replace(task, last_run_at=run_at, updated_at=run_at)
        scheduled = self._scheduled.get(task.id)
        if scheduled is not None:
            scheduled.task = ran
        if self._on_task_complete is not None:
            await self._on_task_complete(ran, run_at)

    async def _error_report(self, error: BaseException, trigger_id: str) -> None:
        if self._on_error is not None:
            await self._on_error(error, trigger_id)


def _occurrence_latest(schedule: str, due: int, now: int) -> tuple[int, int | None]:
    """The latest occurrence at or before `now`, walking from the due one, and the one after it."""
    occurrence, following = due, cron_next_run(schedule, due)
    for _ in range(_CATCH_UP_STEPS):
        if following is None or following > now:
            break
        occurrence, following = following, cron_next_run(schedule, following)
    else:
        following = cron_next_run(schedule, now)
    return occurrence, following
