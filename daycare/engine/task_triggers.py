"""Rules shared by the two kinds of task trigger, cron and heartbeat."""

from __future__ import annotations

import re
from contextlib import AbstractAsyncContextManager
from types import TracebackType

from daycare.storage.repositories.context import Context
from daycare.storage.repositories.cron_tasks import CronTasksRepository
from daycare.storage.repositories.heartbeat_tasks import HeartbeatTasksRepository
from daycare.storage.repositories.tasks import TasksRepository
from daycare.storage.repositories.trigger_runs import TriggerRunsRepository

_SAFE_ID = re.compile(r"[a-zA-Z0-9._-]+")


def trigger_id_is_safe(value: str) -> bool:
    """Whether a caller-chosen trigger id only has letters, digits, dots, underscores and hyphens."""
    return _SAFE_ID.fullmatch(value) is not None


async def task_delete_if_orphan(
    ctx: Context,
    task_id: str,
    *,
    tasks: TasksRepository,
    cron_tasks: CronTasksRepository,
    heartbeat_tasks: HeartbeatTasksRepository,
) -> bool:
    """Soft-deletes the user's task once no cron or heartbeat trigger points at it; True if it did."""
    if await cron_tasks.find_many_by_task_id(ctx, task_id):
        return False
    if await heartbeat_tasks.find_many_by_task_id(ctx, task_id):
        return False
    return await tasks.delete(ctx, task_id)


class RunClaim:
    """One occurrence of a trigger to run once: `async with claim as claimed:` claims it in a transaction
    that the block's writes (the posts) join, so the run is claimed and delivered together, or neither.

    Without a repository (no claims kept) every occurrence counts as claimed.
    """

    def __init__(
        self, runs: TriggerRunsRepository | None, id: str, occurrence_at: int, *, now: int, engine: str
    ) -> None:
        self.id = id
        self.occurrence_at = occurrence_at
        self.claimed: bool | None = None  # None until tried
        self._runs = runs
        self._now = now
        self._engine = engine
        self._claiming: AbstractAsyncContextManager[bool] | None = None

    async def __aenter__(self) -> bool:
        if self._runs is None:
            self.claimed = True
            return True
        self._claiming = self._runs.claiming(self.id, self.occurrence_at, claimed_at=self._now, engine=self._engine)
        self.claimed = await self._claiming.__aenter__()
        return self.claimed

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        claiming, self._claiming = self._claiming, None
        if claiming is not None:
            await claiming.__aexit__(exc_type, exc, tb)
        if exc_type is not None:
            self.claimed = None  # rolled back: nothing was claimed

    async def settle(self) -> bool:
        """Whether this engine ran the occurrence. One whose delivery failed before (or without) its claim is
        claimed alone now, so that no engine runs it again."""
        if self.claimed is None:
            self.claimed = self._runs is None or await self._runs.claim(
                self.id, self.occurrence_at, claimed_at=self._now, engine=self._engine
            )
        return self.claimed
