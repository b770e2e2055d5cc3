"""20260222_session_ended_at: adds `sessions.ended_at`."""

from __future__ import annotations

from daycare.storage.migrations.legacy.columns import column_add
from daycare.storage.migrations.legacy.context import StepContext
from daycare.storage.migrations.legacy.step import LegacyStep

NAME = "20260222_session_ended_at"


async def run(ctx: StepContext) -> None:
    if await ctx.columns("sessions"):
        await column_add(ctx, "sessions", "ended_at", "INTEGER")


STEP = LegacyStep(NAME, run)
