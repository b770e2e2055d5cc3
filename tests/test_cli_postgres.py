"""The daycare command line on PostgreSQL (`--db postgres://...`), run as real subprocesses against the real server."""

from __future__ import annotations

import json
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daycare.storage.db.location import database_location
from daycare.storage.db.lock import UPGRADE
from daycare.storage.migrations.loader import migrations_load
from tests.engine_process import STARTED, LineReader, engine_start_stop
from tests.postgres_server import postgres_connection
from tests.storage.db.lock_holder import lock_held
from tests.test_cli import ROOT, daycare, environment

CHAIN = [migration.version for migration in migrations_load(dialect="postgres")]
PASSWORD = "never-shown-pw"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """The Daycare home the commands get (DAYCARE_HOME): backups and the engine's files go there."""
    return tmp_path / "home"


@pytest.fixture
def url(postgres_url: str) -> str:
    """The test's schema URL with a password in it (the test server trusts local logins, so any password works)."""
    return postgres_url.replace("postgres@", f"postgres:{PASSWORD}@", 1)


def run(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`daycare ARGS` with the test's home; fails the test if its output shows the password or a traceback."""
    result = daycare(*args, env={"DAYCARE_HOME": str(home), **(env or {})})
    output = result.stdout + result.stderr
    assert PASSWORD not in output and "Traceback" not in output, output
    return result


def shown(url: str) -> str:
    """How messages show `url`: without its password."""
    return database_location(url).display


def engine_process(
    url: str, home: Path, processes: list[subprocess.Popen[str]]
) -> tuple[subprocess.Popen[str], LineReader]:
    """`daycare start --db URL` running until its startup line."""
    process = subprocess.Popen(
        [sys.executable, "-m", "daycare", "start", "--db", url],
        cwd=ROOT,
        env=environment({"DAYCARE_HOME": str(home)}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    processes.append(process)
    stderr = LineReader(process)
    stderr.until(STARTED, timeout=60)
    return process, stderr


def test_upgrade_status_and_check_work_on_a_schema_and_never_show_the_password(url: str, home: Path) -> None:
    where = shown(url)
    assert where.startswith("postgres://postgres@127.0.0.1") and PASSWORD not in where
    before = run(home, "db", "status", "--db", url)
    assert before.returncode == 0, before.stderr
    assert before.stdout.splitlines()[:2] == [f"Database: {where} (from --db)", "State:    fresh (no tables yet)"]
    assert f"Pending:  {', '.join(CHAIN)}" in before.stdout
    fresh_check = run(home, "db", "check", "--db", url)
    assert (fresh_check.returncode, fresh_check.stdout.strip()) == (
        0,
        f"{where} has no tables yet; run daycare upgrade to create them.",
    )
    upgrade = run(home, "upgrade", "--db", url)
    assert upgrade.returncode == 0, upgrade.stderr
    assert upgrade.stdout.splitlines()[-1] == f"Upgraded {where}: applied {', '.join(CHAIN)}."
    assert "Backup" not in upgrade.stdout and not (home / "backups").exists()  # a fresh schema has nothing to lose
    again = run(home, "upgrade", "--db", url)
    assert (again.returncode, again.stdout.strip()) == (0, f"{where} is up to date.")
    status = run(home, "db", "status", "--db", url)
    assert "State:    under Aerich" in status.stdout and f"Applied:  {', '.join(CHAIN)}" in status.stdout
    assert "Pending:  none" in status.stdout
    check = run(home, "db", "check", "--data", "--db", url)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.splitlines() == [
        f"{where}: the schema matches the migrations it records.",
        f"{where}: every row can be read.",
    ]


async def test_check_reports_drift_on_postgres_with_exit_code_1(url: str, home: Path) -> None:
    assert run(home, "upgrade", "--db", url).returncode == 0
    async with postgres_connection(url.replace(f":{PASSWORD}", "")) as connection:
        await connection.execute("DROP INDEX idx_agents_user_id")
    check = run(home, "db", "check", "--db", url)
    assert check.returncode == 1, check.stdout + check.stderr
    assert check.stdout.startswith(f"Schema drift in {shown(url)}:") and "idx_agents_user_id" in check.stdout


def test_the_url_is_found_in_the_environment_and_in_settings(url: str, home: Path, tmp_path: Path) -> None:
    from_env = run(home, "db", "status", env={"DAYCARE_DB_URL": url})
    assert from_env.returncode == 0 and f"Database: {shown(url)} (from DAYCARE_DB_URL)" in from_env.stdout
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"engine": {"db": {"url": url}}}))
    from_settings = run(home, "upgrade", "--settings", str(settings))
    assert from_settings.returncode == 0 and f"Upgraded {shown(url)}" in from_settings.stdout
    home.mkdir(exist_ok=True)
    (home / "settings.json").write_text(json.dumps({"engine": {"db": {"url": url}}}))
    from_home = run(home, "db", "status")  # DAYCARE_HOME's settings.json
    assert f"Database: {shown(url)} (from {home / 'settings.json'}, engine.db.url)" in from_home.stdout


