"""One legacy migration step: its recorded name and what it does."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from daycare.storage.migrations.legacy.context import StepContext


@dataclass(frozen=True)
class LegacyStep:
    """A step of the legacy chain.

    The runner wraps `run` and the step's `_migrations` row in one transaction (a savepoint
    when one is already open). A `batched` step gets the outer connection instead and commits
    its own batches, so an interrupted run keeps the batches it finished.
    """

    name: str
    run: Callable[[StepContext], Awaitable[None]]
    batched: bool = False


def sql_step(name: str, sql: str) -> LegacyStep:
    """A step that only runs a fixed SQL script."""

    async def run(ctx: StepContext) -> None:
        await ctx.script(sql)

    return LegacyStep(name, run)
