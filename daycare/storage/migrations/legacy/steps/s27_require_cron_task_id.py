"""20260227_require_cron_task_id: rebuilds `tasks_cron` without `task_uid` and with `task_id NOT NULL`.

Past the legacy code: a cron (or heartbeat) trigger without a task gets one first
(`triggers_link_all`), so this step no longer stops the upgrade for good.
"""

from __future__ import annotations

from daycare.storage.errors import StorageError
from daycare.storage.migrations.legacy.context import StepContext
from daycare.storage.migrations.legacy.rebuild import (
    objects_restore,
    objects_saved,
    rebuild_begin,
    rebuild_verify,
    rows_copy,
    rows_count,
)
from daycare.storage.migrations.legacy.step import LegacyStep
from daycare.storage.migrations.legacy.triggers import triggers_link_all

NAME = "20260227_require_cron_task_id"

NEXT_SQL = """
            CREATE TABLE tasks_cron_next (
                id TEXT PRIMARY KEY,
                task_id TEXT NOT NULL REFERENCES tasks(id),
                user_id TEXT,
                name TEXT NOT NULL,
                description TEXT,
                schedule TEXT NOT NULL,
                code TEXT NOT NULL,
                agent_id TEXT,
                enabled INTEGER NOT NULL DEFAULT 1,
                delete_after_run INTEGER NOT NULL DEFAULT 0,
                last_run_at INTEGER,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL
            );
"""

COLUMNS = (
    "id, task_id, user_id, name, description, schedule, code, agent_id, enabled, delete_after_run, last_run_at,"
    " created_at, updated_at"
)

SWAP_SQL = """
DROP TABLE tasks_cron;
ALTER TABLE tasks_cron_next RENAME TO tasks_cron;
CREATE INDEX IF NOT EXISTS idx_tasks_cron_enabled ON tasks_cron(enabled);
CREATE INDEX IF NOT EXISTS idx_tasks_cron_updated_at ON tasks_cron(updated_at);
CREATE INDEX IF NOT EXISTS idx_tasks_cron_task_id ON tasks_cron(task_id);
"""


async def run(ctx: StepContext) -> None:
    columns = await ctx.columns("tasks_cron")
    if not columns:
        return
    if "task_uid" not in columns and await ctx.row(
        "SELECT 1 AS found FROM pragma_table_info('tasks_cron') WHERE name = 'task_id' AND \"notnull\" = 1"
    ):
        return
    await triggers_link_all(ctx)
    missing = await ctx.row("SELECT id FROM tasks_cron WHERE task_id IS NULL OR TRIM(task_id) = '' LIMIT 1")
    if missing:
        raise StorageError(f"Cannot require tasks_cron.task_id; trigger {missing['id']} has no task_id.")
    orphan = await ctx.row(
        "SELECT c.id AS id FROM tasks_cron c LEFT JOIN tasks t ON t.id = c.task_id WHERE t.id IS NULL LIMIT 1"
    )
    if orphan:
        raise StorageError(f"Cannot require tasks_cron.task_id; trigger {orphan['id']} references a missing task.")

    await rebuild_begin(ctx, ["tasks_cron"])
    saved = await objects_saved(ctx, "tasks_cron")
    await ctx.script(NEXT_SQL)
    counter = ctx.counter("Rebuilding tasks_cron", await rows_count(ctx, ["tasks_cron"]))
    await rows_copy(
        ctx, counter, f"INSERT INTO tasks_cron_next ({COLUMNS}) SELECT {COLUMNS} FROM tasks_cron c", "tasks_cron", "c"
    )
    await ctx.script(SWAP_SQL)
    await objects_restore(ctx, "tasks_cron", saved)
    await rebuild_verify(ctx, ["tasks_cron"])
    counter.finish()


STEP = LegacyStep(NAME, run)
