"""The daycare command line, run as a real subprocess."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.engine_process import engine_start_stop
from tests.sqlite_files import file_query, file_sha256
from tests.storage.migrations.migrated import VERSIONS

ROOT = Path(__file__).resolve().parents[1]


def daycare(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != "DAYCARE_DB_URL"}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "daycare", *args], capture_output=True, text=True, cwd=ROOT, env=environment, timeout=120
    )


def test_upgrade_twice_says_what_it_did_then_that_the_file_is_up_to_date(legacy_copy: Callable[[str], Path]) -> None:
    path = legacy_copy("populated.db")
    first = daycare("upgrade", "--db", str(path))
    assert first.returncode == 0, first.stderr
    assert "Backup written to" in first.stdout
    assert "Adopting the legacy file as it is" in first.stdout
    assert all(f"Applied {version}" in first.stdout for version in VERSIONS)
    second = daycare("upgrade", "--db", str(path))
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == f"{path} is up to date."


def test_upgrade_no_backup_writes_no_backup(legacy_copy: Callable[[str], Path]) -> None:
    path = legacy_copy("empty.db")
    result = daycare("upgrade", "--db", str(path), "--no-backup")
    assert result.returncode == 0, result.stderr
    assert not list(path.parent.glob("*.bak-*"))


def test_status_names_the_state_applied_and_pending(legacy_copy: Callable[[str], Path]) -> None:
    path = legacy_copy("empty.db")
    before = daycare("db", "status", "--db", str(path))
    assert before.returncode == 0, before.stderr
    assert "legacy, not yet under Aerich (33 of 33 legacy steps recorded)" in before.stdout
    assert "Applied:  none" in before.stdout and f"Pending:  {', '.join(VERSIONS)}\n" in before.stdout
    daycare("upgrade", "--db", str(path))
    after = daycare("db", "status", "--db", str(path))
    assert "under Aerich" in after.stdout and "Pending:  none" in after.stdout
    assert f"Applied:  {', '.join(VERSIONS)}\n" in after.stdout


def test_check_reports_drift_per_table_and_exits_1(legacy_copy: Callable[[str], Path]) -> None:
    path = legacy_copy("empty.db")
    daycare("upgrade", "--db", str(path), "--no-backup")
    assert daycare("db", "check", "--db", str(path)).returncode == 0
    connection = sqlite3.connect(path)
    connection.execute("DROP INDEX idx_agents_user_id")
    connection.execute("CREATE TABLE scratch (x)")
    connection.commit()
    connection.close()
    result = daycare("db", "check", "--db", str(path))
    assert result.returncode == 1
    assert "agents:\n    - missing index idx_agents_user_id: (user_id)" in result.stdout
    assert "scratch:\n    - unexpected table" in result.stdout


def test_user_errors_are_a_few_lines_without_traceback(tmp_path: Path, legacy_copy: Callable[[str], Path]) -> None:
    text_file = tmp_path / "notes.db"
    text_file.write_text("not a database")
    drifted = legacy_copy("populated.db")
    connection = sqlite3.connect(drifted)
    connection.execute("DROP INDEX idx_agents_user_id")
    connection.commit()
    connection.close()
    sha = file_sha256(drifted)
    cases = [
        (("upgrade", "--db", str(text_file)), "not a readable SQLite database"),
        (("upgrade", "--db", str(drifted)), "differs from the legacy final schema"),
        (("db", "status", "--db", str(tmp_path / "missing.db")), "Database file not found"),
        (("upgrade", "--settings", str(tmp_path / "nope.json")), "Settings file not found"),
        (("upgrade", "--db", "mysql://localhost/x"), "Unsupported database URL scheme"),
    ]
    for args, message in cases:
        result = daycare(*args)
        assert result.returncode == 1, args
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) <= 6
    assert file_sha256(drifted) == sha
    assert not (tmp_path / "missing.db").exists()


def test_every_command_finds_the_database_the_same_way(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings_db = tmp_path / "from-settings" / "daycare.db"
    env_db = tmp_path / "from-env.db"
    (home / ".daycare").mkdir(parents=True)
    (home / ".daycare" / "settings.json").write_text(json.dumps({"engine": {"dbPath": str(settings_db)}}))
    assert daycare("upgrade", env={"HOME": str(home)}).returncode == 0
    assert settings_db.exists()
    data_dir = tmp_path / "data"
    custom = tmp_path / "custom.json"
    custom.write_text(json.dumps({"engine": {"dataDir": str(data_dir)}}))
    assert daycare("upgrade", "--settings", str(custom), env={"HOME": str(home)}).returncode == 0
    assert (data_dir / "daycare.db").exists()
    result = daycare("db", "status", env={"HOME": str(home), "DAYCARE_DB_URL": f"sqlite://{env_db}"})
    assert result.returncode == 1 and "not found" in result.stderr  # status never creates a file
    assert daycare("upgrade", env={"HOME": str(home), "DAYCARE_DB_URL": str(env_db)}).returncode == 0
    assert file_query(env_db, "SELECT count(*) FROM users") == [(1,)]
    bare_home = tmp_path / "bare"
    bare_home.mkdir()
    assert daycare("upgrade", env={"HOME": str(bare_home)}).returncode == 0
    assert (bare_home / ".daycare" / "daycare.db").exists()


def test_python_m_daycare_and_the_console_script_are_the_same_program() -> None:
    script = Path(sys.executable).with_name("daycare")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout == daycare("--help").stdout


def test_start_runs_until_sigterm_then_exits_0_and_leaves_a_sound_file(tmp_path: Path) -> None:
    path = tmp_path / "daycare.db"
    environment = {key: value for key, value in os.environ.items() if key != "DAYCARE_DB_URL"}
    started = engine_start_stop([sys.executable, "-m", "daycare", "start", "--db", path], cwd=ROOT, env=environment)
    # The migration's lines come first; the startup line says the engine is up.
    assert started.startswith(
        f"daycare.engine: engine started on {path} (schema aerich: {len(VERSIONS)} migrations applied"
    )
    assert "1 user, 0 agents, 0 cron triggers, 0 heartbeat triggers" in started
    assert started.rstrip().endswith("services: signals, channels, crons, heartbeats, delayed signals")
    check = daycare("db", "check", "--db", str(path))
    assert check.returncode == 0, check.stdout + check.stderr
    assert file_query(path, "SELECT count(*) FROM users WHERE is_owner = 1") == [(1,)]