def test_start_runs_on_postgres_until_sigterm_or_sigint(url: str, home: Path) -> None:
    env = environment({"DAYCARE_HOME": str(home)})
    command = [sys.executable, "-m", "daycare", "start", "--db", url]
    started = engine_start_stop(command, cwd=ROOT, env=env)
    assert started.startswith(
        f"daycare.engine: engine started on {shown(url)} (schema aerich: {len(CHAIN)} migration"
    ), started
    assert "1 user, 0 agents" in started and PASSWORD not in started
    assert (home / "processes").is_dir()  # a server has no folder: the engine's files go to the Daycare home
    # SIGINT (Ctrl-C) stops it as cleanly; a second start only opens the schema.
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = LineReader(process)
    try:
        stderr.until(STARTED, timeout=60)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0, stderr.text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "stopping the engine (SIGINT)" in stderr.text() and "Traceback" not in stderr.text()


def test_a_second_engine_and_an_upgrade_are_refused_while_status_and_check_work(
    url: str, home: Path, processes: list[subprocess.Popen[str]]
) -> None:
    first, first_err = engine_process(url, home, processes)
    began = time.monotonic()
    second = run(home, "start", "--db", url)
    assert second.returncode == 1, second.stderr
    assert time.monotonic() - began < 30  # at once: it never waits for an engine
    schema = database_location(url).schema
    assert f"daycare: {shown(url)} is in use by an engine (pid {first.pid} on {socket.gethostname()[:20]}" in (
        second.stderr
    )
    assert f"which holds Daycare's lock on the schema {schema} (a PostgreSQL advisory lock)" in second.stderr
    assert "since " in second.stderr and "PostgreSQL session " in second.stderr
    upgrade = run(home, "upgrade", "--db", url)
    assert upgrade.returncode == 1 and f"is in use by an engine (pid {first.pid}" in upgrade.stderr
    assert "Nothing was changed" in upgrade.stderr
    status = run(home, "db", "status", "--db", url)
    assert status.returncode == 0 and "State:    under Aerich" in status.stdout, status.stderr
    check = run(home, "db", "check", "--db", url)
    assert check.returncode == 0 and "the schema matches" in check.stdout, check.stderr
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=60) == 0, first_err.text()
    assert "Traceback" not in first_err.text()


def test_the_lock_dies_with_its_engine(url: str, home: Path, processes: list[subprocess.Popen[str]]) -> None:
    first, _ = engine_process(url, home, processes)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    deadline = time.monotonic() + 10  # the server ends the session once it sees the socket close
    while (upgrade := run(home, "upgrade", "--db", url)).returncode != 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert upgrade.returncode == 0, upgrade.stderr
    assert upgrade.stdout.strip() == f"{shown(url)} is up to date."


