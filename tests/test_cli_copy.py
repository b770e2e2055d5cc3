"""`daycare db copy --from SRC --to DST`, run as a real subprocess against real files and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tests.conftest import ROOT
from tests.postgres_server import postgres_connection
from tests.sqlite_files import file_sha256
from tests.storage.migrations.test_copy import (
    baseline_only,
    file_counts,
    file_rows,
    postgres_counts,
    postgres_rows,
    source_build,
)
from tests.test_cli import WITH_SIGINT, daycare, environment

SECRET = "not-to-be-printed"


def with_password(url: str) -> tuple[str, str]:
    """`url` with a password (the server's own if it has one; trust authentication ignores a made-up one)."""
    parts = urlsplit(url)
    if parts.password:
        return url, parts.password
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user or 'postgres'}:{SECRET}@{host}")), SECRET


async def test_copy_to_postgres_and_back_prints_progress_and_a_summary_but_never_the_password(
    tmp_path: Path, postgres_url: str
) -> None:
    source = await source_build(tmp_path / "source.db", history=3_000)
    target, password = with_password(postgres_url)
    there = daycare("db", "copy", "--from", str(source), "--to", target)
    assert there.returncode == 0, there.stderr
    assert password not in there.stdout + there.stderr
    lines = there.stdout.splitlines()
    # Not a terminal: each bar is written once, complete.
    for label in ("Copying rows", "Building keys and indexes", "Checking the copy"):
        assert any(line.startswith(f"{label} [###") and " 100% (" in line for line in lines), there.stdout
    summary = lines[-1]
    assert summary.startswith("Copied ") and "every table's row count and sha256 match" in summary, summary
    assert await postgres_rows(postgres_url, source) == file_rows(source)

    back = tmp_path / "back.db"
    returned = daycare("db", "copy", "--from", target, "--to", str(back))
    assert returned.returncode == 0, returned.stderr
    assert password not in returned.stdout + returned.stderr
    assert file_rows(back) == file_rows(source)


async def test_refusals_exit_1_with_a_few_lines_and_change_nothing(tmp_path: Path) -> None:
    source = await source_build(tmp_path / "source.db", history=20)
    target = await source_build(tmp_path / "target.db", history=5)
    before = file_sha256(target)
    refused = daycare("db", "copy", "--from", str(source), "--to", str(target))
    assert refused.returncode == 1
    assert refused.stderr.startswith("daycare: ") and "already holds data" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    assert file_sha256(target) == before

    legacy = tmp_path / "legacy.db"
    legacy.write_bytes((ROOT / "tests" / "fixtures" / "legacy" / "populated.db").read_bytes())
    older = daycare("db", "copy", "--from", str(legacy), "--to", str(tmp_path / "new.db"))
    assert older.returncode == 1 and "Traceback" not in older.stderr
    assert f"Run daycare upgrade --db {legacy} first" in older.stderr, older.stderr
    assert not (tmp_path / "new.db").exists()

    usage = daycare("db", "copy", "--from", str(source))
    assert usage.returncode == 2 and "--to" in usage.stderr
    assert "copy every row into a new database" in daycare("db", "--help").stdout


async def copy_stopped_mid_table(source: Path, url: str, stop: str) -> tuple[int, str]:
    """Runs `db copy` into `url` and, once it writes session_history, stops it: `stop` is "sigint"
    (Ctrl-C) or "server" (the server ends the copy's session); returns the exit code and stderr."""
    process = subprocess.Popen(
        [sys.executable, "-c", WITH_SIGINT, "db", "copy", "--from", str(source), "--to", url],
        cwd=ROOT,
        env=environment({"PYTHONUNBUFFERED": "1"}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None and process.stderr.readline() == "ready\n"
        async with postgres_connection(url) as connection:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # until the history rows are on their way in
                copying = await connection.fetchval(
                    "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND datname = current_database()"
                    " AND query LIKE 'COPY %session_history%' AND pid <> pg_backend_pid() LIMIT 1"
                )
                if copying and process.poll() is None:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"the copy into {url} never reached session_history")
            if stop == "server":
                assert await connection.fetchval("SELECT pg_terminate_backend($1)", copying)
        if stop == "sigint":
            process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert "Traceback" not in err, out + err
    return process.returncode, err


async def test_ctrl_c_during_the_copy_rolls_it_back_and_says_so(tmp_path: Path, postgres_url: str) -> None:
    source = await source_build(tmp_path / "source.db", history=200_000, users=400)
    code, err = await copy_stopped_mid_table(source, postgres_url, "sigint")
    assert code == 130, err
    assert "daycare: interrupted; nothing was copied" in err, err
    assert baseline_only(await postgres_counts(postgres_url))


async def test_a_connection_lost_mid_copy_is_one_message_and_nothing_is_copied(
    tmp_path: Path, postgres_url: str
) -> None:
    source = await source_build(tmp_path / "source.db", history=200_000, users=400)
    code, err = await copy_stopped_mid_table(source, postgres_url, "server")
    assert code == 1, err
    assert "daycare: Cannot copy session_history into" in err and "connection was closed" in err, err
    assert "Nothing was copied" in err
    assert baseline_only(await postgres_counts(postgres_url))


async def test_sqlite_to_sqlite_from_the_command_line(tmp_path: Path) -> None:
    source = await source_build(tmp_path / "source.db", history=100)
    target = tmp_path / "copy.db"
    copied = daycare("db", "copy", "--from", str(source), "--to", f"sqlite://{target}")
    assert copied.returncode == 0, copied.stderr
    assert file_rows(target) == file_rows(source)
    assert sum(file_counts(target).values()) == sum(file_counts(source).values())
