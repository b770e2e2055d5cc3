"""20260222_add_user_parent: adds `users.parent_user_id` (sub-users) and `users.name`, with a partial index."""

from __future__ import annotations

from daycare.storage.migrations.legacy.columns import column_add
from daycare.storage.migrations.legacy.context import StepContext
from daycare.storage.migrations.legacy.step import LegacyStep

NAME = "20260222_add_user_parent"


async def run(ctx: StepContext) -> None:
    if not await ctx.columns("users"):
        return
    await column_add(ctx, "users", "parent_user_id", "TEXT REFERENCES users(id)")
    await column_add(ctx, "users", "name", "TEXT")
    await ctx.execute(
        "CREATE INDEX IF NOT EXISTS idx_users_parent ON users(parent_user_id) WHERE parent_user_id IS NOT NULL"
    )


STEP = LegacyStep(NAME, run)
