"""20260221_backfill_cron_users: a cron trigger with no user (NULL or blank) becomes the owner's."""

from __future__ import annotations

from daycare.storage.migrations.legacy.context import StepContext
from daycare.storage.migrations.legacy.step import LegacyStep

NAME = "20260221_backfill_cron_users"


async def run(ctx: StepContext) -> None:
    owner_id = await ctx.owner_id()
    if owner_id is not None:
        await ctx.execute("UPDATE tasks_cron SET user_id = ? WHERE user_id IS NULL OR TRIM(user_id) = ''", [owner_id])


STEP = LegacyStep(NAME, run)
