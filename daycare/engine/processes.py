"""Processes: durable, supervised background processes that agents start, each in a sandbox.

The service keeps every process record in memory and writes the whole record to the
`processes` table (an upsert) on every change. A process lives in `<dataDir>/processes/<id>/`:
`sandbox.json` (the policy it runs under) and `process.log` (its stdout and stderr). It runs
detached, in a session of its own (see `process_os`), so it outlives the engine.

The monitor looks at every pid every 2 s, and on every list or get, with the legacy state machine:

- a live pid whose desired state is stopped is stopped (SIGTERM to its process group, up to
  8 s for the group to end, polled every 200 ms, then SIGKILL);
- a live pid that has been up for 30 s has its restart failures forgotten;
- a dead pid becomes `exited` (desired running), `stopped` (desired stopped), or, with
  keepAlive, is restarted after 2 s x 2^(failures - 1), at most 60 s.

On start, a pid recorded under another boot time (`/proc/stat` btime) is stale and is
cleared, so the refresh settles the record; pids of this boot are adopted as they run. On
stop, processes keep running (the next engine adopts them) unless `stop_processes` is set.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal as signals
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from daycare.engine.process_os import (
    boot_time_read,
    env_normalize,
    file_write_atomic,
    group_alive,
    group_signal,
    home_env,
    pid_alive,
    process_launch,
)
from daycare.engine.sandbox import (
    PACKAGE_MANAGER_DOMAINS,
    Sandbox,
    SandboxPolicy,
    allowed_domains_issues,
    allowed_domains_resolve,
    secret_paths,
)
from daycare.engine.ticker import Ticker
from daycare.engine.timing import Clock, Sleep, now_ms, sleep_ms
from daycare.storage.identifiers import cuid_create
from daycare.storage.repositories.context import Context
from daycare.storage.repositories.processes import ProcessesRepository, ProcessRecord

log = logging.getLogger("daycare.engine.processes")

MONITOR_INTERVAL_MS = 2_000
STOP_TIMEOUT_MS = 8_000
STOP_POLL_MS = 200
RESTART_BACKOFF_BASE_MS = 2_000
RESTART_BACKOFF_MAX_MS = 60_000
RESTART_STABLE_UPTIME_MS = 30_000
NAME_MAX = 80

ProcessSignal = Literal["SIGTERM", "SIGINT", "SIGHUP", "SIGKILL"]
_SIGNALS: Mapping[str, signals.Signals] = {
    "SIGTERM": signals.SIGTERM,
    "SIGINT": signals.SIGINT,
    "SIGHUP": signals.SIGHUP,
    "SIGKILL": signals.SIGKILL,
}


@dataclass(frozen=True, slots=True)
class ProcessCreateInput:
    """What a caller asks to run. `owner` is `{"type": "plugin", "id": ...}`; paths must be absolute."""

    command: str
    user_id: str
    name: str | None = None
    cwd: str | None = None
    env: Mapping[str, str | int | float | bool] | None = None
    home: str | None = None
    package_managers: Sequence[str] = ()
    allowed_domains: Sequence[str] | None = None
    keep_alive: bool = False
    allow_local_binding: bool = False
    owner: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """A process as callers see it (the legacy public shape)."""

    id: str
    name: str
    command: str
    cwd: str
    home: str | None
    pid: int | None
    keep_alive: bool
    desired_state: str
    status: str
    restart_count: int
    created_at: int
    updated_at: int
    last_started_at: int | None
    last_exited_at: int | None
    log_path: str


# The `list` method of Processes hides the builtin in the class's annotations.
ProcessInfos = list[ProcessInfo]


def _info(record: ProcessRecord) -> ProcessInfo:
    return ProcessInfo(
        id=record.id,
        name=record.name,
        command=record.command,
        cwd=record.cwd,
        home=record.home,
        pid=record.pid,
        keep_alive=record.keep_alive,
        desired_state=record.desired_state,
        status=record.status,
        restart_count=record.restart_count,
        created_at=record.created_at,
        updated_at=record.updated_at,
        last_started_at=record.last_started_at,
        last_exited_at=record.last_exited_at,
        log_path=record.log_path,
    )


def restart_backoff_ms(failures: int) -> int:
    """The wait before restart number `failures`: 2 s doubling per failure, at most 60 s."""
    return int(min(RESTART_BACKOFF_BASE_MS * 2 ** max(0, failures - 1), RESTART_BACKOFF_MAX_MS))


def _restart_schedule(record: ProcessRecord, now: int) -> ProcessRecord:
    """Counts one more failure (starting over after a run of 30 s) and sets when to restart."""
    uptime = 0
    if record.last_started_at is not None:
        exited = record.last_exited_at if record.last_exited_at is not None else now
        uptime = max(0, exited - record.last_started_at)
    failures = (0 if uptime >= RESTART_STABLE_UPTIME_MS else record.restart_failure_count) + 1
    return replace(
        record, restart_failure_count=failures, next_restart_at=now + restart_backoff_ms(failures), updated_at=now
    )


def _owner_normalize(owner: Mapping[str, str]) -> dict[str, str]:
    owner_type = owner.get("type")
    if owner_type != "plugin":
        raise ValueError('Process owner type must be "plugin".')
    owner_id = str(owner.get("id") or "").strip()
    if not owner_id:
        raise ValueError("Process owner id is required.")
    return {"type": owner_type, "id": owner_id}


def _owner_is(record: ProcessRecord, owner: Mapping[str, str]) -> bool:
    return (
        record.owner is not None and record.owner.get("type") == owner["type"] and record.owner.get("id") == owner["id"]
    )


def _strings(value: Any) -> list[str]:
    return [entry for entry in value if isinstance(entry, str)] if isinstance(value, list | tuple) else []


def _within(path: str, base: str) -> bool:
    relative = os.path.relpath(path, base)
    return relative == "." or not (relative == ".." or relative.startswith("../") or os.path.isabs(relative))


def _workspace_path(working_dir: str, target: str) -> str:
    resolved = os.path.normpath(os.path.join(working_dir, target))
    if not _within(resolved, os.path.normpath(working_dir)):
        raise ValueError("Path is outside the workspace.")
    return resolved


def _home_check(write_dirs: Sequence[str], home: str) -> str:
    """The real path of `home`, which must lie in a write dir and outside the secret paths."""
    requested = os.path.abspath(home)
    real = os.path.realpath(requested)
    allowed = any(_within(real, os.path.realpath(base)) for base in write_dirs)
    if not allowed or any(_within(real, secret) for secret in secret_paths()):
        raise PermissionError(f"Write permission denied: {requested}")
    return real


def _signal_of(name: str) -> signals.Signals:
    if name not in _SIGNALS:
        raise ValueError(f"Unsupported signal: {name}")
    return _SIGNALS[name]


class Processes:
    """The supervised processes of one engine, on its `processes` repository and data folder."""

    def __init__(
        self,
        *,
        processes: ProcessesRepository,
        data_dir: Path,
        sandbox: Sandbox,
        clock: Clock = now_ms,
        sleep: Sleep = sleep_ms,
        boot_time_reader: Callable[[], int | None] = boot_time_read,
        environ: Mapping[str, str] | None = None,
        hidden_dirs: Sequence[str] | None = None,
        stop_processes: bool = False,
        stop_timeout_ms: int = STOP_TIMEOUT_MS,
        stop_poll_ms: int = STOP_POLL_MS,
    ) -> None:
        """`sandbox` runs every process (`NoSandbox` only when the settings say so); `environ` defaults to the
        engine's. `hidden_dirs` (default: the OS home and `data_dir`) are unreadable in the sandbox except for
        the process's own folders. `stop_processes`: `stop()` also stops the running processes.
        """
        self._repository = processes
        self._data_dir = Path(data_dir).resolve()
        self._records_dir = self._data_dir / "processes"
        self._sandbox = sandbox
        self._clock = clock
        self._boot_time_reader = boot_time_reader
        self._environ = environ
        self._hidden_dirs = tuple(hidden_dirs) if hidden_dirs is not None else (str(Path.home()), str(self._data_dir))
        self._secret_paths = secret_paths()
        self._stop_processes = stop_processes
        self._stop_timeout_ms = stop_timeout_ms
        self._stop_poll_ms = stop_poll_ms
        self._lock = asyncio.Lock()
        self._records: dict[str, ProcessRecord] = {}
        # Records whose last write failed: written again before the next refresh.
        self._unsaved: set[str] = set()
        self._boot_time_ms: int | None = None
        self._ticks = 0
        self._ticker = Ticker("processes", self._step, sleep, error_delay_ms=MONITOR_INTERVAL_MS)

    # Lifecycle

    async def start(self) -> None:
        """Loads every stored process, clears pids of an earlier boot, settles each record, starts the monitor."""
        # One mkdir, on the loop: the first `to_thread` of a process would start the default executor's thread.
        self._records_dir.mkdir(parents=True, exist_ok=True)
        self._boot_time_ms = self._boot_time_reader()
        async with self._lock:
            self._records.clear()
            for stored in await self._repository.find_all():
                self._records[stored.id] = self._boot_check(stored)
            await self._refresh_all()
        self._ticker.start()

    async def stop(self) -> None:
        """Stops the monitor; the processes keep running for the next engine unless `stop_processes` is set.

        With `stop_processes`, each running process is stopped but keeps its desired state: the next
        engine restarts the keepAlive ones and records the others as exited.
        """
        await self._ticker.stop()
        if not self._stop_processes:
            return
        async with self._lock:
            for record in list(self._records.values()):
                if record.pid is not None:
                    try:
                        await self._save(await self._halt(record, signals.SIGTERM))
                    except Exception:
                        log.exception("stopping process %s failed", record.id)

    # Public operations

    async def create(self, input: ProcessCreateInput, permissions: Mapping[str, Any]) -> ProcessInfo:
        """Validates, starts and stores a process running under `permissions` (`workingDir`, `writeDirs`, `readDirs`).

        Raises ValueError (legacy messages), PermissionError for a home outside the write dirs,
        SandboxError when the sandbox cannot enforce the policy, RuntimeError when it cannot start.
        """
        async with self._lock:
            now = self._clock()
            working_dir = permissions.get("workingDir")
            if not isinstance(working_dir, str) or not working_dir:
                raise ValueError("Workspace is not configured.")
            command = input.command.strip()
            if not command:
                raise ValueError("Command is required.")
            for path in (input.cwd, input.home):
                if path and not os.path.isabs(path):
                    raise ValueError("Path must be absolute.")
            cwd = _workspace_path(working_dir, input.cwd) if input.cwd else working_dir
            write_dirs = _strings(permissions.get("writeDirs"))
            home = _home_check(write_dirs, input.home) if input.home else None
            for manager in input.package_managers:
                if manager not in PACKAGE_MANAGER_DOMAINS:
                    raise ValueError(f"Unknown package manager: {manager}")
            allowed_domains = allowed_domains_resolve(input.allowed_domains, input.package_managers)
            issues = allowed_domains_issues(allowed_domains)
            if issues:
                raise ValueError(" ".join(issues))
            user_id = input.user_id.strip()
            if not user_id:
                raise ValueError("Process userId is required.")
            owner = _owner_normalize(input.owner) if input.owner is not None else None
            process_id = cuid_create()
            folder = self._records_dir / process_id
            name = (input.name or "").strip() or process_id
            record = ProcessRecord(
                id=process_id,
                user_id=user_id,
                name=name[:NAME_MAX],
                command=command,
                cwd=cwd,
                home=home,
                env=env_normalize(input.env),
                package_managers=list(input.package_managers),
                allowed_domains=allowed_domains,
                allow_local_binding=input.allow_local_binding,
                permissions={
                    "workingDir": working_dir,
                    "writeDirs": write_dirs,
                    "readDirs": _strings(permissions.get("readDirs")),
                },
                owner=owner,
                keep_alive=input.keep_alive,
                desired_state="running",
                status="stopped",
                pid=None,
                boot_time_ms=self._boot_time_ms,
                restart_count=0,
                restart_failure_count=0,
                next_restart_at=None,
                settings_path=str(folder / "sandbox.json"),
                log_path=str(folder / "process.log"),
                created_at=now,
                updated_at=now,
                last_started_at=None,
                last_exited_at=None,
            )
            # Refused before anything is written, so a policy the sandbox cannot enforce leaves no trace.
            self._sandbox.check(self._policy(record))
            await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
            try:
                record = await self._launch(record, restart=False)
            except BaseException:
                await asyncio.to_thread(shutil.rmtree, folder, True)
                raise
            self._records[record.id] = record
            await self._save(record)
            return _info(record)

    async def list(self) -> ProcessInfos:
        """Every process, oldest first, after a refresh."""
        async with self._lock:
            await self._refresh_all()
            return self._sorted(lambda record: True)

    async def list_for_context(self, ctx: Context) -> ProcessInfos:
        """The processes of the context's user, oldest first, after a refresh."""
        async with self._lock:
            await self._refresh_all()
            return self._sorted(lambda record: record.user_id == ctx.user_id)

    async def list_by_owner(self, owner: Mapping[str, str]) -> ProcessInfos:
        """The processes of an owner (`{"type": "plugin", "id": ...}`), oldest first, after a refresh."""
        normalized = _owner_normalize(owner)
        async with self._lock:
            await self._refresh_all()
            return self._sorted(lambda record: _owner_is(record, normalized))

    async def get(self, process_id: str) -> ProcessInfo:
        """One process (with its log path) after a refresh; raises LookupError("Unknown process id: <id>")."""
        async with self._lock:
            await self._refresh_all()
            return _info(self._find(process_id))

    async def get_for_context(self, ctx: Context, process_id: str) -> ProcessInfo:
        """As `get`, for a process of the context's user only."""
        async with self._lock:
            await self._refresh_all()
            return _info(self._find(process_id, ctx))

    async def stop_process(self, process_id: str, signal: ProcessSignal = "SIGTERM") -> ProcessInfo:
        """Stops a process for good (desired state stopped): `signal` to its group, SIGKILL after the timeout."""
        sent = _signal_of(signal)
        async with self._lock:
            return await self._stop_desired(self._find(process_id), sent)

    async def stop_process_for_context(
        self, ctx: Context, process_id: str, signal: ProcessSignal = "SIGTERM"
    ) -> ProcessInfo:
        """As `stop_process`, for a process of the context's user only."""
        sent = _signal_of(signal)
        async with self._lock:
            return await self._stop_desired(self._find(process_id, ctx), sent)

    async def stop_all(self, signal: ProcessSignal = "SIGTERM") -> ProcessInfos:
        """Stops every process for good."""
        sent = _signal_of(signal)
        async with self._lock:
            return [await self._stop_desired(record, sent) for record in list(self._records.values())]

    async def stop_all_for_context(self, ctx: Context, signal: ProcessSignal = "SIGTERM") -> ProcessInfos:
        """Stops every process of the context's user for good."""
        sent = _signal_of(signal)
        async with self._lock:
            records = [record for record in self._records.values() if record.user_id == ctx.user_id]
            return [await self._stop_desired(record, sent) for record in records]

    async def remove(self, process_id: str, signal: ProcessSignal = "SIGTERM") -> None:
        """Stops a process, deletes its row and its folder."""
        sent = _signal_of(signal)
        async with self._lock:
            await self._remove(self._find(process_id), sent)

    async def remove_by_owner(self, owner: Mapping[str, str], signal: ProcessSignal = "SIGTERM") -> int:
        """Removes every process of an owner; returns how many."""
        normalized = _owner_normalize(owner)
        sent = _signal_of(signal)
        async with self._lock:
            records = [record for record in self._records.values() if _owner_is(record, normalized)]
            for record in records:
                await self._remove(record, sent)
            return len(records)

    # The state machine (every method below runs under the lock)

    def _boot_check(self, record: ProcessRecord) -> ProcessRecord:
        """Clears a pid recorded under another boot: its number may belong to anything now."""
        current = self._boot_time_ms
        if current is None:
            return record
        if record.boot_time_ms is None:
            return replace(record, boot_time_ms=current)
        if record.pid is None or record.boot_time_ms == current:
            return record
        log.info("process %s: pid %s is from an earlier boot; cleared", record.id, record.pid)
        now = self._clock()
        # Status running, so that the refresh settles it (exited, stopped, or a restart).
        return replace(
            record,
            pid=None,
            boot_time_ms=current,
            status="running",
            last_exited_at=now,
            updated_at=now,
            next_restart_at=None,
        )

    async def _step(self) -> int:
        # The ticker steps at once when started; start() has just refreshed, so the first look is 2 s later.
        if self._ticks:
            async with self._lock:
                await self._refresh_all()
        self._ticks += 1
        return MONITOR_INTERVAL_MS

    async def _refresh_all(self) -> None:
        for process_id in list(self._unsaved):
            if process_id in self._records:
                await self._save(self._records[process_id])
            self._unsaved.discard(process_id)
        for record in list(self._records.values()):
            try:
                await self._refresh(record)
            except Exception:
                log.exception("process %s: refresh failed", record.id)

    async def _refresh(self, record: ProcessRecord) -> None:
        now = self._clock()
        if record.pid is not None and pid_alive(record.pid):
            if record.desired_state == "stopped":
                await self._save(await self._halt(record, signals.SIGTERM))
                return
            updated = record
            if (
                record.restart_failure_count > 0
                and record.last_started_at is not None
                and now - record.last_started_at >= RESTART_STABLE_UPTIME_MS
            ):
                updated = replace(updated, restart_failure_count=0, next_restart_at=None, updated_at=now)
            if record.status != "running":
                updated = replace(updated, status="running", updated_at=now)
            if updated != record:
                await self._save(updated)
            return
        updated = record
        if record.pid is not None:
            updated = replace(updated, pid=None, last_exited_at=now, updated_at=now)
        if record.desired_state == "running":
            if record.keep_alive:
                await self._restart_with_backoff(updated, changed=updated != record)
                return
            if record.status != "exited":
                updated = replace(updated, status="exited", updated_at=now)
        elif record.status != "stopped":
            updated = replace(updated, status="stopped", restart_failure_count=0, next_restart_at=None, updated_at=now)
        if updated != record:
            await self._save(updated)

    async def _restart_with_backoff(self, record: ProcessRecord, *, changed: bool) -> None:
        now = self._clock()
        if record.status != "exited":
            record, changed = replace(record, status="exited", updated_at=now), True
        if record.next_restart_at is None:
            await self._save(_restart_schedule(record, now))
            return
        if now < record.next_restart_at:
            if changed:
                await self._save(record)
            return
        try:
            started = await self._launch(record, restart=True)
        except Exception as error:
            failed_at = self._clock()
            log.warning(
                "process %s: restart failed (%s); failure %d, backing off",
                record.id,
                error,
                record.restart_failure_count + 1,
            )
            failed = replace(record, pid=None, status="exited", last_exited_at=failed_at)
            await self._save(_restart_schedule(failed, failed_at))
            return
        await self._save(replace(started, next_restart_at=None))

    async def _launch(self, record: ProcessRecord, *, restart: bool) -> ProcessRecord:
        """Writes sandbox.json, starts the command in its sandbox; the record as started."""
        policy = self._policy(record)
        command = self._sandbox.command(policy, record.command, record.cwd)
        settings = json.dumps(self._sandbox.settings(policy), separators=(",", ":"), ensure_ascii=False)
        folder = os.path.dirname(record.log_path)
        await asyncio.to_thread(os.makedirs, folder, exist_ok=True)
        await asyncio.to_thread(file_write_atomic, record.settings_path, settings)
        env = {**(os.environ if self._environ is None else self._environ), **record.env}
        if record.home:
            env = await asyncio.to_thread(home_env, env, record.home)
        pid = await process_launch(command, record.cwd, env, record.log_path)
        now = self._clock()
        log.info("process %s: started (pid %d, keepAlive %s)", record.id, pid, record.keep_alive)
        return replace(
            record,
            boot_time_ms=self._boot_time_ms,
            pid=pid,
            status="running",
            last_started_at=now,
            updated_at=now,
            restart_count=record.restart_count + (1 if restart else 0),
        )

    async def _halt(self, record: ProcessRecord, signal: signals.Signals) -> ProcessRecord:
        """Ends the process: `signal` to its group, then SIGKILL if the group outlives the timeout."""
        pid = record.pid
        if pid is not None and pid_alive(pid):
            group_signal(pid, signal)
            if not await self._group_ended(pid, self._stop_timeout_ms):
                log.warning(
                    "process %s: still running %d ms after %s; killing", record.id, self._stop_timeout_ms, signal.name
                )
                group_signal(pid, signals.SIGKILL)
                await self._group_ended(pid, 2_000)
        now = self._clock()
        log.info("process %s: stopped", record.id)
        return replace(
            record,
            pid=None,
            status="stopped",
            next_restart_at=None,
            restart_failure_count=0,
            last_exited_at=now,
            updated_at=now,
        )

    async def _group_ended(self, pgid: int, timeout_ms: int) -> bool:
        # Real time: this waits for the OS, whatever clock the scheduling runs on.
        deadline = time.monotonic() + timeout_ms / 1000
        while group_alive(pgid):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(self._stop_poll_ms / 1000)
        return True

    async def _stop_desired(self, record: ProcessRecord, signal: signals.Signals) -> ProcessInfo:
        stopped = await self._halt(replace(record, desired_state="stopped"), signal)
        await self._save(stopped)
        return _info(stopped)

    async def _remove(self, record: ProcessRecord, signal: signals.Signals) -> None:
        await self._halt(replace(record, desired_state="stopped"), signal)
        await self._repository.delete(record.id)
        self._records.pop(record.id, None)
        self._unsaved.discard(record.id)
        await asyncio.to_thread(shutil.rmtree, self._records_dir / record.id, True)
        log.info("process %s: removed", record.id)

    async def _save(self, record: ProcessRecord) -> None:
        """Keeps `record` as the process's state and writes it whole; a failed write is retried on the next refresh."""
        self._records[record.id] = record
        try:
            await self._repository.create(record)
        except BaseException:
            self._unsaved.add(record.id)
            raise
        self._unsaved.discard(record.id)

    # Helpers

    def _find(self, process_id: str, ctx: Context | None = None) -> ProcessRecord:
        record = self._records.get(process_id)
        if record is None or (ctx is not None and record.user_id != ctx.user_id):
            raise LookupError(f"Unknown process id: {process_id}")
        return record

    def _sorted(self, keep: Callable[[ProcessRecord], bool]) -> ProcessInfos:
        records = sorted((record for record in self._records.values() if keep(record)), key=lambda r: r.created_at)
        return [_info(record) for record in records]

    def _policy(self, record: ProcessRecord) -> SandboxPolicy:
        permissions = record.permissions
        return SandboxPolicy(
            working_dir=str(permissions.get("workingDir") or "/"),
            read_dirs=tuple(_strings(permissions.get("readDirs"))),
            write_dirs=tuple(_strings(permissions.get("writeDirs"))),
            hidden_dirs=self._hidden_dirs,
            secret_paths=self._secret_paths,
            allowed_domains=tuple(record.allowed_domains),
            allow_local_binding=record.allow_local_binding,
        )
