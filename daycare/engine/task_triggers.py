"""Rules shared by the two kinds of task trigger, cron and heartbeat."""

from __future__ import annotations

import re

from daycare.storage.repositories.context import Context
from daycare.storage.repositories.cron_tasks import CronTasksRepository
from daycare.storage.repositories.heartbeat_tasks import HeartbeatTasksRepository
from daycare.storage.repositories.tasks import TasksRepository

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
