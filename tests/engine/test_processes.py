"""Processes: the legacy processes.spec tests and the supervisor's rules, with real child processes.

Scheduling runs on a FakeTime (the monitor ticks when the test advances the clock); the
processes are real, so the tests wait in real time for them to start or end. The sandbox
tests run wherever `bwrap` works and skip, saying why, elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time as wall
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from daycare.engine.process_os import boot_time_read, group_alive, pid_alive
from daycare.engine.processes import ProcessCreateInput, Processes, restart_backoff_ms
from daycare.engine.sandbox import BubblewrapSandbox, NoSandbox, Sandbox, SandboxError, sandbox_from_setting
from daycare.storage.facade import Storage
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.processes import ProcessesRepository, ProcessRecord
from tests.engine.helpers import FakeTime

BOOT_MS = 1_700_000_000_000


# Sandboxes


_bwrap_probes: dict[bool, str | None] = {}


def bwrap_problem(weaker_nested: bool) -> str | None:
    """Why bwrap cannot run a sandbox in this mode here, or None."""
    if weaker_nested not in _bwrap_probes:
        found = shutil.which("bwrap")
        if found is None:
            _bwrap_probes[weaker_nested] = "bwrap is not installed (`python3 dev.py test` installs bubblewrap as root)"
        else:
            mode = ["--ro-bind", "/proc", "/proc"] if weaker_nested else ["--unshare-pid", "--proc", "/proc"]
            probe = [found, "--ro-bind", "/", "/", "--dev", "/dev", *mode, "--unshare-net", "--", "/bin/true"]
            result = subprocess.run(probe, capture_output=True, text=True, timeout=30)
            problem = f"bwrap cannot create its namespaces here: {result.stderr.strip()}"
            _bwrap_probes[weaker_nested] = problem if result.returncode else None
    return _bwrap_probes[weaker_nested]


def bwrap(weaker_nested: bool = False) -> BubblewrapSandbox:
    """A bubblewrap sandbox in this mode; skips the test where it cannot run."""
    problem = bwrap_problem(weaker_nested)
    if problem:
        pytest.skip(problem)
    return BubblewrapSandbox(weaker_nested=weaker_nested)


SANDBOXES: dict[str, Callable[[], Sandbox]] = {
    "none": NoSandbox,
    "bwrap": bwrap,
    "bwrap-nested": lambda: bwrap(weaker_nested=True),
}


# Building services, and waiting for real processes


class Harness:
    """Builds services on one storage and data folder, and kills whatever they started when the test ends."""

    def __init__(self, storage: Storage, root: Path) -> None:
        self.storage = storage
        self.data_dir = root
        self.workspace = root / "workspace"
        self.workspace.mkdir()
        self.permissions: dict[str, Any] = {"workingDir": str(self.workspace), "writeDirs": [str(self.workspace)]}
        self.services: list[Processes] = []
        self.pids: set[int] = set()

    def build(
        self,
        sandbox: Sandbox | None = None,
        time: FakeTime | None = None,
        *,
        storage: Storage | None = None,
        boot_ms: int | None = BOOT_MS,
        **options: Any,
    ) -> Processes:
        """A service on the harness's data folder (a fresh Storage gives it cold caches, as a new engine has)."""
        time = time or FakeTime()
        options.setdefault("hidden_dirs", [str(self.data_dir)])
        service = Processes(
            processes=(storage or self.storage).processes,
            data_dir=self.data_dir,
            sandbox=sandbox or NoSandbox(),
            clock=time.now,
            sleep=time.sleep,
            boot_time_reader=lambda: boot_ms,
            **options,
        )
        self.services.append(service)
        return service

    def input(self, command: str, **fields: Any) -> ProcessCreateInput:
        return ProcessCreateInput(command=command, user_id=fields.pop("user_id", "user-1"), **fields)

    async def create(self, service: Processes, command: str, **fields: Any) -> Any:
        info = await service.create(self.input(command, **fields), self.permissions)
        if info.pid:
            self.pids.add(info.pid)
        return info

    async def cleanup(self) -> None:
        for service in self.services:
            await service.stop()
        for record in await self.storage.processes.find_all():
            if record.pid:
                self.pids.add(record.pid)
        for pid in self.pids:
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)