def test_an_upgrade_waits_for_another_upgrade(url: str, home: Path) -> None:
    with lock_held(url, UPGRADE) as holder:
        process = subprocess.Popen(
            [sys.executable, "-m", "daycare", "upgrade", "--db", url],
            cwd=ROOT,
            env=environment({"DAYCARE_HOME": str(home)}),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        waiting = process.stdout.readline()
        assert waiting.startswith(f"Waiting up to 30 s for an upgrade (pid {holder.pid} on "), waiting
        holder.release()
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert f"Upgraded {shown(url)}" in out


async def test_an_engine_that_loses_its_lock_stops_and_exits_1(
    url: str, home: Path, processes: list[subprocess.Popen[str]]
) -> None:
    first, first_err = engine_process(url, home, processes)
    async with postgres_connection(url.replace(f":{PASSWORD}", "")) as admin:
        terminated = await admin.fetchval(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            f"daycare engine pid={first.pid} host={socket.gethostname()}"[:63],
        )
    assert terminated
    assert first.wait(timeout=60) == 1, first_err.text()
    text = first_err.text()
    assert f"daycare: the engine lost its lock on {shown(url)}" in text and "Traceback" not in text
    assert "another engine may" in text


def test_connection_failures_are_one_clear_message_with_exit_code_1(url: str, home: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound but not listening: refused
        down = f"postgres://postgres:{PASSWORD}@127.0.0.1:{port}/daycare"
        missing = url.replace("/daycare_test?", "/daycare_missing_db?")
        stranger = url.replace(f"postgres:{PASSWORD}@", f"nobody_h6:{PASSWORD}@")
        cases = [
            (down, "Cannot reach the PostgreSQL server at postgres://postgres@127.0.0.1", ("start",), ("db", "check")),
            (missing, "The database daycare_missing_db does not exist on the PostgreSQL server", ("upgrade",)),
            (stranger, "The PostgreSQL server (postgres://nobody_h6@127.0.0.1", ("db", "status"), ("upgrade",)),
        ]
        for where, message, *commands in cases:
            for args in commands:
                result = run(home, *args, "--db", where)
                assert result.returncode == 1, (args, where, result.stderr)
                assert result.stderr.startswith(f"daycare: {message}"), (args, result.stderr)
                assert len(result.stderr.strip().splitlines()) <= 4, result.stderr


def test_restore_on_postgres_is_refused_with_the_pg_restore_commands(url: str, home: Path, tmp_path: Path) -> None:
    dump = tmp_path / "daycare_test.t.dump"
    dump.write_bytes(b"PGDMP")
    schema = database_location(url).schema
    result = run(home, "restore", str(dump), "--db", url)
    assert result.returncode == 1
    assert f"{shown(url)} is a PostgreSQL database" in result.stderr
    assert f'ALTER SCHEMA "{schema}" RENAME TO "{schema}_before_restore"' in result.stderr
    assert "pg_restore --dbname='postgres://postgres@127.0.0.1" in result.stderr and str(dump) in result.stderr
    assert "Nothing was changed" in result.stderr


async def test_a_user_without_the_right_to_create_tables_is_told_so(postgres_url: str, home: Path) -> None:
    role = f"daycare_weak_{secrets.token_hex(4)}"
    schema = database_location(postgres_url).schema
    async with postgres_connection(postgres_url) as admin:
        await admin.execute(f"CREATE ROLE {role} LOGIN")
        await admin.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")  # it may look, not create
        try:
            weak = postgres_url.replace("postgres@", f"{role}@", 1)
            result = run(home, "upgrade", "--db", weak)
            assert result.returncode == 1, result.stderr
            assert result.stderr.startswith(f"daycare: The PostgreSQL user lacks a privilege on {shown(weak)}")
            assert f"permission denied for schema {schema}" in result.stderr
        finally:
            await admin.execute(f"REVOKE ALL ON SCHEMA {schema} FROM {role}")
            await admin.execute(f"DROP ROLE {role}")
