"""A bad row never stops `daycare start` (real process), and `daycare db check --data` lists it."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.engine_process import STARTED, LineReader

ROOT = Path(__file__).resolve().parents[1]


def _environment() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key != "DAYCARE_DB_URL"}


def daycare(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daycare", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_environment(),
        timeout=120,
    )


def broken_member_file(legacy_copy: Callable[[str], Path]) -> tuple[Path, str]:
    """An upgraded legacy file whose first channel member's agent row holds a BLOB descriptor."""
    path = legacy_copy("populated.db")
    upgrade = daycare("upgrade", "--db", str(path), "--no-backup")
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    connection = sqlite3.connect(path)
    try:
        [(agent_id,)] = connection.execute("SELECT agent_id FROM channel_members ORDER BY id LIMIT 1").fetchall()
        connection.execute("UPDATE agents SET descriptor = x'7b7d' WHERE id = ?", (agent_id,))
        connection.commit()
    finally:
        connection.close()
    return path, agent_id


def test_start_serves_a_file_with_a_broken_agent_in_a_channel(legacy_copy: Callable[[str], Path]) -> None:
    path, agent_id = broken_member_file(legacy_copy)
    process = subprocess.Popen(
        [sys.executable, "-m", "daycare", "start", "--db", str(path)],
        cwd=ROOT,
        env=_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr = LineReader(process)
    try:
        started = stderr.until(STARTED, timeout=60)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = stderr.text()
    assert process.returncode == 0, text
    assert "Traceback" not in text
    # The channels loaded without the broken member; its row is named once, however often it was read.
    assert "services: signals, channels, crons, heartbeats, delayed signals, processes, exposes" in started
    skipped = [line for line in text.splitlines() if "unreadable row of agents" in line]
    assert len(skipped) == 1, text
    assert f"(id={agent_id!r}): descriptor is a BLOB, not text" in skipped[0]


def test_db_check_data_lists_the_unreadable_rows(legacy_copy: Callable[[str], Path]) -> None:
    path, agent_id = broken_member_file(legacy_copy)
    check = daycare("db", "check", "--db", str(path))
    assert check.returncode == 0, check.stdout + check.stderr  # the schema pass alone does not read rows
    data = daycare("db", "check", "--data", "--db", str(path))
    assert data.returncode == 4, data.stdout + data.stderr
    assert "1 row(s) cannot be read; the engine skips them:" in data.stdout
    assert f"  agents (id={agent_id!r}): descriptor is a BLOB, not text" in data.stdout
    connection = sqlite3.connect(path)
    connection.execute("DELETE FROM agents WHERE id = ?", (agent_id,))
    connection.commit()
    connection.close()
    sound = daycare("db", "check", "--data", "--db", str(path))
    assert sound.returncode == 0, sound.stdout + sound.stderr
    assert "every row can be read" in sound.stdout
