"""The file imports read only regular files inside the data folder, never hang, never block an
upgrade on data SQLite cannot store, and fail (and stay pending) on a database error.

Each test builds a data folder with real files: symbolic links out of it, FIFOs, devices,
sockets, names that are not UTF-8, numbers too large for SQLite; a database error comes from a
trigger that raises or from a page limit that fills the file.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tortoise.exceptions import OperationalError

from daycare.storage.db.database import Database, database_close, database_open
from daycare.storage.migrations.legacy import LEGACY_STEPS, files
from daycare.storage.migrations.legacy.catch_up import LegacyStepFailed, legacy_catch_up
from daycare.storage.migrations.legacy.context import LegacySkips, StepContext
from daycare.storage.migrations.legacy.files import LegacyFolder, jsonl_lines
from daycare.storage.migrations.legacy.rebuild import objects_restore
from daycare.storage.migrations.migrate import database_migrate
from daycare.storage.migrations.progress import progress_none
from tests.storage.migrations.legacy.helpers import chain_run, execute, rows, tables_dump
from tests.storage.helpers import file_migrate as upgrade
from tests.storage.migrations.migrated import VERSIONS

ROOT = Path(__file__).resolve().parents[4]
STEP_CHANNELS = "20260222_import_channels"
STEP_AGENTS = "20260219_import_files"


# Writers of one valid legacy entry of each format.


def json_write(path: Path, value: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))
    return path


def lines_write(path: Path, values: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(value) + "\n" for value in values))
    return path


def agent_write(folder: Path, history: list[Any] | None = None, **state: Any) -> Path:
    json_write(folder / "descriptor.json", {"type": "system", "tag": folder.name})
    json_write(folder / "state.json", {"createdAt": 1, "updatedAt": 2, **state})
    if history is not None:
        lines_write(folder / "history.jsonl", history)
    return folder


def cron_write(folder: Path, task_uid: str, name: str = "Report") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "TASK.md").write_text(f'---\ntaskId: {task_uid}\nname: "{name}"\nschedule: "0 9 * * *"\n---\n\nGo.\n')
    return folder


def heartbeat_write(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# Title\n\nCheck.\n")
    return path


def channel_write(folder: Path, channel_id: str, messages: list[Any] | None = None, **extra: Any) -> Path:
    json_write(folder / "channel.json", {"id": channel_id, "name": channel_id, "leader": "a", **extra})
    if messages is not None:
        lines_write(folder / "history.jsonl", messages)
    return folder


def message(message_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": message_id, "senderUsername": "bob", "text": "hi", "createdAt": 5, **extra}


def endpoint_write(path: Path, endpoint_id: str, **extra: Any) -> Path:
    value = {"id": endpoint_id, "provider": "p", "domain": "d", "mode": "public", "target": None, **extra}
    return json_write(path, value)


def process_write(folder: Path, process_id: str, **extra: Any) -> Path:
    record = {"version": 2, "id": process_id, "name": "n", "command": "c", "cwd": "/", "settingsPath": "s"}
    json_write(folder / "record.json", {**record, "logPath": "l", **extra})
    return folder


def link(path: Path, target: Path | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)
    return path


# Running the upgrade.


@pytest.fixture
def warnings(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.WARNING, logger="daycare.storage.migrations.legacy"):
        yield caplog


def skipped(caplog: pytest.LogCaptureFixture, folder: Path) -> dict[str, str]:
    """{path relative to `folder`: reason} of each "Skipped legacy data" warning."""
    found = {}
    for record in caplog.records:
        if record.msg == "Skipped legacy data %s: %s" and isinstance(record.args, tuple):
            path, reason = record.args
            found[os.path.relpath(str(path), folder)] = str(reason)
    return found


def ids(dump: dict[str, list[dict[str, Any]]], table: str) -> set[Any]:
    return {row["id"] for row in dump[table]}


async def test_links_out_of_the_data_folder_are_skipped_and_counted(
    tmp_path: Path, warnings: pytest.LogCaptureFixture
) -> None:
    """Each legacy path may be a link out of the folder (to /etc/passwd, to a file in tmp): none is read."""
    data, outside = tmp_path / "data", tmp_path / "outside"
    agent_write(data / "agents" / "in-agent")
    link(data / "agents" / "out-agent", agent_write(outside / "agents" / "out-agent"))
    agent_write(data / "agents" / "passwd-agent")
    (data / "agents" / "passwd-agent" / "descriptor.json").unlink()
    link(data / "agents" / "passwd-agent" / "descriptor.json", "/etc/passwd")
    agent_write(data / "agents" / "hist-agent")
    link(
        data / "agents" / "hist-agent" / "history.jsonl",
        lines_write(outside / "history.jsonl", [{"type": "note", "at": 5, "text": "secret"}]),
    )
    # A link whose real path stays inside the data folder is followed.
    link(data / "agents" / "inner-agent", agent_write(data / "stash" / "inner-agent", [{"type": "note", "at": 7}]))
    cron_write(data / "cron" / "c-in", "croninuid000000000000000a")
    (data / "cron" / "c-out").mkdir(parents=True)
    link(data / "cron" / "c-out" / "TASK.md", cron_write(outside / "cron", "cronoutuid00000000000000a") / "TASK.md")
    heartbeat_write(data / "heartbeat" / "in.md")
    link(data / "heartbeat" / "passwd.md", "/etc/passwd")
    lines_write(outside / "signals" / "events.jsonl", [{"id": "ev-out", "type": "t"}])
    link(data / "signals", outside / "signals")
    link(data / "channels" / "ch-out", channel_write(outside / "channels" / "ch-out", "ch-out"))
    endpoint_write(outside / "expose" / "endpoints" / "ep-out.json", "ep-out")
    link(data / "expose", outside / "expose")
    process_write(data / "processes" / "p-in", "p-in")
    (data / "processes" / "p-out").mkdir()
    link(data / "processes" / "p-out" / "record.json", process_write(outside / "p-out", "p-out") / "record.json")

    notes: list[str] = []
    assert await upgrade(data / "daycare.db", notify=notes.append) == [*LEGACY_STEPS, *VERSIONS]

    dump = tables_dump(data / "daycare.db")
    assert ids(dump, "agents") == {"in-agent", "hist-agent", "inner-agent"}
    hist_sessions = {s["id"] for s in dump["sessions"] if s["agent_id"] == "hist-agent"}
    inner_sessions = {s["id"] for s in dump["sessions"] if s["agent_id"] == "inner-agent"}
    assert [(h["session_id"] in inner_sessions, h["at"]) for h in dump["session_history"]] == [(True, 7)]
    assert len(hist_sessions) == 1
    assert ids(dump, "tasks_cron") == {"c-in"}
    assert ids(dump, "tasks_heartbeat") == {"in"}
    assert dump["signals_events"] == dump["channels"] == dump["expose_endpoints"] == []
    assert ids(dump, "processes") == {"p-in"}
    reasons = skipped(warnings, data)
    assert set(reasons) == {
        "agents/out-agent",
        "agents/passwd-agent",
        "agents/hist-agent/history.jsonl",
        "cron/c-out",
        "heartbeat/passwd.md",
        "signals",
        "channels/ch-out",
        "expose/endpoints",
        "processes/p-out",
    }
    assert all("leads outside the data folder" in reason for reason in reasons.values()), reasons
    assert "to /etc/passwd" in reasons["agents/passwd-agent"]
    assert "Skipped 9 piece(s) of legacy data that could not be imported; a warning names each." in notes


CHILD = """
import asyncio, sys
from pathlib import Path
from daycare.storage.db.database import database_close, database_open
from daycare.storage.migrations.migrate import database_migrate

