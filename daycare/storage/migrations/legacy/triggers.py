"""Tasks for cron and heartbeat triggers that have none: where this port goes past the legacy chain.

Triggers from before tasks existed (2026-02-24), and those the file-import step brings in, have
no `task_id`. The legacy chain then stopped for good at step 27 (cron) or 32 (heartbeat). Here
each such trigger gets a task of its own user, made from the trigger itself, before the first
step that needs the link (and before step 31 drops the trigger's code). `docs/storage.md`
("Upgrading older legacy files") lists exactly what is created.
"""

from __future__ import annotations

import logging
from typing import Any

from daycare.storage.errors import StorageError
from daycare.storage.identifiers import cuid_create
from daycare.storage.migrations.legacy.context import StepContext

log = logging.getLogger("daycare.storage.migrations.legacy")

TRIGGER_TABLES = ("tasks_cron", "tasks_heartbeat")


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


async def _task_exists(ctx: StepContext, task_id: str) -> bool:
    return await ctx.row("SELECT 1 AS found FROM tasks WHERE id = ?", [task_id]) is not None


async def _task_id_new(ctx: StepContext, trigger: dict[str, Any]) -> str:
    """The old cron `task_uid` (the `taskId` of its TASK.md) when it is free, else a new cuid2."""
    task_uid = _text(trigger.get("task_uid"))
    if task_uid is not None and not await _task_exists(ctx, task_uid):
        return task_uid
    return cuid_create()


async def triggers_link(ctx: StepContext, table: str) -> int:
    """Gives every trigger of `table` without a usable task one of its own user; returns how many.

    A trigger whose `task_id` is blank gets a new task; one whose `task_id` names a missing
    task gets a task under that id. The task takes the trigger's name (cron) or title
    (heartbeat), its description (cron), its code or prompt, and its timestamps.
    """
    columns = await ctx.columns(table)
    if "task_id" not in columns or not await ctx.table_exists("tasks"):
        return 0
    unlinked = await ctx.rows(
        f"SELECT tr.* FROM {table} tr LEFT JOIN tasks t ON t.id = tr.task_id"
        " WHERE tr.task_id IS NULL OR TRIM(tr.task_id) = '' OR t.id IS NULL ORDER BY tr.rowid"
    )
    if not unlinked:
        return 0
    owner_id = await ctx.owner_id()
    task_columns = await ctx.columns("tasks")
    cron = table == "tasks_cron"
    source = "code" if "code" in columns else "prompt" if "prompt" in columns else None
    created: list[str] = []
    for trigger in unlinked:
        user_id = _text(trigger.get("user_id")) or owner_id
        if user_id is None:
            raise StorageError(f"Cannot give {table} row {trigger['id']} a task: it has no user and there is no owner.")
        task_id = trigger["task_id"] if _text(trigger["task_id"]) else await _task_id_new(ctx, trigger)
        if not await _task_exists(ctx, task_id):
            values: dict[str, Any] = {
                "id": task_id,
                "user_id": user_id,
                "title": trigger["name"] if cron else trigger["title"],
                "description": trigger.get("description") if cron else None,
                "code": trigger[source] if source else "",
                "created_at": trigger["created_at"],
                "updated_at": trigger["updated_at"],
            }
            values = {key: value for key, value in values.items() if key in task_columns}
            await ctx.execute(
                f"INSERT INTO tasks ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                list(values.values()),
            )
            created.append(task_id)
        await ctx.execute(f"UPDATE {table} SET task_id = ? WHERE id = ?", [task_id, trigger["id"]])
    if created:
        # One line per table, not per trigger: a large file has hundreds of them.
        shown = ", ".join(created[:3]) + (", ..." if len(created) > 3 else "")
        log.info("Created %d task(s) for %s rows that had none (%s).", len(created), table, shown)
        if source is None:
            log.warning("Those %d task(s) have no code: a legacy release dropped the code of %s.", len(created), table)
    return len(unlinked)


async def triggers_link_all(ctx: StepContext) -> int:
    """Links the triggers of both tables; returns how many got a task."""
    return sum([await triggers_link(ctx, table) for table in TRIGGER_TABLES])
