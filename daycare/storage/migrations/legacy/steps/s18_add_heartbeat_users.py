"""20260223_add_heartbeat_users: adds `tasks_heartbeat.user_id` (default '') and gives every row the owner."""

from __future__ import annotations

from daycare.storage.errors import StorageError
from daycare.storage.migrations.legacy.columns import column_add
from daycare.storage.migrations.legacy.context import StepContext
from daycare.storage.migrations.legacy.step import LegacyStep

NAME = "20260223_add_heartbeat_users"


async def run(ctx: StepContext) -> None:
    if not await ctx.columns("tasks_heartbeat"):
        return
    await column_add(ctx, "tasks_heartbeat", "user_id", "TEXT NOT NULL DEFAULT ''")
    owner_id = await ctx.owner_id()
    pending = await ctx.row("SELECT COUNT(1) AS count FROM tasks_heartbeat WHERE user_id IS NULL OR TRIM(user_id) = ''")
    if pending and pending["count"] > 0 and owner_id is None:
        raise StorageError("No owner user found for heartbeat user backfill.")
    if owner_id is not None:
        await ctx.execute(
            "UPDATE tasks_heartbeat SET user_id = ? WHERE user_id IS NULL OR TRIM(user_id) = ''", [owner_id]
        )
    await ctx.execute("CREATE INDEX IF NOT EXISTS idx_tasks_heartbeat_user_id ON tasks_heartbeat(user_id)")


STEP = LegacyStep(NAME, run)
