"""Progress of long steps (a bar on the CLI, quiet log lines at engine start), and the runner inside
an open transaction (how `aerich upgrade` runs it): all or nothing."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from daycare.cli import ProgressBar, main
from daycare.config import Config
from daycare.engine import Engine
from daycare.storage.db.database import database_close, database_open
from daycare.storage.migrations.executor import migration_apply
from daycare.storage.migrations.legacy import LEGACY_STEPS
from daycare.storage.migrations.legacy.catch_up import LegacyStepFailed
from daycare.storage.migrations.loader import migrations_load
from daycare.storage.migrations.progress import ProgressCounter, ProgressLog
from tests.sqlite_files import file_master
from tests.storage.migrations.legacy.helpers import chain_run, execute, tables_dump

CLEANUP = "20260302_cleanup_rlm_snapshot_payloads"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_redraws_in_place_on_a_terminal() -> None:
    out = Terminal()
    bar = ProgressBar(out, width=10, interval=0)
    counter = ProgressCounter(bar, "Copying", 4)
    for _ in range(3):
        counter.advance()
    counter.finish()
    assert out.getvalue() == (
        "\rCopying [----------]   0% (0/4)"
        "\rCopying [##--------]  25% (1/4)"
        "\rCopying [#####-----]  50% (2/4)"
        "\rCopying [#######---]  75% (3/4)"
        "\rCopying [##########] 100% (4/4)\n"
    )


def test_progress_bar_writes_one_complete_line_elsewhere() -> None:
    out = io.StringIO()
    counter = ProgressCounter(ProgressBar(out, width=4), "Copying", 1000)
    counter.advance(500)
    counter.finish()
    assert out.getvalue() == "Copying [####] 100% (1000/1000)\n"


def test_progress_log_is_quiet(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.progress")
    with caplog.at_level(logging.INFO, logger="test.progress"):
        counter = ProgressCounter(ProgressLog(logger, interval=3600), "Copying", 1000)
        for _ in range(1000):
            counter.advance()
        counter.finish()
        ProgressCounter(ProgressLog(logger), "Nothing", 0).finish()
    assert [record.getMessage() for record in caplog.records] == ["Copying: 1000 to go", "Copying: done (1000)"]


async def snapshot_file(path: Path, rows: int = 700) -> None:
    """A legacy file stopped before the snapshot cleanup, with rlm rows to clean."""
    db = await database_open(path)
    try:
        await chain_run(db, LEGACY_STEPS[: LEGACY_STEPS.index(CLEANUP)])
        await execute(
            db,
            "INSERT INTO agents (id, type, descriptor, permissions, created_at, updated_at)"
            " VALUES ('a', 'system', '{}', '{}', 1, 1)",
        )
        await execute(db, "INSERT INTO sessions (id, agent_id, created_at) VALUES ('s', 'a', 1)")
        for index in range(rows):
            await execute(
                db,
                "INSERT INTO session_history (session_id, type, at, data) VALUES ('s', 'rlm_tool_call', ?, ?)",
                [index, '{"snapshot":"QUJD","toolName":"read"}'],
            )
    finally:
        await database_close(db)


async def test_daycare_upgrade_shows_steps_and_a_progress_bar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "daycare.db"
    await snapshot_file(path)
    assert await _main_async(["upgrade", "--db", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "Running the 4 legacy step(s) this file lacks" in out
    assert f"Legacy step {CLEANUP}" in out
    assert "Removing rlm snapshots from history [##############################] 100% (700/700)" in out
    assert out[-1].startswith(f"Upgraded {path}: applied {CLEANUP}, ")


async def _main_async(argv: list[str]) -> int:
    """`daycare` main() runs its own event loop; run it in a worker thread from this async test."""
    return await asyncio.to_thread(main, argv)


async def test_engine_start_logs_progress_quietly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "daycare.db"
    await snapshot_file(path)
    with caplog.at_level(logging.INFO, logger="daycare"):
        async with Engine(Config(str(path), tmp_path, "test")) as engine:
            assert engine.storage is not None
    messages = [record.getMessage() for record in caplog.records if record.name == "daycare.storage"]
    assert "Removing rlm snapshots from history: 700 to go" in messages
    assert "Removing rlm snapshots from history: done (700)" in messages
    assert not any("%" in message and "[" in message for message in messages)  # no bar in logs


async def test_inside_an_open_transaction_a_failing_step_undoes_every_step(
    tmp_path: Path, legacy_copy: Callable[[str], Path]
) -> None:
    """How `aerich upgrade` runs the baseline: the steps are savepoints in one transaction."""
    path = legacy_copy("at_20260222_add_processes.db")
    db = await database_open(path)
    try:
        await execute(db, "UPDATE users SET is_owner = 0")
        await execute(
            db, "INSERT INTO tasks_heartbeat (id, title, prompt, created_at, updated_at) VALUES ('h', 'H', 'p', 1, 1)"
        )
    finally:
        await database_close(db)
    schema, rows = file_master(path), tables_dump(path)

    db = await database_open(path)
    try:
        with pytest.raises(LegacyStepFailed, match="20260223_add_heartbeat_users"):
            await migration_apply(db, migrations_load()[0])
    finally:
        await database_close(db)
    # Step 17 ran in a savepoint before step 18 failed; the transaction took it back too.
    assert file_master(path) == schema
    assert tables_dump(path) == rows
