"""20260224_add_tasks_table: creates `tasks` (keyed by `id` alone for now) and links both trigger
tables to it with a nullable `task_id`."""

from __future__ import annotations

from daycare.storage.migrations.legacy.columns import column_add
from daycare.storage.migrations.legacy.context import StepContext
from daycare.storage.migrations.legacy.step import LegacyStep

NAME = "20260224_add_tasks_table"

TASKS_SQL = """
            CREATE TABLE IF NOT EXISTS tasks (
                id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL,
                title TEXT NOT NULL,
                description TEXT,
                code TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL,
                deleted_at INTEGER
            );

            CREATE INDEX IF NOT EXISTS idx_tasks_user_id ON tasks(user_id);
            CREATE INDEX IF NOT EXISTS idx_tasks_updated_at ON tasks(updated_at);
"""

TRIGGER_INDEXES_SQL = """
            CREATE INDEX IF NOT EXISTS idx_tasks_cron_task_id ON tasks_cron(task_id);
            CREATE INDEX IF NOT EXISTS idx_tasks_heartbeat_task_id ON tasks_heartbeat(task_id);
"""


async def run(ctx: StepContext) -> None:
    await ctx.script(TASKS_SQL)
    await column_add(ctx, "tasks_cron", "task_id", "TEXT REFERENCES tasks(id)")
    await column_add(ctx, "tasks_heartbeat", "task_id", "TEXT REFERENCES tasks(id)")
    await ctx.script(TRIGGER_INDEXES_SQL)


STEP = LegacyStep(NAME, run)
