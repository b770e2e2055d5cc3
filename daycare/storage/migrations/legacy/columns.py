"""Column changes the legacy steps made only when the column was (or was not) there."""

from __future__ import annotations

from daycare.storage.migrations.legacy.context import StepContext


async def column_add(ctx: StepContext, table: str, column: str, definition: str) -> None:
    """Adds `column` (`definition` is its text after the name) unless the table already has it."""
    if column not in await ctx.columns(table):
        await ctx.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")


async def column_drop(ctx: StepContext, table: str, column: str) -> None:
    """Drops `column` when the table has it."""
    if column in await ctx.columns(table):
        await ctx.execute(f"ALTER TABLE {table} DROP COLUMN {column}")


async def column_rename(ctx: StepContext, table: str, old: str, new: str) -> None:
    """Renames `old` to `new` when the table has `old` and not yet `new`."""
    columns = await ctx.columns(table)
    if old in columns and new not in columns:
        await ctx.execute(f"ALTER TABLE {table} RENAME COLUMN {old} TO {new}")
