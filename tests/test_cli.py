"""The daycare command line, run as a real subprocess."""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import json
import os
import pwd
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from daycare.storage.db.lock import UPGRADE
from tests.conftest import legacy_path
from tests.engine_process import STARTED, TIMESTAMP, LineReader, engine_start_stop
from tests.sqlite_files import file_query, file_sha256
from tests.storage.db.file_states import disk_fill, full_disk, unwritable
from tests.storage.db.lock_holder import Holder, lock_held
from tests.storage.migrations.migrated import VERSIONS

ROOT = Path(__file__).resolve().parents[1]


def environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without DAYCARE_DB_URL and DAYCARE_HOME, plus `env`."""
    result = {key: value for key, value in os.environ.items() if key not in ("DAYCARE_DB_URL", "DAYCARE_HOME")}
    result.update(env or {})
    return result


def daycare(
    *args: str, env: dict[str, str] | None = None, prefix: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """Runs `python -m daycare ARGS` to its end; `prefix` runs it as another user (see `other_user`)."""
    return subprocess.run(
        [*prefix, sys.executable, "-m", "daycare", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environment(env),
        timeout=120,
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
    not_utf8 = tmp_path / "latin1.json"
    not_utf8.write_bytes(b'{"engine": {"dbPath": "caf\xe9.db"}}')
    not_object = tmp_path / "list.json"
    not_object.write_text("[1, 2]")
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
        (("upgrade", "--db", ""), "--db is empty"),
        (("upgrade", "--db", f"sqlite://{tmp_path}/u.db?synchronous=FUL"), "use one of OFF, NORMAL, FULL, EXTRA"),
        (("upgrade", "--db", f"sqlite://{tmp_path}/u.db?synchronus=FULL"), "Unknown parameter 'synchronus'"),
        (("upgrade", "--db", f"sqlite://{tmp_path}/u.db?foreign_keys=OFF"), "Daycare needs foreign keys on"),
        (("db", "status", "--settings", str(not_utf8)), f"Settings file {not_utf8} is not UTF-8 text"),
        (("upgrade", "--settings", str(not_object)), f"Settings file {not_object} does not hold a JSON object"),
    ]
    for args, message in cases:
        result = daycare(*args)
        assert result.returncode == 1, args
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) <= 6
    assert file_sha256(drifted) == sha
    assert not (tmp_path / "missing.db").exists()
    assert not (tmp_path / "u.db").exists()
    assert not (ROOT / "u.db").exists() and not (ROOT / "daycare.db").exists()


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
    assert started.rstrip().endswith(
        "services: signals, channels, crons, heartbeats, delayed signals, processes, exposes"
    )
    check = daycare("db", "check", "--db", str(path))
    assert check.returncode == 0, check.stdout + check.stderr
    assert file_query(path, "SELECT count(*) FROM users WHERE is_owner = 1") == [(1,)]


# --- one engine per file -------------------------------------------------------------------


def engine_process(path: Path, *args: str) -> tuple[subprocess.Popen[str], LineReader]:
    """`daycare start --db PATH` running until its startup line; stop it with a signal."""
    process = subprocess.Popen(
        [sys.executable, "-m", "daycare", "start", "--db", str(path), *args],
        cwd=ROOT,
        env=environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr = LineReader(process)
    stderr.until(STARTED, timeout=60)
    return process, stderr


def test_a_second_engine_and_an_upgrade_are_refused_while_status_and_check_work(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    path = tmp_path / "daycare.db"
    first, first_err = engine_process(path)
    processes.append(first)
    began = time.monotonic()
    second = daycare("start", "--db", str(path))
    assert second.returncode == 1, second.stderr
    assert time.monotonic() - began < 30  # at once: it never waits for an engine
    assert f"daycare: {path} is in use by an engine (pid {first.pid}: " in second.stderr
    assert f"which holds its lock file {path}.lock" in second.stderr
    assert "Traceback" not in second.stderr

    sha = file_sha256(path)
    upgrade = daycare("upgrade", "--db", str(path))
    assert upgrade.returncode == 1 and f"{path} is in use by an engine (pid {first.pid}" in upgrade.stderr
    assert "Nothing was changed" in upgrade.stderr and "Traceback" not in upgrade.stderr
    assert file_sha256(path) == sha and not list(tmp_path.glob("*.bak-*"))

    status = daycare("db", "status", "--db", str(path))
    assert status.returncode == 0 and "State:    under Aerich" in status.stdout, status.stderr
    check = daycare("db", "check", "--db", str(path))
    assert check.returncode == 0 and "the schema matches" in check.stdout, check.stderr

    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=60) == 0, first_err.text()
    assert "Traceback" not in first_err.text()


def test_the_lock_dies_with_its_engine(tmp_path: Path, processes: list[subprocess.Popen[str]]) -> None:
    path = tmp_path / "daycare.db"
    first, _ = engine_process(path)
    processes.append(first)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    upgrade = daycare("upgrade", "--db", str(path))
    assert upgrade.returncode == 0, upgrade.stderr
    assert upgrade.stdout.strip() == f"{path} is up to date."
    engine_start_stop([sys.executable, "-m", "daycare", "start", "--db", path], cwd=ROOT, env=environment())


def test_an_upgrade_waits_for_another_upgrade_then_finds_the_file_up_to_date(tmp_path: Path) -> None:
    path = tmp_path / "daycare.db"
    assert daycare("upgrade", "--db", str(path)).returncode == 0
    with lock_held(path, UPGRADE) as holder:
        out, err, code = _upgrade_waiting_for(holder, path)
    assert code == 0, err
    assert out.strip() == f"{path} is up to date."


def _upgrade_waiting_for(holder: Holder, path: Path) -> tuple[str, str, int]:
    """Runs `daycare upgrade` while `holder` holds the lock; releases it once the upgrade says it waits."""
    waiting = subprocess.Popen(
        [sys.executable, "-m", "daycare", "upgrade", "--db", str(path)],
        cwd=ROOT,
        env=environment({"PYTHONUNBUFFERED": "1"}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert waiting.stdout is not None
        line = waiting.stdout.readline()
        assert line.startswith(f"Waiting up to 30 s for an upgrade (pid {holder.pid}: "), line
        assert waiting.poll() is None
        holder.release()
        out, err = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    return out, err, waiting.returncode


def test_two_upgrades_at_once_both_succeed_and_one_upgrades(legacy_copy: Callable[[str], Path]) -> None:
    path = legacy_copy("at_20260222_add_processes.db")
    command = [sys.executable, "-m", "daycare", "upgrade", "--db", str(path)]
    both = [
        subprocess.Popen(
            command, cwd=ROOT, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = [(process.communicate(timeout=120), process.returncode) for process in both]
    for (_, err), code in results:
        assert code == 0, err
        assert "Traceback" not in err
    assert sum("Upgraded" in out for (out, _), _ in results) == 1
    assert sum(out.strip().endswith("is up to date.") for (out, _), _ in results) == 1
    assert len(list(path.parent.glob("*.bak-*"))) == 1


# --- files that cannot be written, a full disk, a damaged file -----------------------------


def other_user() -> list[str]:
    """A command prefix that runs a process as a user file permissions apply to: none when not root,
    else `setpriv` to nobody (the test skips without it)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: chmod would not stop root")
    nobody = pwd.getpwnam("nobody")
    prefix = [setpriv, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
    if subprocess.run([*prefix, sys.executable, "-c", "import daycare"], cwd=ROOT).returncode != 0:
        pytest.skip("nobody cannot run this checkout's Python")
    return prefix


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder the other user of `other_user` owns (pytest's own temp folders are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="daycare-cli-"))
    folder.chmod(0o755)
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(folder, nobody.pw_uid, nobody.pw_gid)
    yield folder
    for child in (folder, *folder.rglob("*")):
        if child.is_dir():
            child.chmod(0o755)
    shutil.rmtree(folder)


def owned_copy(folder: Path, name: str) -> Path:
    """A copy of a legacy fixture in `folder`, owned like the folder."""
    target = folder / name
    shutil.copyfile(legacy_path(name), target)
    info = folder.stat()
    os.chown(target, info.st_uid, info.st_gid) if os.geteuid() == 0 else None
    return target


@pytest.mark.parametrize("command", ["upgrade", "start"])
@pytest.mark.parametrize("what", ["file", "folder"])
def test_a_read_only_file_or_folder_is_named_before_anything_is_written(
    shared_dir: Path, command: str, what: str
) -> None:
    prefix = other_user()
    path = owned_copy(shared_dir, "populated.db")
    sha = file_sha256(path)
    (path if what == "file" else shared_dir).chmod(0o444 if what == "file" else 0o555)
    result = daycare(command, "--db", str(path), prefix=prefix)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "not a readable SQLite database" not in result.stderr
    assert f"daycare: Cannot write the database {path}:" in result.stderr
    if what == "file":
        assert f"{path} is read-only: its permissions (0444" in result.stderr
    else:
        assert f"its folder {shared_dir} is read-only: its permissions (0555" in result.stderr
    assert "Nothing was changed" in result.stderr
    shared_dir.chmod(0o755)
    assert file_sha256(path) == sha
    assert sorted(child.name for child in shared_dir.iterdir()) in (
        ["populated.db"],
        ["populated.db", "populated.db.lock"],
    )


@pytest.mark.parametrize("command", ["upgrade", "start"])
@pytest.mark.parametrize("what", ["file", "folder"])
def test_an_immutable_file_or_folder_is_named(tmp_path: Path, command: str, what: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("chattr +i needs root")
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "daycare.db"
    shutil.copyfile(legacy_path("populated.db"), path)
    sha = file_sha256(path)
    with unwritable(path if what == "file" else folder):
        result = daycare(command, "--db", str(path))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    named = path if what == "file" else f"its folder {folder}"
    assert f"{named} is read-only: it is immutable (lsattr shows it; chattr -i removes it)" in result.stderr
    assert file_sha256(path) == sha and not list(folder.glob("*.bak-*"))


def test_a_full_disk_at_open_is_called_a_full_disk(tmp_path: Path) -> None:
    with full_disk(tmp_path / "small") as folder:
        shutil.copyfile(legacy_path("empty.db"), folder / "daycare.db")
        disk_fill(folder)
        results = [daycare(command, "--db", str(folder / "daycare.db")) for command in ("upgrade", "start")]
        results.append(daycare("upgrade", "--db", str(folder / "new" / "daycare.db")))
    for result in results:
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert "is full" in result.stderr and "Free some space on that disk" in result.stderr
        assert "not a readable SQLite database" not in result.stderr


@pytest.mark.parametrize("offset", [100, 3 * 4096])
def test_a_damaged_file_is_never_told_to_go_without_a_backup(tmp_path: Path, offset: int) -> None:
    path = tmp_path / "daycare.db"
    shutil.copyfile(legacy_path("populated.db"), path)
    with open(path, "r+b") as file:
        file.seek(offset)
        file.write(b"\xde\xad" * 3000)
    for args in (("upgrade",), ("start",), ("db", "check"), ("db", "status")):
        result = daycare(*args, "--db", str(path))
        assert "Traceback" not in result.stderr and "--no-backup" not in result.stderr, (args, result.stderr)
        if args[0] != "db" or result.returncode != 0:  # the inspections read only what the damage may spare
            assert result.returncode == 1 and "is damaged" in result.stderr, (args, result.stderr)
    assert not [name for name in os.listdir(tmp_path) if ".bak-" in name]


# --- what db status and db check say -------------------------------------------------------


def test_a_file_of_a_newer_daycare_is_named_by_check_and_status(tmp_path: Path) -> None:
    path = tmp_path / "daycare.db"
    assert daycare("upgrade", "--db", str(path)).returncode == 0
    connection = sqlite3.connect(path)
    with connection:
        connection.execute(
            "INSERT INTO aerich (version, app, content) VALUES ('9_20300101000000_future.py', 'models', '{}')"
        )
    connection.close()
    check = daycare("db", "check", "--db", str(path))
    assert check.returncode == 1 and "Traceback" not in check.stderr, check.stderr
    assert "was migrated by a newer Daycare" in check.stderr and "9_20300101000000_future.py" in check.stderr
    status = daycare("db", "status", "--db", str(path))
    assert status.returncode == 0, status.stderr
    assert "Unknown:  9_20300101000000_future.py (applied by a newer Daycare)" in status.stdout
    assert "Pending:  none" not in status.stdout and "Pending:  cannot tell" in status.stdout


def test_check_calls_a_partial_legacy_file_older_with_its_own_exit_code(legacy_copy: Callable[[str], Path]) -> None:
    path = legacy_copy("at_20260222_add_processes.db")
    check = daycare("db", "check", "--db", str(path))
    assert check.returncode == 3, check.stdout + check.stderr
    assert check.stdout.startswith(f"{path} is an older legacy file (")
    assert "daycare upgrade will upgrade it" in check.stdout and "drift" not in check.stdout
    assert daycare("upgrade", "--db", str(path)).returncode == 0
    assert daycare("db", "check", "--db", str(path)).returncode == 0


def test_check_calls_another_applications_file_not_a_daycare_file(tmp_path: Path) -> None:
    path = tmp_path / "invoices.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    connection.close()
    check = daycare("db", "check", "--db", str(path))
    assert check.returncode == 1 and "Traceback" not in check.stderr
    assert f"{path} is not a Daycare file: it is a SQLite file of another application (tables: invoices)" in (
        check.stderr
    )
    assert "missing" not in check.stdout + check.stderr


# --- interruptions -------------------------------------------------------------------------

# Runs `python -m daycare ARGS` with Python's own SIGINT handler, whatever the test runner set, once
# the interpreter has started (it says "ready" on stderr): Ctrl-C before that is Python's business.
WITH_SIGINT = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler);"
    " sys.argv = ['daycare', *sys.argv[1:]]; print('ready', file=sys.stderr, flush=True);"
    " runpy.run_module('daycare', run_name='__main__', alter_sys=True)"
)


@pytest.mark.parametrize("delay", [0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7])
def test_ctrl_c_while_start_loads_or_starts_says_so_without_a_traceback(tmp_path: Path, delay: float) -> None:
    path = tmp_path / "daycare.db"
    process = subprocess.Popen(
        [sys.executable, "-c", WITH_SIGINT, "start", "--db", str(path)],
        cwd=ROOT,
        env=environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None and process.stderr.readline() == "ready\n"
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert "Traceback" not in err, err
    assert process.returncode in (130, 0), err
    if process.returncode == 130:
        assert err.strip().startswith("daycare: ") or "daycare: SIGINT while starting" in err, err
    else:  # the engine had started: a clean stop
        assert "stopping the engine (SIGINT)" in err
    if path.exists():
        check = daycare("db", "check", "--db", str(path))
        assert check.returncode == 0 or "has no tables yet" in check.stdout, check.stdout + check.stderr


def partial_legacy_file(path: Path) -> Path:
    """A legacy file stopped after step 26 with 20,000 history rows and 200+200 triggers (bench/upgrade_partial.py)."""
    spec = importlib.util.spec_from_file_location("upgrade_partial", ROOT / "bench" / "upgrade_partial.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    asyncio.run(bench.chain_build(path, bench.STOP_AFTER))
    bench.fill(path, 20_000, 300, 2)
    return path


def test_ctrl_c_during_an_upgrade_says_the_state_and_a_rerun_continues(tmp_path: Path) -> None:
    path = partial_legacy_file(tmp_path / "daycare.db")
    process = subprocess.Popen(
        [sys.executable, "-c", WITH_SIGINT, "upgrade", "--db", str(path)],
        cwd=ROOT,
        env=environment({"PYTHONUNBUFFERED": "1"}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stderr.readline() == "ready\n"
    for line in process.stdout:
        if line.startswith("Legacy step "):  # the first of the seven it lacks has begun
            process.send_signal(signal.SIGINT)
            break
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert "daycare: interrupted. The file is consistent" in err
    assert f"{path} is now legacy, not yet under Aerich (" in err and "Run daycare upgrade again" in err

    rerun = daycare("upgrade", "--db", str(path))
    assert rerun.returncode == 0, rerun.stderr
    assert "Upgraded" in rerun.stdout
    assert daycare("db", "check", "--db", str(path)).returncode == 0
    # Half of the 200 cron and 200 heartbeat triggers had no task: one summary line per table.
    created = [line for line in rerun.stderr.splitlines() if "task(s) for tasks_" in line]
    assert len(created) == 2, rerun.stderr
    assert "Created 100 task(s) for tasks_cron rows that had none" in created[0]
    assert "Created task " not in rerun.stderr


# --- small things --------------------------------------------------------------------------


def test_sighup_stops_the_engine_cleanly_and_log_lines_carry_a_timestamp(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    path = tmp_path / "daycare.db"
    process, stderr = engine_process(path)
    processes.append(process)
    process.send_signal(signal.SIGHUP)
    assert process.wait(timeout=60) == 0
    lines = stderr.text().splitlines()
    assert lines and all(TIMESTAMP.match(line) for line in lines), lines
    assert lines[-1].endswith("daycare.engine: stopping the engine (SIGHUP)")
    assert daycare("db", "check", "--db", str(path)).returncode == 0


def test_version_help_and_usage_errors() -> None:
    version = daycare("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"daycare {importlib.metadata.version('daycare')}"
    help_text = daycare("--help").stdout
    assert "exit codes:" in help_text and "3    db check: an older legacy file" in help_text
    assert "130  interrupted by Ctrl-C" in help_text
    missing = daycare("db")
    assert missing.returncode == 2
    assert "the following arguments are required: COMMAND" in missing.stderr
    assert "db_command" not in missing.stderr + daycare("db", "--help").stdout + help_text


def test_skipped_legacy_data_is_counted_in_the_final_line(tmp_path: Path) -> None:
    (tmp_path / "agents" / "broken").mkdir(parents=True)  # no descriptor.json
    (tmp_path / "heartbeat").mkdir()
    (tmp_path / "heartbeat" / "empty.md").write_text("")
    result = daycare("upgrade", "--db", str(tmp_path / "daycare.db"))
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith(f"Upgraded {tmp_path / 'daycare.db'}: applied ")
    assert last.endswith("; skipped 2 piece(s) of legacy data (a warning above names each).")
