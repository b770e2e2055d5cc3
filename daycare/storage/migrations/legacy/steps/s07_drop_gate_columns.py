"""20260221_drop_gate_columns: drops the `gate` column of both trigger tables where an early release made one."""

from __future__ import annotations

from daycare.storage.migrations.legacy.columns import column_drop
from daycare.storage.migrations.legacy.context import StepContext
from daycare.storage.migrations.legacy.step import LegacyStep

NAME = "20260221_drop_gate_columns"


async def run(ctx: StepContext) -> None:
    await column_drop(ctx, "tasks_cron", "gate")
    await column_drop(ctx, "tasks_heartbeat", "gate")


STEP = LegacyStep(NAME, run)