async def main():
    db = await database_open(Path(sys.argv[1]))
    try:
        print(len(await database_migrate(db, notify=print)))
    finally:
        await database_close(db)

asyncio.run(main())
"""


def special_files_build(data: Path) -> set[str]:
    """FIFOs, devices, a socket and folders where the imports expect files; returns the paths to skip."""
    expected = set()

    def fifo(relative: str) -> None:
        (data / relative).parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(data / relative)

    agent_write(data / "agents" / "fifo-agent")
    (data / "agents" / "fifo-agent" / "descriptor.json").unlink()
    fifo("agents/fifo-agent/descriptor.json")
    agent_write(data / "agents" / "zero-agent")
    (data / "agents" / "zero-agent" / "state.json").unlink()
    link(data / "agents" / "zero-agent" / "state.json", "/dev/zero")
    agent_write(data / "agents" / "dir-agent")
    (data / "agents" / "dir-agent" / "descriptor.json").unlink()
    (data / "agents" / "dir-agent" / "descriptor.json").mkdir()
    agent_write(data / "agents" / "ok-agent")
    fifo("agents/ok-agent/history.jsonl")
    fifo("agents/a-fifo")  # where a folder is expected
    expected |= {"agents/fifo-agent", "agents/zero-agent", "agents/dir-agent", "agents/ok-agent/history.jsonl"}
    expected.add("agents/a-fifo")
    (data / "cron" / "fifo-cron").mkdir(parents=True)
    fifo("cron/fifo-cron/TASK.md")
    cron_write(data / "cron" / "state-fifo", "statefifouid0000000000000")
    fifo("cron/state-fifo/STATE.json")
    heartbeat_write(data / "heartbeat" / "ok.md")
    fifo("heartbeat/fifo.md")
    (data / "heartbeat" / "dir.md").mkdir()
    fifo("heartbeat/.heartbeat-state.json")
    expected |= {"cron/fifo-cron", "cron/state-fifo/STATE.json", "heartbeat/fifo.md", "heartbeat/dir.md"}
    expected.add("heartbeat/.heartbeat-state.json")
    fifo("signals/events.jsonl")
    link(data / "signals" / "delayed.json", "/dev/zero")
    expected |= {"signals/events.jsonl", "signals/delayed.json"}
    (data / "channels" / "fifo-ch").mkdir(parents=True)
    fifo("channels/fifo-ch/channel.json")
    expected.add("channels/fifo-ch")
    endpoints = data / "expose" / "endpoints"
    endpoints.mkdir(parents=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    cwd = os.getcwd()
    os.chdir(endpoints)  # a relative bind keeps the path under the 108-byte limit of a socket address
    try:
        server.bind("sock.json")
    finally:
        os.chdir(cwd)
        server.close()
    expected.add("expose/endpoints/sock.json")
    (data / "processes" / "zero-proc").mkdir(parents=True)
    link(data / "processes" / "zero-proc" / "record.json", "/dev/zero")
    expected.add("processes/zero-proc")
    (data / "processes" / "dev-proc").mkdir()
    try:
        os.mknod(data / "processes" / "dev-proc" / "record.json", stat.S_IFCHR | 0o600, os.makedev(1, 5))
        expected.add("processes/dev-proc")
    except PermissionError:
        pass  # not root: the /dev/zero links cover devices
    process_write(data / "processes" / "ok-proc", "ok-proc")
    return expected


def test_fifos_devices_and_sockets_never_hang_the_upgrade(tmp_path: Path) -> None:
    """A FIFO named descriptor.json (and one at every other path), /dev/zero and a socket: skipped at once."""
    data = tmp_path / "data"
    expected = special_files_build(data)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(data / "daycare.db")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,  # the upgrade hung forever on a FIFO before; it takes well under a second now
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == str(len(LEGACY_STEPS) + len(VERSIONS))
    warned = {}
    for line in done.stderr.splitlines():
        if line.startswith("Skipped legacy data "):
            path, reason = line.removeprefix("Skipped legacy data ").split(": ", 1)
            warned[os.path.relpath(path, data)] = reason
    assert set(warned) == expected, done.stderr
    assert "descriptor.json is a FIFO, not a regular file" in warned["agents/fifo-agent"]
    assert "leads outside the data folder, to /dev/zero" in warned["agents/zero-agent"]
    assert "descriptor.json is a folder, not a regular file" in warned["agents/dir-agent"]
    assert "is a FIFO, not a folder" in warned["agents/a-fifo"]
    assert "is a socket" in warned["expose/endpoints/sock.json"]
    if "processes/dev-proc" in expected:
        assert "record.json is a character device" in warned["processes/dev-proc"]
    assert f"Skipped {len(expected)} piece(s) of legacy data" in done.stdout

    dump = tables_dump(data / "daycare.db")
    assert ids(dump, "agents") == {"ok-agent"}
    assert ids(dump, "tasks_cron") == {"state-fifo"}
    assert [(row["id"], row["last_run_at"]) for row in dump["tasks_heartbeat"]] == [("ok", None)]
    assert ids(dump, "processes") == {"ok-proc"}
    assert dump["signals_events"] == dump["signals_delayed"] == dump["channels"] == dump["expose_endpoints"] == []


async def test_names_that_are_not_utf8_are_skipped(tmp_path: Path, warnings: pytest.LogCaptureFixture) -> None:
    """Bytes names that are not UTF-8 cannot be ids in SQLite: each is skipped, and later upgrades run."""
    data = tmp_path / "data"
    raw = os.fsencode(data)
    bad = {
        "agents": b"agents/bad\xff",
        "cron": b"cron/c\xfe",
        "heartbeat": b"heartbeat/\xff.md",
        "channels": b"channels/ch\xff",
        "expose": b"expose/endpoints/\xff.json",
        "processes": b"processes/p\xff",
    }
    agent_write(Path(os.fsdecode(raw + b"/" + bad["agents"])))
    cron_write(Path(os.fsdecode(raw + b"/" + bad["cron"])), "badnameuid000000000000000")
    heartbeat_write(Path(os.fsdecode(raw + b"/" + bad["heartbeat"])))
    channel_write(Path(os.fsdecode(raw + b"/" + bad["channels"])), "ch-bad")
    endpoint_write(Path(os.fsdecode(raw + b"/" + bad["expose"])), "ep-bad")
    process_write(Path(os.fsdecode(raw + b"/" + bad["processes"])), "p-bad")
    agent_write(data / "agents" / "good")

    assert await upgrade(data / "daycare.db") == [*LEGACY_STEPS, *VERSIONS]
    dump = tables_dump(data / "daycare.db")
    assert ids(dump, "agents") == {"good"}
    for table in ("tasks_cron", "tasks_heartbeat", "channels", "expose_endpoints", "processes"):
        assert dump[table] == [], table
    reasons = skipped(warnings, data)
    shown = {name.decode("utf-8", "backslashreplace") for name in bad.values()}
    assert set(reasons) == shown
    assert all("is not valid UTF-8" in reason for reason in reasons.values())
    assert await upgrade(data / "daycare.db") == []  # nothing blocks the next upgrade


async def test_numbers_sqlite_cannot_store_skip_their_entry(tmp_path: Path, warnings: pytest.LogCaptureFixture) -> None:
    """2**70 and 1e300 where an integer goes, 1e400 anywhere, text SQLite cannot bind: skipped, never a traceback."""
    data = tmp_path / "data"
    agent_write(data / "agents" / "big-created", createdAt=2**70)
    agent_write(data / "agents" / "huge-updated", updatedAt=1e300)
    history = [
        {"type": "note", "at": 1e300},
        {"type": "note", "at": 2**70},
        {"type": "note", "at": 3, "x": 1e400},
        {"type": "note", "at": 4, "n": 2**70},
    ]
    history_path = lines_write(data / "agents" / "ok" / "history.jsonl", [])
    history_path.write_text("\n".join(json.dumps(entry).replace("Infinity", "1e400") for entry in history) + "\n")
    agent_write(data / "agents" / "ok")
    lines_write(
        data / "signals" / "events.jsonl",
        [{"id": "ev-big", "type": "t", "createdAt": 2**70}, {"id": "ev-ok", "type": "t", "createdAt": 1}],
    )
    delayed = [{"id": "delay-big", "type": "t", "deliverAt": 1e300}, {"id": "delay-ok", "type": "t", "deliverAt": 9}]
    json_write(data / "signals" / "delayed.json", {"events": delayed})
    channel_write(data / "channels" / "ch-big", "ch-big", createdAt=1e300)
    channel_write(data / "channels" / "ch-ok", "ch-ok", [message("m-big", createdAt=2**70), message("m-ok")])
    endpoint_write(data / "expose" / "endpoints" / "ep-big.json", "ep-big", updatedAt=2**70)
    process_write(data / "processes" / "p-big", "p-big", pid=2**70)
    process_write(data / "processes" / "p-ok", "p-ok", pid=12)
    cron_write(data / "cron" / "surrogate", "surrogateuid0000000000000", name="\\ud800")  # a lone surrogate

    assert await upgrade(data / "daycare.db") == [*LEGACY_STEPS, *VERSIONS]
    dump = tables_dump(data / "daycare.db")
    assert ids(dump, "agents") == {"ok"}
    assert [(row["at"], row["data"]) for row in dump["session_history"]] == [(4, '{"n":1180591620717411303424}')]
    assert ids(dump, "signals_events") == {"ev-ok"}
    assert ids(dump, "signals_delayed") == {"delay-ok"}
    assert ids(dump, "channels") == {"ch-ok"}
    assert ids(dump, "channel_messages") == {"m-ok"}
    assert dump["expose_endpoints"] == dump["tasks_cron"] == []
    assert ids(dump, "processes") == {"p-ok"}
    reasons = skipped(warnings, data)
    assert set(reasons) == {
        "agents/big-created",
        "agents/huge-updated",
        "agents/ok/history.jsonl",
        "signals/events.jsonl",
        "signals/delayed.json",
        "channels/ch-big",
        "channels/ch-ok/history.jsonl",
        "expose/endpoints/ep-big.json",
        "processes/p-big",
        "cron/surrogate",
    }
    assert "the number 1.18059e+21 is too large for SQLite" in reasons["agents/big-created"]
    assert "the number 1e+300 is too large for SQLite" in reasons["agents/huge-updated"]
    history_reasons = [str(r.args[1]) for r in warnings.records if str(r.args[0]).endswith("agents/ok/history.jsonl")]
    assert [reason.split(":")[0].split(" (")[0] for reason in history_reasons] == [
        "line 1",
        "line 2",
        "line 3 is not valid JSON",
    ]
    assert "cannot store" in reasons["cron/surrogate"]
    assert await upgrade(data / "daycare.db") == []


# Size caps and streaming.


def test_history_is_read_one_line_at_a_time(tmp_path: Path) -> None:
    """After the first line of a 20 MB file, at most one read buffer of it has been read."""
    path = tmp_path / "history.jsonl"
    line = json.dumps({"type": "note", "at": 1, "text": "x" * 1000}) + "\n"
    path.write_text(line * 20_000)
    folder = LegacyFolder.of(tmp_path)
    with folder.file_open(path) as stream:
        lines = jsonl_lines(stream, "history.jsonl")
        assert next(lines) == (1, line.strip())
        raw = stream.raw  # type: ignore[attr-defined]
        assert raw.tell() <= 64 * 1024
        assert sum(1 for _ in lines) == 19_999


async def test_caps_skip_a_long_line_and_a_large_file(
    tmp_path: Path, warnings: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "LINE_MAX_BYTES", 4096)
    monkeypatch.setattr(files, "FILE_MAX_BYTES", 2048)
    data = tmp_path / "data"
    history = [{"type": "note", "at": 1}, {"type": "note", "at": 2, "text": "y" * 10_000}, {"type": "note", "at": 3}]
    agent_write(data / "agents" / "a", history)
    agent_write(data / "agents" / "large", stats={"padding": "z" * 3000})
    assert await upgrade(data / "daycare.db") == [*LEGACY_STEPS, *VERSIONS]
    dump = tables_dump(data / "daycare.db")
    assert ids(dump, "agents") == {"a"}
    assert [row["at"] for row in dump["session_history"]] == [1, 3]
    assert skipped(warnings, data) == {
        "agents/a/history.jsonl": "line 2 is longer than 4096 bytes, the cap for a legacy line",
        "agents/large": "state.json is larger than 2048 bytes, the cap for a legacy file",
    }


# Database errors fail the step; they are never "skipped legacy data".


async def test_a_database_error_in_an_import_fails_the_step_and_leaves_it_pending(tmp_path: Path) -> None:
    """A trigger that raises stands for any constraint or lock error of the database itself."""
    path = tmp_path / "daycare.db"
    channel_write(tmp_path / "channels" / "dev", "channel-1", [message("m-1"), message("m-2")])
    db = await database_open(path)
    try:
        await chain_run(db, LEGACY_STEPS[: LEGACY_STEPS.index(STEP_CHANNELS)])
        await execute(
            db,
            "CREATE TRIGGER refuse BEFORE INSERT ON channel_messages BEGIN SELECT RAISE(ABORT, 'disk on fire'); END",
        )
        with pytest.raises(LegacyStepFailed) as failure:
            await database_migrate(db)
        assert f"Legacy step {STEP_CHANNELS} failed on a database error: disk on fire" in str(failure.value)
        assert "still pending" in str(failure.value)
        recorded = {row["name"] for row in await rows(db, "SELECT name FROM _migrations")}
        assert recorded == set(LEGACY_STEPS[: LEGACY_STEPS.index(STEP_CHANNELS)])
        assert await rows(db, "SELECT id FROM channels") == []

        await execute(db, "DROP TRIGGER refuse")
        assert await database_migrate(db) == [*LEGACY_STEPS[LEGACY_STEPS.index(STEP_CHANNELS) :], *VERSIONS]
        assert await rows(db, "SELECT id FROM channel_messages ORDER BY id") == [{"id": "m-1"}, {"id": "m-2"}]
    finally:
        await database_close(db)


async def page_limit(db: Database, extra_pages: int | None) -> None:
    """Caps the file at its current size plus `extra_pages` (None: no cap): a full disk on demand."""
    if extra_pages is None:
        await execute(db, "PRAGMA max_page_count = 4294967294")
        return
    pages = (await rows(db, "PRAGMA page_count"))[0]["page_count"]
    await rows(db, f"PRAGMA max_page_count = {pages + extra_pages}")


async def test_a_full_disk_during_the_agent_import_fails_the_step_and_a_rerun_completes(tmp_path: Path) -> None:
    path = tmp_path / "daycare.db"
    history = [{"type": "note", "at": at, "text": "x" * 2000} for at in range(400)]
    agent_write(tmp_path / "agents" / "a", history)
    agent_write(tmp_path / "agents" / "b")
    db = await database_open(path)
    try:
        await chain_run(db, LEGACY_STEPS[:1])
        await page_limit(db, 50)  # far less than the 800 KB of history
        with pytest.raises(LegacyStepFailed) as failure:
            await database_migrate(db)
        assert f"Legacy step {STEP_AGENTS} failed on a database error: database or disk is full" in str(failure.value)
        assert {row["name"] for row in await rows(db, "SELECT name FROM _migrations")} == {LEGACY_STEPS[0]}
        assert await rows(db, "SELECT id FROM agents") == []

        await page_limit(db, None)
        assert await database_migrate(db) == [*LEGACY_STEPS[1:], *VERSIONS]
        assert await rows(db, "SELECT id FROM agents ORDER BY id") == [{"id": "a"}, {"id": "b"}]
        assert (await rows(db, "SELECT COUNT(*) AS n FROM session_history"))[0]["n"] == 400
    finally:
        await database_close(db)


async def test_a_rebuild_leaves_out_an_index_that_no_longer_fits_but_not_one_the_disk_refused(
    tmp_path: Path, warnings: pytest.LogCaptureFixture
) -> None:
    db = await database_open(tmp_path / "daycare.db")
    try:
        await execute(db, "CREATE TABLE t (a INTEGER, b TEXT)")
        for start in range(0, 2000, 500):
            values = ", ".join(f"({n}, '{'v' * 200}{n}')" for n in range(start, start + 500))
            await execute(db, f"INSERT INTO t (a, b) VALUES {values}")
        ctx = StepContext(db.connection(), tmp_path, progress_none)
        await objects_restore(ctx, "t", [("gone", "CREATE INDEX gone ON t (dropped)")])
        assert "Left out gone after rebuilding t: no such column: dropped" in warnings.messages[0]

        await page_limit(db, 1)
        with pytest.raises(OperationalError, match="database or disk is full"):
            await objects_restore(ctx, "t", [("big", "CREATE INDEX big ON t (b)")])
        assert len(warnings.messages) == 1
    finally:
        await database_close(db)


async def test_skips_are_counted_for_the_caller(tmp_path: Path) -> None:
    """`legacy_catch_up` counts into the LegacySkips it is given (and says the total in one notify line)."""
    (tmp_path / "agents" / "broken").mkdir(parents=True)
    heartbeat_write(tmp_path / "heartbeat" / "empty.md").write_text("")
    db = await database_open(tmp_path / "daycare.db")
    try:
        count, notes = LegacySkips(), []
        await legacy_catch_up(
            db.connection(), LEGACY_STEPS[:6], notify=notes.append, progress=progress_none, skipped=count
        )
    finally:
        await database_close(db)
    assert count.count == 2
    assert notes[-1] == "Skipped 2 piece(s) of legacy data that could not be imported; a warning names each."
