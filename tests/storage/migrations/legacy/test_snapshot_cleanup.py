"""Step 30, 20260302_cleanup_rlm_snapshot_payloads: what it removes, what it keeps, and an interrupted run."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from daycare.storage.db.database import Database, database_close, database_open
from daycare.storage.migrations.legacy import LEGACY_STEPS
from daycare.storage.migrations.migrate import database_migrate
from tests.conftest import ROOT
from tests.storage.migrations.legacy.helpers import chain_run, execute, rows, steps_run, tables_dump

STEP = "20260302_cleanup_rlm_snapshot_payloads"
HISTORY = """
CREATE TABLE session_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    type TEXT NOT NULL,
    at INTEGER NOT NULL,
    data TEXT NOT NULL
);
"""


@pytest.fixture
async def history(tmp_path: Path) -> AsyncIterator[Database]:
    """A file with only the session_history table, as the legacy specs made it."""
    database = await database_open(tmp_path / "history.db")
    await database.connection().execute_script(HISTORY)
    yield database
    await database_close(database)


async def add(db: Database, kind: str, data: str, at: int = 1) -> None:
    await execute(
        db, "INSERT INTO session_history (session_id, type, at, data) VALUES ('s-1', ?, ?, ?)", [kind, at, data]
    )


async def datas(db: Database) -> list[str]:
    return [row["data"] for row in await rows(db, "SELECT data FROM session_history ORDER BY id")]


async def test_removes_only_legacy_inline_snapshot_payloads_while_keeping_rows(history: Database) -> None:
    await add(history, "rlm_tool_call", json.dumps({"snapshot": "AQID", "toolName": "echo"}))
    await add(history, "rlm_tool_call", json.dumps({"snapshotId": "AQID", "toolName": "echo-inline"}))
    await add(history, "rlm_tool_call", json.dumps({"snapshotId": "abc123abc123abc123abc123", "toolName": "echo"}))
    await add(history, "note", json.dumps({"text": "keep me"}))
    await steps_run(history, [STEP])
    assert await datas(history) == [
        '{"toolName":"echo"}',
        '{"toolName":"echo-inline"}',
        '{"snapshotId": "abc123abc123abc123abc123", "toolName": "echo"}',
        '{"text": "keep me"}',
    ]


async def test_is_idempotent(history: Database) -> None:
    await add(history, "rlm_tool_call", json.dumps({"snapshotId": "AQID", "toolName": "echo-inline"}))
    await steps_run(history, [STEP, STEP])
    assert await datas(history) == ['{"toolName":"echo-inline"}']


async def test_processes_large_history_in_batches(history: Database) -> None:
    for index in range(1250):
        await add(history, "rlm_tool_call", json.dumps({"snapshotId": "AQID", "toolName": "echo"}), index)
    await add(history, "rlm_tool_call", json.dumps({"snapshotId": "abc123abc123abc123abc123", "toolName": "keep"}), 999)
    await steps_run(history, [STEP])
    found = await datas(history)
    assert found.count('{"toolName":"echo"}') == 1250
    assert found[-1] == '{"snapshotId": "abc123abc123abc123abc123", "toolName": "keep"}'


@pytest.mark.parametrize(
    ("before", "after"),
    [
        # Other keys keep their exact text and order: number spellings, escapes, raw UTF-8.
        (
            '{"a":1.0,"snapshot":"x","b":1e5,"c":"\\u00e9 é","d":[{"snapshot":1}]}',
            '{"a":1.0,"b":1e5,"c":"\\u00e9 é","d":[{"snapshot":1}]}',
        ),
        ('{"snapshot":null,"snapshotId":null}', "{}"),
        ('{"snapshotId":12345678901234567890123456}', "{}"),
        ('{"snapshotId":"ABCDEFGHIJKLMNOPQRSTUVWX"}', "{}"),
        ('{"snapshotId":"abcdefghijklmnopqrstuvwxyz0123456"}', "{}"),  # 33 characters
        ('{"snapshotId":"abcdefghijklmnopqrstuvwxyz012345"}', '{"snapshotId":"abcdefghijklmnopqrstuvwxyz012345"}'),
        ('{"snapshotId":"abcdefghijklmnopqrstuvw"}', "{}"),  # 23 characters
        ('{"snapshotId":"abcdefghijklmnopqrstuvwé"}', "{}"),
        # Not an object, or not JSON: left exactly as it was.
        ('["snapshot"]', '["snapshot"]'),
        ('"snapshot"', '"snapshot"'),
        ('{"snapshot": broken', '{"snapshot": broken'),
    ],
)  # fmt: skip
async def test_cleans_like_the_legacy_code_and_keeps_everything_else(
    history: Database, before: str, after: str
) -> None:
    await add(history, "rlm_tool_call", before)
    await add(history, "assistant_message", before)
    await steps_run(history, [STEP])
    assert await datas(history) == [after, before]


async def test_reruns_the_snapshot_cleanup_when_its_row_is_gone(tmp_path: Path) -> None:
    """migrationRun spec: a rerun of the non-transactional step after its row was removed."""
    db = await database_open(tmp_path / "daycare.db")
    try:
        await chain_run(db, LEGACY_STEPS)
        await execute(db, "PRAGMA foreign_keys = OFF")
        await add(db, "rlm_tool_call", json.dumps({"snapshot": "AQID", "toolName": "echo"}))
        await execute(db, "PRAGMA foreign_keys = ON")
        await execute(db, "DELETE FROM _migrations WHERE name = ?", [STEP])
        assert await chain_run(db, [STEP]) == [STEP]
        assert await datas(db) == ['{"toolName":"echo"}']
    finally:
        await database_close(db)


CRASH = """
import asyncio, os, sys
from daycare.storage.db.database import database_open
from daycare.storage.migrations.migrate import database_migrate