@pytest.fixture
async def harness(storage: Storage, tmp_path: Path) -> AsyncIterator[Harness]:
    built = Harness(storage, tmp_path)
    yield built
    await built.cleanup()


async def until(check: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0) -> None:
    """Waits in real time until `check()` holds; fails the test after `timeout` seconds."""
    deadline = wall.monotonic() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if wall.monotonic() > deadline:
            raise AssertionError("the condition did not hold in time")
        await asyncio.sleep(0.01)


async def record_of(harness: Harness, process_id: str) -> ProcessRecord:
    """The record as the service last wrote it (its repository's cache; no refresh)."""
    record = await harness.storage.processes.find_by_id(process_id)
    assert record is not None
    return record


async def stored_row(harness: Harness, process_id: str) -> ProcessRecord | None:
    """The row as a new Storage on the same database reads it."""
    return await Storage.from_database(harness.storage.db).processes.find_by_id(process_id)


async def ended(harness: Harness, process_id: str) -> None:
    """Waits until the recorded pid of the process is gone."""
    pid = (await record_of(harness, process_id)).pid
    assert pid is not None
    await until(lambda: not pid_alive(pid))


async def tick(time: FakeTime, ms: int) -> None:
    """Moves the clock by `ms` and waits until the monitor has finished the step that woke (it sleeps again)."""
    slept = len(time.sleeps)
    await time.advance(ms)
    await until(lambda: len(time.sleeps) > slept)


def log_text(info: Any) -> str:
    return Path(info.log_path).read_text(encoding="utf-8") if Path(info.log_path).exists() else ""


def settings_of(harness: Harness, process_id: str) -> dict[str, Any]:
    settings: dict[str, Any] = json.loads((harness.data_dir / "processes" / process_id / "sandbox.json").read_text())
    return settings


# The legacy processes.spec tests


async def test_writes_explicit_network_allowlist_to_sandbox_config(harness: Harness) -> None:
    """Legacy: "writes explicit network allowlist to sandbox config" (without a sandbox: bwrap refuses domains)."""
    service = harness.build(NoSandbox())
    await service.start()
    created = await harness.create(service, "echo domains-enabled", allowed_domains=["example.com"])
    config = settings_of(harness, created.id)
    assert config["network"]["allowedDomains"] == ["example.com"]
    assert "allowUnixSockets" not in config
    assert "enableWeakerNestedSandbox" not in config
    assert config["sandbox"] == "none"


async def test_enables_weaker_nested_sandbox_inside_a_container(harness: Harness) -> None:
    """Legacy: "enables weaker nested sandbox in process config when runtime is inside docker"."""
    bwrap(weaker_nested=True)
    inside = harness.build(BubblewrapSandbox(detect_container=lambda: True))
    await inside.start()
    created = await harness.create(inside, "echo weaker-nested-enabled")
    assert settings_of(harness, created.id)["enableWeakerNestedSandbox"] is True
    bwrap(weaker_nested=False)
    outside = harness.build(BubblewrapSandbox(detect_container=lambda: False))
    await outside.start()
    plain = await harness.create(outside, "echo full-sandbox")
    assert "enableWeakerNestedSandbox" not in settings_of(harness, plain.id)


async def test_adds_allow_local_binding_when_requested(harness: Harness) -> None:
    """Legacy: "adds allowLocalBinding when requested by process input"."""
    service = harness.build(NoSandbox())
    await service.start()
    created = await harness.create(
        service, "echo local-bind", allow_local_binding=True, allowed_domains=["example.com"]
    )
    assert settings_of(harness, created.id)["network"]["allowLocalBinding"] is True
    plain = await harness.create(service, "echo no-local-bind")
    assert "allowLocalBinding" not in settings_of(harness, plain.id)["network"]


async def test_defaults_allowed_domains_to_an_empty_allowlist(harness: Harness) -> None:
    """Legacy: "defaults process allowedDomains to an empty allowlist when omitted"."""
    service = harness.build(NoSandbox())
    await service.start()
    created = await harness.create(service, "echo network-without-domains")
    assert settings_of(harness, created.id)["network"]["allowedDomains"] == []
    assert (await record_of(harness, created.id)).allowed_domains == []


