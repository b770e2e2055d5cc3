"""20260224_add_memory_columns: adds `sessions.invalidated_at` and `processed_until` (history ids, not times)."""

from __future__ import annotations

from daycare.storage.migrations.legacy.columns import column_add
from daycare.storage.migrations.legacy.context import StepContext
from daycare.storage.migrations.legacy.step import LegacyStep

NAME = "20260224_add_memory_columns"


async def run(ctx: StepContext) -> None:
    if not await ctx.columns("sessions"):
        return
    await column_add(ctx, "sessions", "invalidated_at", "INTEGER")
    await column_add(ctx, "sessions", "processed_until", "INTEGER")
    await ctx.execute("CREATE INDEX IF NOT EXISTS idx_sessions_invalidated_at ON sessions(invalidated_at)")


STEP = LegacyStep(NAME, run)
