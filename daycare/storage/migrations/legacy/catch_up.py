"""Runs the legacy steps a file lacks, in legacy order, each atomically with its `_migrations` row.

Two kinds of file need it: a legacy file whose `_migrations` holds only some of the 33 names
(a set: order and unknown extra names do not matter), and a new file next to legacy data
folders (`agents/`, `cron/`, ...), which the legacy code would have imported on first start.
Which steps a file needs is the baseline's rule (`baseline_v1.legacy_steps_missing`).

A problem of the legacy data (a broken or unsafe file, a value SQLite cannot store) is skipped
with a warning and counted; a database error (a lock, a full disk, a constraint) fails the
step, which is rolled back and stays pending, so a rerun imports what it had not kept.

The runner works on whatever connection it is given. Under `database_migrate` that is the
plain connection, and each step gets a transaction of its own, so an interrupted upgrade
keeps the steps it finished. Under `aerich upgrade` it is Aerich's open transaction, and each
step gets a savepoint inside it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import BaseORMException

from daycare.storage.clock import now_ms
from daycare.storage.db import sqlite
from daycare.storage.errors import StorageError
from daycare.storage.migrations.legacy.context import LegacySkips, StepContext
from daycare.storage.migrations.legacy.files import LegacyDataError
from daycare.storage.migrations.legacy.step import LegacyStep
from daycare.storage.migrations.progress import Progress

# The legacy runner's own table, in its text (sqlite_master keeps it).
MIGRATIONS_TABLE_SQL = """
    CREATE TABLE IF NOT EXISTS _migrations (
      name TEXT PRIMARY KEY,
      applied_at INTEGER NOT NULL
    );
"""

# Data folders of releases before SQLite; the import steps read them next to the database file.
LEGACY_FOLDERS = ("agents", "cron", "heartbeat", "signals", "channels", "expose", "processes")


class LegacyStepFailed(StorageError):
    """A legacy step could not run; it was rolled back, the steps before it stay applied."""


async def database_folder(conn: BaseDBAsyncClient) -> Path | None:
    """The folder holding the database file, or None for an in-memory database."""
    file = await sqlite.database_file(conn)
    return Path(file).parent if file else None


def legacy_folders_found(folder: Path | None) -> list[str]:
    """The legacy data folders present in `folder`."""
    return [name for name in LEGACY_FOLDERS if folder is not None and (folder / name).is_dir()]


async def _recorded(ctx: StepContext, name: str) -> bool:
    return await ctx.row("SELECT 1 AS found FROM _migrations WHERE name = ?", [name]) is not None


async def _record(ctx: StepContext, name: str) -> None:
    await ctx.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, ?)", [name, now_ms()])


async def step_apply(ctx: StepContext, step: LegacyStep) -> bool:
    """Runs one step and records it; returns False when it was already recorded."""
    if step.batched:
        if await _recorded(ctx, step.name):
            return False
        await step.run(ctx)
        async with ctx.transaction() as tx:
            await _record(tx, step.name)
        return True
    async with ctx.transaction() as tx:
        if await _recorded(tx, step.name):
            return False
        await step.run(tx)
        await _record(tx, step.name)
    return True


async def legacy_catch_up(
    conn: BaseDBAsyncClient,
    missing: Sequence[str],
    *,
    notify: Callable[[str], None],
    progress: Progress,
    skipped: LegacySkips | None = None,
) -> list[str]:
    """Runs the `missing` steps in legacy order on `conn`; returns the names it applied.

    Each piece of legacy data an import step leaves out is counted in `skipped` (when given)
    and warned about; one `notify` line at the end says how many there were.
    Raises LegacyStepFailed, naming the step, when one fails; that step leaves no trace.
    """
    # The 33 ported steps (and the YAML parser of the import steps) load only when a file needs them.
    from daycare.storage.migrations.legacy.chain import LEGACY_CHAIN

    skipped = LegacySkips() if skipped is None else skipped
    context = StepContext(conn, await database_folder(conn), progress, skipped)
    await conn.execute_script(MIGRATIONS_TABLE_SQL)
    wanted = set(missing)
    applied = []
    for step in LEGACY_CHAIN:
        if step.name not in wanted:
            continue
        notify(f"Legacy step {step.name}")
        try:
            if await step_apply(context, step):
                applied.append(step.name)
        except BaseORMException as exc:
            raise LegacyStepFailed(
                f"Legacy step {step.name} failed on a database error: {_database_error_text(exc)}",
                "It was rolled back and is still pending: nothing it imported was kept. Under daycare upgrade"
                " the steps before it stay applied; under aerich upgrade nothing was kept.",
                "Fix the cause (free disk space, stop the program holding the database) and run the upgrade"
                " again: it goes on from this step.",
            ) from exc
        except (StorageError, LegacyDataError, OSError) as exc:
            raise LegacyStepFailed(
                f"Legacy step {step.name} failed: {exc}",
                "It was rolled back. Under daycare upgrade the steps before it stay applied; under aerich"
                " upgrade nothing was kept.",
                "Fix the cause and run the upgrade again, or restore the backup (<name>.bak-<time>).",
            ) from exc
    if skipped.count:
        notify(f"Skipped {skipped.count} piece(s) of legacy data that could not be imported; a warning names each.")
    return applied


def _database_error_text(exc: BaseException) -> str:
    """The original database error: after a full disk SQLite ends the transaction itself, and the
    failed rollback of the savepoint that follows ("no such savepoint") must not hide the cause."""
    cause: BaseException = exc
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, BaseORMException):
            cause = seen
        seen = seen.__context__
    return str(cause)