@pytest.mark.parametrize("sandbox", ["none", "bwrap"])
async def test_rehydrates_running_processes_after_reload(harness: Harness, sandbox: str) -> None:
    """Legacy: "rehydrates running processes after manager reload": a new service on the same database adopts
    the running child (same pid, not restarted)."""
    first = harness.build(SANDBOXES[sandbox]())
    await first.start()
    created = await harness.create(first, "echo started; exec sleep 60", keep_alive=True)
    assert created.pid is not None
    await until(lambda: "started" in log_text(created))
    await first.stop()
    assert pid_alive(created.pid)

    second = harness.build(SANDBOXES[sandbox](), storage=Storage.from_database(harness.storage.db))
    await second.start()
    restored = next(entry for entry in await second.list() if entry.id == created.id)
    assert (restored.status, restored.pid, restored.restart_count) == ("running", created.pid, 0)
    assert restored.last_started_at == created.last_started_at
    assert log_text(created).count("started") == 1
    assert pid_alive(created.pid)
    # And it is supervised: stopping it through the new service ends the real child.
    await second.stop_process(created.id)
    assert not pid_alive(created.pid)


async def test_restarts_keep_alive_processes_when_they_exit(harness: Harness) -> None:
    """Legacy: "restarts keepAlive processes when they exit" (the first run fails, the second stays up)."""
    time = FakeTime()
    service = harness.build(NoSandbox(), time)
    await service.start()
    state = harness.workspace / "restart-state.txt"
    command = f'n=$(cat {state} 2>/dev/null || echo 0); echo $((n+1)) > {state}; [ "$n" = 0 ] && exit 1; exec sleep 60'
    created = await harness.create(service, command, keep_alive=True)
    await ended(harness, created.id)
    await tick(time, 2_000)  # the exit is seen and a restart scheduled in 2 s
    await tick(time, 2_000)  # restarted
    restarted = await service.get(created.id)
    assert restarted.status == "running"
    assert restarted.restart_count == 1
    assert restarted.pid is not None and restarted.pid != created.pid and pid_alive(restarted.pid)
    await until(lambda: state.read_text().strip() == "2")


async def test_returns_log_file_path_via_get(harness: Harness) -> None:
    """Legacy: "returns log file path via process get"; stdout and stderr both land in it."""
    service = harness.build(NoSandbox())
    await service.start()
    created = await harness.create(service, "echo hello-durable-log; echo to-stderr >&2")
    await ended(harness, created.id)
    item = await service.get(created.id)
    assert Path(item.log_path).is_absolute()
    assert item.log_path == str(harness.data_dir / "processes" / created.id / "process.log")
    assert log_text(item) == "hello-durable-log\nto-stderr\n"
    assert item.status == "exited"


