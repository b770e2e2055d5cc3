"""20260228_soft_delete_tasks: adds `tasks.deleted_at` where it is missing (step 20 already creates it)."""

from __future__ import annotations

from daycare.storage.migrations.legacy.columns import column_add
from daycare.storage.migrations.legacy.context import StepContext
from daycare.storage.migrations.legacy.step import LegacyStep

NAME = "20260228_soft_delete_tasks"


async def run(ctx: StepContext) -> None:
    if await ctx.columns("tasks"):
        await column_add(ctx, "tasks", "deleted_at", "INTEGER")


STEP = LegacyStep(NAME, run)
