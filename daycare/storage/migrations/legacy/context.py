"""What a legacy step runs on: one ORM connection (a transaction or a savepoint), the folder
next to the database file, and a way to report progress and skipped files."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from daycare.storage.migrations.progress import Progress, ProgressCounter

log = logging.getLogger("daycare.storage.migrations.legacy")


@dataclass(frozen=True)
class StepContext:
    """A step's view of the database: queries with bound parameters on `conn`, nothing else."""

    conn: BaseDBAsyncClient
    data_dir: Path | None  # the folder holding the database file; None for :memory:
    progress: Progress

    async def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return await self.conn.execute_query_dict(sql, list(params))

    async def row(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        found = await self.rows(sql, params)
        return found[0] if found else None

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Runs one statement; returns the number of rows it changed."""
        changed, _ = await self.conn.execute_query(sql, list(params))
        return changed

    async def script(self, sql: str) -> None:
        """Runs several statements inside the current transaction."""
        await self.conn.execute_script(sql)

    async def columns(self, table: str) -> list[str]:
        """The column names of `table`, in order; empty when the table does not exist."""
        found = await self.rows("SELECT name FROM pragma_table_info(?)", [table])
        return [str(column["name"]) for column in found]

    async def table_exists(self, table: str) -> bool:
        return bool(await self.rows("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [table]))

    async def owner_id(self) -> str | None:
        """The owner user's id, trimmed, or None when there is no owner (or no users table)."""
        if not await self.table_exists("users"):
            return None
        found = await self.row("SELECT id FROM users WHERE is_owner = 1 LIMIT 1")
        owner = found["id"].strip() if found and isinstance(found["id"], str) else ""
        return owner or None

    async def agent_user_id(self, agent_id: str) -> str | None:
        """The user an agent belongs to, or None when the agent (or the column) is missing."""
        if "user_id" not in await self.columns("agents"):
            return None
        found = await self.row("SELECT user_id FROM agents WHERE id = ? LIMIT 1", [agent_id])
        user_id = found["user_id"].strip() if found and isinstance(found["user_id"], str) else ""
        return user_id or None

    def counter(self, label: str, total: int) -> ProgressCounter:
        return ProgressCounter(self.progress, label, total)

    def skip(self, path: Path, reason: str) -> None:
        """Warns that a legacy data file was left out, naming it; the step goes on."""
        log.warning("Skipped legacy data %s: %s", path, reason)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[StepContext]:
        """A transaction of its own, or a savepoint when `conn` is already inside one."""
        async with self.conn._in_transaction() as tx:
            yield replace(self, conn=tx)
