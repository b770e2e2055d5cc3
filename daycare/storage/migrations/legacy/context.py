"""What a legacy step runs on: one ORM connection (a transaction or a savepoint), the folder
next to the database file, and a way to report progress and skipped legacy data."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import IO, Any

from tortoise.backends.base.client import BaseDBAsyncClient

from daycare.storage.migrations.legacy.files import (
    LegacyDataError,
    LegacyFolder,
    json_parse,
    jsonl_lines,
    path_text,
)
from daycare.storage.migrations.progress import Progress, ProgressCounter

log = logging.getLogger("daycare.storage.migrations.legacy")

# SQLite's primary result codes that mean the database itself failed (busy, locked, out of
# memory, read-only, interrupted, I/O, corrupt, full, cannot open, not a database), as opposed
# to a statement that does not fit the schema or the data.
_DATABASE_FAILURES = frozenset({5, 6, 7, 8, 9, 10, 11, 13, 14, 26})


def database_failed(exc: BaseException) -> bool:
    """True when `exc`, or an error it wraps, says the database itself failed (locked, full, I/O, ...)."""
    seen: BaseException | None = exc
    while seen is not None:
        code = getattr(seen, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF in _DATABASE_FAILURES:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@dataclass(eq=False)
class LegacySkips:
    """How many legacy files, folders, lines or entries the import steps left out, each with a warning."""

    count: int = 0


@dataclass(frozen=True)
class StepContext:
    """A step's view of the database: queries with bound parameters on `conn`, nothing else."""

    conn: BaseDBAsyncClient
    data_dir: Path | None  # the folder holding the database file; None for :memory:
    progress: Progress
    skipped: LegacySkips = field(default_factory=LegacySkips)  # shared by the contexts `transaction` makes

    @cached_property
    def data(self) -> LegacyFolder:
        """The data folder the import steps read; only for a database in a file (`data_dir` set)."""
        if self.data_dir is None:
            raise RuntimeError("an in-memory database has no data folder")
        return LegacyFolder.of(self.data_dir)

    async def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return await self.conn.execute_query_dict(sql, list(params))

    async def row(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        found = await self.rows(sql, params)
        return found[0] if found else None

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Runs one statement; returns the number of rows it changed.

        A value SQLite cannot bind (an integer beyond 64 bits, text that is not UTF-8) raises
        LegacyDataError before the statement runs: such a value can only come from legacy data.
        """
        try:
            changed, _ = await self.conn.execute_query(sql, list(params))
        except (OverflowError, UnicodeEncodeError) as exc:
            raise LegacyDataError(f"it holds a value SQLite cannot store ({exc})") from None
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
        """Warns that legacy data was left out, naming it, and counts it; the step goes on."""
        self.skipped.count += 1
        log.warning("Skipped legacy data %s: %s", path_text(path), reason)

    def folders_list(self, folder: Path) -> list[Path]:
        """The sub-folders of `folder` in the data folder; see `LegacyFolder.entries_list`."""
        return self.data.entries_list(folder, self.skip, folders=True)

    def files_list(self, folder: Path, name_match: Callable[[str], bool]) -> list[Path]:
        """The files of `folder` whose name matches, in the data folder; see `LegacyFolder.entries_list`."""
        return self.data.entries_list(folder, self.skip, folders=False, name_match=name_match)

    def json_lines(self, stream: IO[bytes], path: Path) -> Iterator[tuple[int, Any]]:
        """The parsed lines of a JSON-lines file, one at a time; a line that is too long or not JSON is skipped."""
        for number, line in jsonl_lines(stream, path_text(path.name)):
            try:
                if isinstance(line, LegacyDataError):
                    raise line
                value = json_parse(line)
            except LegacyDataError as exc:
                self.skip(path, f"line {number} is {exc}")
                continue
            yield number, value

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[StepContext]:
        """A transaction of its own, or a savepoint when `conn` is already inside one."""
        async with self.conn._in_transaction() as tx:
            yield replace(self, conn=tx)
