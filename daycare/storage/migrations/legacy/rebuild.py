"""Table rebuilds (create `<t>_next`, copy, drop `<t>`, rename) that keep every row, index and link.

They run inside the step's transaction with foreign keys on: `PRAGMA foreign_keys` cannot
change inside a transaction, so the checks are deferred to the end of it instead
(`defer_foreign_keys`), and verified with `PRAGMA foreign_key_check` before the step ends.
DROP TABLE with foreign keys on deletes every row first, which would fire ON DELETE actions on
children; a rebuild whose dropped table has such a child is refused before anything changes.
"""

from __future__ import annotations

from collections.abc import Sequence

from tortoise.exceptions import BaseORMException

from daycare.storage.errors import StorageError
from daycare.storage.migrations.legacy.context import StepContext, database_failed, log
from daycare.storage.migrations.progress import ProgressCounter

CHUNK_ROWS = 2000
_HARMLESS_ON_DELETE = ("NO ACTION",)


async def _tables(ctx: StepContext) -> list[str]:
    rows = await ctx.rows("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    return [str(row["name"]) for row in rows]


async def _children(ctx: StepContext, parents: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
    """Tables with a foreign key to one of `parents`: {child: [(parent, on_delete)]}."""
    found: dict[str, list[tuple[str, str]]] = {}
    for table in await _tables(ctx):
        for key in await ctx.rows("SELECT * FROM pragma_foreign_key_list(?)", [table]):
            if key["table"] in parents:
                found.setdefault(table, []).append((str(key["table"]), str(key["on_delete"]).upper()))
    return found


async def rebuild_begin(ctx: StepContext, dropped: Sequence[str]) -> None:
    """Refuses a rebuild whose DROP would cascade, then defers foreign key checks to commit."""
    for child, keys in (await _children(ctx, dropped)).items():
        if child in dropped:
            continue
        for parent, on_delete in keys:
            if on_delete not in _HARMLESS_ON_DELETE:
                raise StorageError(
                    f"Cannot rebuild {parent}: {child} references it with ON DELETE {on_delete}, "
                    "so dropping the old table would change its rows."
                )
    await ctx.execute("PRAGMA defer_foreign_keys = ON")


async def rebuild_verify(ctx: StepContext, rebuilt: Sequence[str]) -> None:
    """Raises unless every row of the rebuilt tables, and of their children, has its parent."""
    tables = list(dict.fromkeys([*rebuilt, *(await _children(ctx, rebuilt))]))
    for table in tables:
        broken = await ctx.rows("SELECT * FROM pragma_foreign_key_check(?)", [table])
        if broken:
            parents = sorted({str(row["parent"]) for row in broken})
            raise StorageError(
                f"After rebuilding, {len(broken)} row(s) of {table} reference missing rows of {', '.join(parents)}."
            )


async def objects_saved(ctx: StepContext, table: str) -> list[tuple[str, str]]:
    """(name, SQL) of the indexes and triggers on `table` that statements created (autoindexes excluded)."""
    rows = await ctx.rows(
        "SELECT name, sql FROM sqlite_master WHERE type IN ('index', 'trigger') AND tbl_name = ? AND sql IS NOT NULL",
        [table],
    )
    return [(str(row["name"]), str(row["sql"])) for row in rows]


async def objects_restore(ctx: StepContext, table: str, saved: Sequence[tuple[str, str]]) -> None:
    """Recreates the saved indexes and triggers that the rebuild did not make again under the same name.

    One that no longer fits the new table (a dropped column) is left out with a warning; a
    failure of the database itself (full, locked, I/O) fails the step instead.
    """
    for name, sql in saved:
        if await ctx.row("SELECT 1 AS found FROM sqlite_master WHERE name = ?", [name]):
            continue
        try:
            async with ctx.transaction() as attempt:
                await attempt.execute(sql)
        except BaseORMException as exc:
            if database_failed(exc):
                raise
            log.warning("Left out %s after rebuilding %s: %s", name, table, exc)


async def rows_count(ctx: StepContext, tables: Sequence[str]) -> int:
    total = 0
    for table in tables:
        found = await ctx.row(f"SELECT COUNT(*) AS count FROM {table}")
        total += int(found["count"]) if found else 0
    return total


async def rows_copy(ctx: StepContext, counter: ProgressCounter, insert_select: str, source: str, alias: str) -> None:
    """Runs `insert_select` (an INSERT ... SELECT ... FROM `source` `alias`) in rowid chunks, counting rows."""
    last = -(2**63)
    while True:
        tail = await ctx.row(
            f"SELECT rowid AS id FROM {source} WHERE rowid > ? ORDER BY rowid LIMIT 1 OFFSET ?", [last, CHUNK_ROWS - 1]
        )
        end = tail["id"] if tail else 2**63 - 1
        copied = await ctx.execute(f"{insert_select} WHERE {alias}.rowid > ? AND {alias}.rowid <= ?", [last, end])
        counter.advance(copied)
        if tail is None:
            return
        last = end