async def test_applies_exponential_backoff_for_failing_keep_alive_processes(harness: Harness) -> None:
    """Legacy: "applies exponential backoff for repeatedly failing keepAlive processes", on a controlled clock:
    2 s x 2^(failures - 1), capped at 60 s, one launch per restart."""
    time = FakeTime()
    service = harness.build(NoSandbox(), time)
    await service.start()
    launches = harness.workspace / "launches.txt"
    created = await harness.create(service, f"echo run >> {launches}; exit 1", keep_alive=True)
    delays = []
    for launch in range(1, 9):
        await ended(harness, created.id)
        assert launches.read_text().count("run") == launch
        await tick(time, 2_000)
        record = await record_of(harness, created.id)
        assert (record.status, record.pid, record.restart_failure_count) == ("exited", None, launch)
        assert record.next_restart_at is not None
        delays.append(record.next_restart_at - time.now())
        # The monitor looks every 2 s; it restarts at the first look at or after next_restart_at.
        for _ in range(delays[-1] // 2_000 - 1):
            await tick(time, 2_000)
            assert (await record_of(harness, created.id)).pid is None
        await tick(time, 2_000)
        assert (await record_of(harness, created.id)).restart_count == launch
    assert delays == [2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000]
    assert [restart_backoff_ms(failures) for failures in (1, 2, 3, 6, 7, 20)] == [2_000, 4_000, 8_000, 60_000] + [
        60_000
    ] * 2


async def test_clears_persisted_pid_when_boot_time_changes(harness: Harness) -> None:
    """Legacy: "clears persisted pid when boot time changes across manager restarts"."""
    now = 1_000
    folder = harness.data_dir / "processes" / "persisted-boot-test"
    await harness.storage.processes.create(
        stored_record("persisted-boot-test", folder, str(harness.workspace), pid=123_456, boot_time_ms=1_000, now=now)
    )
    service = harness.build(NoSandbox(), storage=Storage.from_database(harness.storage.db), boot_ms=2_000)
    await service.start()
    item = next(entry for entry in await service.list() if entry.id == "persisted-boot-test")
    assert (item.pid, item.status) == (None, "exited")
    persisted = await stored_row(harness, "persisted-boot-test")
    assert persisted is not None
    assert (persisted.pid, persisted.boot_time_ms, persisted.status) == (None, 2_000, "exited")


async def test_removes_plugin_owned_processes_and_keeps_other_owners(harness: Harness) -> None:
    """Legacy: "removes plugin-owned processes and keeps other owners"; the rows and folders go, the children end."""
    service = harness.build(NoSandbox())
    await service.start()
    command = "exec sleep 60"
    owned_a1 = await harness.create(service, command, keep_alive=True, owner={"type": "plugin", "id": "plugin-a"})
    owned_a2 = await harness.create(service, command, keep_alive=True, owner={"type": "plugin", "id": "plugin-a"})
    owned_b = await harness.create(service, command, keep_alive=True, owner={"type": "plugin", "id": " plugin-b "})

    assert await service.remove_by_owner({"type": "plugin", "id": "plugin-a"}) == 2

    assert await service.list_by_owner({"type": "plugin", "id": "plugin-a"}) == []
    assert [entry.id for entry in await service.list_by_owner({"type": "plugin", "id": "plugin-b"})] == [owned_b.id]
    for removed in (owned_a1, owned_a2):
        assert not (harness.data_dir / "processes" / removed.id).exists()
        assert await stored_row(harness, removed.id) is None
        assert not pid_alive(removed.pid)
    assert (harness.data_dir / "processes" / owned_b.id).is_dir()
    assert pid_alive(owned_b.pid)
    with pytest.raises(ValueError, match="Process owner id is required."):
        await service.remove_by_owner({"type": "plugin", "id": "  "})


# Create: validation and storage


async def test_create_refuses_with_the_legacy_messages(harness: Harness) -> None:
    service = harness.build(NoSandbox())
    await service.start()
    workspace = str(harness.workspace)
    permissions = harness.permissions
    cases: list[tuple[ProcessCreateInput, dict[str, Any], type[Exception], str]] = [
        (harness.input("echo"), {"workingDir": "", "writeDirs": []}, ValueError, "Workspace is not configured."),
        (harness.input("   "), permissions, ValueError, "Command is required."),
        (harness.input("echo", cwd="relative"), permissions, ValueError, "Path must be absolute."),
        (harness.input("echo", home="relative"), permissions, ValueError, "Path must be absolute."),
        (harness.input("echo", cwd="/elsewhere"), permissions, ValueError, "Path is outside the workspace."),
        (harness.input("echo", home="/elsewhere"), permissions, PermissionError, "Write permission denied: /elsewhere"),
        (harness.input("echo", allowed_domains=["*"]), permissions, ValueError, "Wildcard"),
        (harness.input("echo", allowed_domains=[" "]), permissions, ValueError, "entries cannot be blank."),
        (harness.input("echo", package_managers=["cobol"]), permissions, ValueError, "Unknown package manager: cobol"),
        (harness.input("echo", user_id=" "), permissions, ValueError, "Process userId is required."),
        (harness.input("echo", owner={"type": "plugin", "id": ""}), permissions, ValueError, "owner id is required."),
        (harness.input("echo", cwd=f"{workspace}/missing"), permissions, RuntimeError, "Process failed to start"),
    ]
    for input, given, error, message in cases:
        with pytest.raises(error, match=message):
            await service.create(input, given)
    assert await harness.storage.processes.find_all() == []
    assert list((harness.data_dir / "processes").iterdir()) == []


async def test_create_stores_the_whole_record(harness: Harness) -> None:
    """The name is trimmed, defaults to the id and is cut to 80 characters; the row is the record the service holds."""
    time = FakeTime()
    service = harness.build(NoSandbox(), time)
    await service.start()
    named = await harness.create(service, "  exec sleep 60  ", name="  " + "n" * 100 + "  ", package_managers=["node"])
    unnamed = await harness.create(service, "echo x", name="   ", owner={"type": "plugin", "id": " p "})
    assert named.name == "n" * 80
    assert unnamed.name == unnamed.id
    row = await stored_row(harness, named.id)
    assert row is not None
    assert row == await record_of(harness, named.id)
    assert (row.command, row.cwd, row.status, row.desired_state, row.user_id) == (
        "exec sleep 60",
        str(harness.workspace),
        "running",
        "running",
        "user-1",
    )
    assert (row.created_at, row.last_started_at, row.boot_time_ms, row.restart_count) == (
        time.now(),
        time.now(),
        BOOT_MS,
        0,
    )
    assert row.allowed_domains == ["registry.npmjs.org", "registry.yarnpkg.com", "repo.yarnpkg.com", "bun.sh"]
    assert row.permissions == {
        "workingDir": str(harness.workspace),
        "writeDirs": [str(harness.workspace)],
        "readDirs": [],
    }
    assert (await record_of(harness, unnamed.id)).owner == {"type": "plugin", "id": "p"}


async def test_environment_is_the_engines_plus_the_records_with_home_redefined(harness: Harness) -> None:
    service = harness.build(NoSandbox(), environ={"PATH": os.environ["PATH"], "FROM_ENGINE": "engine", "HOME": "/x"})
    await service.start()
    home = harness.workspace / "home"
    created = await harness.create(
        service,
        'echo "$FROM_ENGINE $FROM_RECORD $NUMBER $FLAG $HOME $TMPDIR $XDG_CONFIG_HOME"',
        env={"FROM_RECORD": "record", "NUMBER": 3.0, "FLAG": True, " ": "dropped"},
        home=str(home),
    )
    await ended(harness, created.id)
    assert log_text(created) == f"engine record 3 true {home} {home}/.tmp {home}/.config\n"
    assert (home / ".cache").is_dir()
    assert (await record_of(harness, created.id)).env == {"FROM_RECORD": "record", "NUMBER": "3", "FLAG": "true"}


async def test_sandbox_json_is_written_atomically_on_every_start(harness: Harness) -> None:
    service = harness.build(NoSandbox())
    await service.start()
    created = await harness.create(service, "echo x", allowed_domains=["example.com"])
    folder = harness.data_dir / "processes" / created.id
    assert sorted(path.name for path in folder.iterdir()) == ["process.log", "sandbox.json"]
    assert (folder / "sandbox.json").stat().st_mode & 0o777 == 0o600
    filesystem = settings_of(harness, created.id)["filesystem"]
    assert filesystem["allowWrite"] == [str(harness.workspace)]
    assert filesystem["allowRead"] == [str(harness.workspace)]
    assert filesystem["denyRead"][:2] == [str(harness.data_dir), str(Path.home() / ".ssh")]
    # By default the OS home and the data folder are the hidden folders.
    default = harness.build(NoSandbox(), hidden_dirs=None)
    await default.start()
    again = await harness.create(default, "echo y")
    assert settings_of(harness, again.id)["filesystem"]["denyRead"][:2] == [str(Path.home()), str(harness.data_dir)]


class FailingOnce(ProcessesRepository):
    """The real repository, whose next write fails once (a full disk, a lost connection)."""

    fail_next = False

    async def create(self, record: ProcessRecord) -> None:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("write failed")
        await super().create(record)


async def test_a_failed_write_is_written_again_at_the_next_refresh(harness: Harness) -> None:
    time = FakeTime()
    repository = FailingOnce(harness.storage.db)
    service = Processes(
        processes=repository, data_dir=harness.data_dir, sandbox=NoSandbox(), clock=time.now, sleep=time.sleep
    )
    harness.services.append(service)
    await service.start()
    repository.fail_next = True
    with pytest.raises(RuntimeError, match="write failed"):
        await harness.create(service, "exec sleep 60")
    [running] = await service.list()
    harness.pids.add(running.pid)
    assert running.status == "running"
    row = await stored_row(harness, running.id)
    assert row is not None and (row.pid, row.status) == (running.pid, "running")


# Ownership per context


async def test_per_context_operations_see_only_the_users_processes(harness: Harness) -> None:
    service = harness.build(NoSandbox())
    await service.start()
    mine = await harness.create(service, "exec sleep 60", user_id="user-1")
    theirs = await harness.create(service, "exec sleep 60", user_id="user-2")
    me = Context("user-1")

    assert [entry.id for entry in await service.list_for_context(me)] == [mine.id]
    assert [entry.id for entry in await service.list()] == [mine.id, theirs.id]
    assert (await service.get_for_context(me, mine.id)).id == mine.id
    for call in (
        lambda: service.get_for_context(me, theirs.id),
        lambda: service.stop_process_for_context(me, theirs.id),
        lambda: service.get("missing"),
        lambda: service.stop_process("missing"),
        lambda: service.remove("missing"),
    ):
        with pytest.raises(LookupError, match=r"Unknown process id: (missing|\w+)"):
            await call()
    assert pid_alive(theirs.pid)

    stopped = await service.stop_all_for_context(me)
    assert [(entry.id, entry.status, entry.desired_state) for entry in stopped] == [(mine.id, "stopped", "stopped")]
    assert not pid_alive(mine.pid)
    assert pid_alive(theirs.pid)
    assert (await service.stop_process_for_context(Context("user-2"), theirs.id)).status == "stopped"
    assert not pid_alive(theirs.pid)
    assert (await stored_row(harness, theirs.id)) == await record_of(harness, theirs.id)


async def test_remove_deletes_the_row_and_the_folder(harness: Harness) -> None:
    service = harness.build(NoSandbox())
    await service.start()
    created = await harness.create(service, "exec sleep 60")
    await service.remove(created.id)
    assert not pid_alive(created.pid)
    assert await stored_row(harness, created.id) is None
    assert not (harness.data_dir / "processes" / created.id).exists()
    with pytest.raises(LookupError, match=f"Unknown process id: {created.id}"):
        await service.get(created.id)


# The state machine


@pytest.mark.parametrize("sandbox", ["none", "bwrap", "bwrap-nested"])
async def test_stop_escalates_to_sigkill_for_a_child_that_ignores_sigterm(harness: Harness, sandbox: str) -> None:
    service = harness.build(SANDBOXES[sandbox](), stop_timeout_ms=600, stop_poll_ms=50)
    await service.start()
    stubborn = await harness.create(service, 'trap "" TERM; echo ready; exec sleep 60')
    polite = await harness.create(service, "echo ready; sleep 60")
    await until(lambda: "ready" in log_text(stubborn) and "ready" in log_text(polite))

    started = wall.monotonic()
    assert (await service.stop_process(polite.id)).status == "stopped"
    assert wall.monotonic() - started < 0.5
    assert not group_alive(polite.pid)

    started = wall.monotonic()
    stopped = await service.stop_process(stubborn.id)
    assert wall.monotonic() - started >= 0.6
    assert (stopped.status, stopped.pid, stopped.desired_state) == ("stopped", None, "stopped")
    assert not group_alive(stubborn.pid)


async def test_failure_count_resets_after_thirty_seconds_of_uptime(harness: Harness) -> None:
    time = FakeTime()
    service = harness.build(NoSandbox(), time)
    await service.start()
    count = harness.workspace / "count.txt"
    command = (
        f'n=$(cat {count} 2>/dev/null || echo 0); echo $((n+1)) > {count}; [ "$n" -ge 2 ] && exec sleep 60; exit 1'
    )
    created = await harness.create(service, command, keep_alive=True)
    for delay in (2_000, 4_000):
        await ended(harness, created.id)
        await tick(time, 2_000)
        await tick(time, delay)
    record = await record_of(harness, created.id)
    assert (record.restart_count, record.restart_failure_count, record.status) == (2, 2, "running")
    assert record.pid is not None and pid_alive(record.pid)
    await tick(time, 28_000)
    assert (await record_of(harness, created.id)).restart_failure_count == 2
    await tick(time, 2_000)
    record = await record_of(harness, created.id)
    assert (record.restart_failure_count, record.next_restart_at, record.status) == (0, None, "running")
    assert await stored_row(harness, created.id) == record


async def test_a_dead_process_becomes_exited_or_stopped(harness: Harness) -> None:
    time = FakeTime()
    service = harness.build(NoSandbox(), time)
    await service.start()
    exits = await harness.create(service, "exit 3")
    await ended(harness, exits.id)
    await tick(time, 2_000)
    record = await record_of(harness, exits.id)
    assert (record.status, record.pid, record.last_exited_at) == ("exited", None, time.now())
    assert await stored_row(harness, exits.id) == record


async def test_a_live_process_whose_desired_state_is_stopped_is_stopped_on_start(harness: Harness) -> None:
    """A row that says stopped while its pid runs (the stop was not finished) is stopped by the new service."""
    child = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        await until(lambda: pid_alive(child.pid))
        folder = harness.data_dir / "processes" / "half-stopped"
        record = stored_record("half-stopped", folder, str(harness.workspace), pid=child.pid, boot_time_ms=BOOT_MS)
        await harness.storage.processes.create(replace(record, desired_state="stopped"))
        service = harness.build(NoSandbox(), storage=Storage.from_database(harness.storage.db))
        await service.start()
        assert child.wait(timeout=10) == -signal.SIGTERM
        stored = await stored_row(harness, "half-stopped")
        assert stored is not None and (stored.status, stored.pid) == ("stopped", None)
    finally:
        child.kill()
        child.wait()


async def test_a_stale_pid_is_neither_adopted_nor_signalled(harness: Harness) -> None:
    """After a reboot the stored pid may be any other process: it is cleared, and that process is left alone."""
    child = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        await until(lambda: pid_alive(child.pid))
        folder = harness.data_dir / "processes" / "stale"
        await harness.storage.processes.create(
            stored_record("stale", folder, str(harness.workspace), pid=child.pid, boot_time_ms=BOOT_MS - 60_000)
        )
        service = harness.build(NoSandbox(), storage=Storage.from_database(harness.storage.db))
        await service.start()
        stored = await stored_row(harness, "stale")
        assert stored is not None
        assert (stored.pid, stored.status, stored.boot_time_ms) == (None, "exited", BOOT_MS)
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()


async def test_engine_stop_leaves_processes_running_unless_configured(harness: Harness) -> None:
    kept = harness.build(NoSandbox())
    await kept.start()
    left = await harness.create(kept, "exec sleep 60")
    await kept.stop()
    assert pid_alive(left.pid)

    stopping = harness.build(NoSandbox(), stop_processes=True)
    await stopping.start()
    ended_with_engine = await harness.create(stopping, "exec sleep 60")
    await stopping.stop()
    assert not pid_alive(ended_with_engine.pid)
    stored = await stored_row(harness, ended_with_engine.id)
    assert stored is not None
    assert (stored.status, stored.pid, stored.desired_state) == ("stopped", None, "running")


def test_boot_time_comes_from_proc_stat() -> None:
    if not Path("/proc/stat").exists():
        pytest.skip("no /proc/stat on this system")
    boot = boot_time_read()
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    assert boot is not None and boot % 1000 == 0
    assert abs(boot / 1000 - (wall.time() - uptime)) < 5


# Sandboxes


async def test_bubblewrap_refuses_domain_allowlists_and_a_missing_bwrap(harness: Harness) -> None:
    service = harness.build(BubblewrapSandbox(executable="/nonexistent/bwrap"))
    await service.start()
    with pytest.raises(SandboxError, match="Allowed domains are not supported by the bubblewrap sandbox"):
        await service.create(harness.input("echo", allowed_domains=["example.com"]), harness.permissions)
    with pytest.raises(SandboxError, match="Allowed domains are not supported"):
        await service.create(harness.input("echo", package_managers=["python"]), harness.permissions)
    with pytest.raises(SandboxError, match=r'needs bwrap, which is not installed.*set sandbox to "none"'):
        await service.create(harness.input("echo"), harness.permissions)
    assert await harness.storage.processes.find_all() == []
    assert list((harness.data_dir / "processes").iterdir()) == []


def test_sandbox_settings_name_bubblewrap_or_none() -> None:
    assert isinstance(sandbox_from_setting("bubblewrap"), BubblewrapSandbox)
    assert isinstance(sandbox_from_setting("none"), NoSandbox)
    with pytest.raises(ValueError, match='Unknown sandbox "docker": expected "bubblewrap" or "none".'):
        sandbox_from_setting("docker")


@pytest.mark.parametrize("sandbox", ["none", "bwrap", "bwrap-nested"])
async def test_a_sandboxed_child_cannot_write_outside_its_write_dirs(harness: Harness, sandbox: str) -> None:
    service = harness.build(SANDBOXES[sandbox]())
    await service.start()
    outside = harness.data_dir.parent / f"{harness.data_dir.name}-outside"
    outside.mkdir()
    readable = harness.data_dir / "readable"
    readable.mkdir()
    (readable / "note.txt").write_text("visible")
    harness.permissions["readDirs"] = [str(readable)]
    database = harness.data_dir / "daycare.db"
    if not database.exists():  # on PostgreSQL the data folder holds no database: a stand-in file, hidden alike
        database.write_text("stand-in for the database file")
    command = (
        f"echo inside > {harness.workspace}/inside.txt; echo outside > {outside}/outside.txt;"
        f" echo new > {readable}/new.txt;"
        f" cat {readable}/note.txt; echo; cat {database} > /dev/null && echo database-readable;"
        ' echo "shadow=$(wc -c < /etc/shadow)"'
    )
    created = await harness.create(service, command)
    await ended(harness, created.id)
    assert (harness.workspace / "inside.txt").read_text() == "inside\n"
    logged = log_text(created)
    assert "visible" in logged
    if sandbox == "none":
        assert (outside / "outside.txt").exists() and (readable / "new.txt").exists()
        assert "database-readable" in logged
    else:
        assert not (outside / "outside.txt").exists()
        assert not (readable / "new.txt").exists()
        assert "cannot create" in logged and "Read-only file system" in logged
        # The data folder (the database, the other processes' logs) is hidden, bar the folders granted;
        # credentials are hidden everywhere.
        assert "database-readable" not in logged
        if Path("/etc/shadow").exists():
            # Bound over by /dev/null on a nodev mount: opening it is refused.
            assert "cannot open /etc/shadow: Permission denied" in logged and "shadow=\n" in logged


@pytest.mark.parametrize("sandbox", ["none", "bwrap", "bwrap-nested"])
async def test_a_sandboxed_child_cannot_reach_the_network_without_allowed_domains(
    harness: Harness, sandbox: str
) -> None:
    connections: list[bool] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(True)
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        service = harness.build(SANDBOXES[sandbox]())
        await service.start()
        # bash's /dev/tcp, not this virtualenv's python: the sandbox's /tmp is private, and a clone
        # (so its .venv) may live under /tmp.
        created = await harness.create(service, f"/bin/bash -c 'echo > /dev/tcp/127.0.0.1/{port}' && echo connected")
        await ended(harness, created.id)
        logged = log_text(created)
        if sandbox == "none":
            assert "connected" in logged
            await until(lambda: connections == [True])
        else:
            assert "connected" not in logged
            assert "unreachable" in logged or "refused" in logged, logged
            assert connections == []
    finally:
        server.close()
        await server.wait_closed()


# Helpers


def stored_record(
    id: str, folder: Path, workspace: str, *, pid: int | None, boot_time_ms: int | None, now: int = 1_000
) -> ProcessRecord:
    """A running process row as an earlier engine left it."""
    return ProcessRecord(
        id=id,
        user_id="owner",
        name=id,
        command="exec sleep 60",
        cwd=workspace,
        home=None,
        env={},
        package_managers=[],
        allowed_domains=[],
        allow_local_binding=False,
        permissions={"workingDir": workspace, "writeDirs": [workspace]},
        owner=None,
        keep_alive=False,
        desired_state="running",
        status="running",
        pid=pid,
        boot_time_ms=boot_time_ms,
        restart_count=0,
        restart_failure_count=0,
        next_restart_at=None,
        settings_path=str(folder / "sandbox.json"),
        log_path=str(folder / "process.log"),
        created_at=now,
        updated_at=now,
        last_started_at=now,
        last_exited_at=None,
    )
