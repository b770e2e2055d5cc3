"""20260224_rename_prompt_to_code: renames `prompt` to `code` in both trigger tables."""

from __future__ import annotations

from daycare.storage.migrations.legacy.columns import column_rename
from daycare.storage.migrations.legacy.context import StepContext
from daycare.storage.migrations.legacy.step import LegacyStep

NAME = "20260224_rename_prompt_to_code"


async def run(ctx: StepContext) -> None:
    await column_rename(ctx, "tasks_heartbeat", "prompt", "code")
    await column_rename(ctx, "tasks_cron", "prompt", "code")


STEP = LegacyStep(NAME, run)
