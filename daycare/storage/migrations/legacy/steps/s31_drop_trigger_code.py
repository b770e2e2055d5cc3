"""20260303_drop_trigger_code: drops `code` from both trigger tables; the code lives in `tasks.code`.

Past the legacy code: a trigger still without a task gets one first, made from this code,
so dropping the column loses nothing.
"""

from __future__ import annotations

from daycare.storage.migrations.legacy.columns import column_drop
from daycare.storage.migrations.legacy.context import StepContext
from daycare.storage.migrations.legacy.step import LegacyStep
from daycare.storage.migrations.legacy.triggers import triggers_link_all

NAME = "20260303_drop_trigger_code"


async def run(ctx: StepContext) -> None:
    await triggers_link_all(ctx)
    await column_drop(ctx, "tasks_cron", "code")
    await column_drop(ctx, "tasks_heartbeat", "code")


STEP = LegacyStep(NAME, run)