def progress(label, done, total):
    if label.startswith("Removing rlm snapshots") and 0 < done < total:
        os._exit(9)  # a crash: no rollback, no close, nothing flushed by Python

async def main():
    db = await database_open(sys.argv[1])
    await database_migrate(db, progress=progress)

asyncio.run(main())
"""


async def test_an_interrupted_cleanup_loses_nothing_and_a_rerun_finishes_it(tmp_path: Path) -> None:
    path = tmp_path / "daycare.db"
    db = await database_open(path)
    try:
        await chain_run(db, LEGACY_STEPS[: LEGACY_STEPS.index(STEP)])
        await execute(
            db,
            "INSERT INTO agents (id, type, descriptor, permissions, created_at, updated_at)"
            " VALUES ('a', 'system', '{}', '{}', 1, 1)",
        )
        await execute(db, "INSERT INTO sessions (id, agent_id, created_at) VALUES ('s-1', 'a', 1)")
        payload = "Q" * 2000
        for index in range(1, 1301):
            data = {"toolCallId": f"t{index}", "snapshot": payload, "snapshotId": "bad", "toolName": "read", "n": index}
            await add(db, "rlm_tool_call", json.dumps(data, separators=(",", ":")), index)
            await add(db, "note", json.dumps({"text": f"note {index}"}), index)
    finally:
        await database_close(db)
    before = tables_dump(path)["session_history"]

    crashed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CRASH), str(path)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert crashed.returncode == 9, crashed.stderr

    middle = tables_dump(path)
    assert STEP not in {row["name"] for row in middle["_migrations"]}
    assert len(middle["session_history"]) == len(before)
    cleaned = [
        row for row in middle["session_history"] if '"snapshot' not in row["data"] and row["type"] == "rlm_tool_call"
    ]
    assert 0 < len(cleaned) < 1300  # some batches committed before the crash, not all
    for old, new in zip(before, middle["session_history"], strict=True):
        assert new["data"] in (old["data"], json.dumps(cleaned_record(old["data"]), separators=(",", ":"))), old["id"]

    db = await database_open(path)
    try:
        applied = await database_migrate(db)
    finally:
        await database_close(db)
    assert applied[0] == STEP
    after = tables_dump(path)
    assert len(after["session_history"]) == len(before)
    for old, new in zip(before, after["session_history"], strict=True):
        expected = (
            json.dumps(cleaned_record(old["data"]), separators=(",", ":"))
            if old["type"] == "rlm_tool_call"
            else old["data"]
        )
        assert new == {**old, "data": expected}


def cleaned_record(data: str) -> dict[str, object]:
    record = json.loads(data)
    return {key: value for key, value in record.items() if key not in ("snapshot", "snapshotId")}
