"""The OS side of managed processes: launching detached, watching pids and process groups, boot time.

A process is started through a short-lived launcher (an asyncio subprocess running a few lines
of Python) that spawns the command in a session of its own, reports its pid and exits. The
process is then nobody's child in the engine: an asyncio transport kills a child still running
when it is closed or collected, and a managed process must outlive the engine that started it.
Its pid is watched instead; a zombie counts as dead, since an init that does not reap leaves
them behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal as signals
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from daycare.engine.sandbox import INFO_FD, SandboxCommand
from daycare.storage.db.files import durable_rename

LAUNCH_TIMEOUT_S = 30.0

# Run by the launcher (`python -I -S -c`): reads {argv, cwd, env, log, reportsPid} on stdin, starts
# argv in a new session with stdout and stderr appended to the log, prints {"pid"} or {"error"}, and
# exits without waiting, leaving the process to run on its own. A sandbox that reports the pid to
# supervise (bwrap's --info-fd) gets a pipe in place of the INFO_FD argument.
_LAUNCHER = r"""
import json, os, subprocess, sys, time
spec = json.load(sys.stdin)
log = os.open(spec["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
argv, fds = spec["argv"], ()
if spec["reportsPid"]:
    info_read, info_write = os.pipe()
    argv = [str(info_write) if part == spec["infoFd"] else part for part in argv]
    fds = (info_write,)
def reply(**message):
    sys.stdout.write(json.dumps(message))
    sys.stdout.flush()
    os._exit(0)
try:
    child = subprocess.Popen(argv, cwd=spec["cwd"], env=spec["env"], stdin=subprocess.DEVNULL, stdout=log,
                             stderr=log, start_new_session=True, pass_fds=fds)
except OSError as error:
    reply(error=f"{type(error).__name__}: {error}")
if not fds:
    reply(pid=child.pid)
os.close(info_write)
data = b""
while chunk := os.read(info_read, 65536):
    data += chunk
try:
    pid = int(json.loads(data)["child-pid"])
except (ValueError, KeyError, TypeError):
    pid = None
if pid is not None:
    # The sandbox reports its child before the child has opened its session: wait for it, as
    # the supervisor tells its processes from others by their leading their own session.
    for _ in range(400):
        try:
            if os.getsid(pid) == pid:
                break
        except OSError:
            break
        time.sleep(0.005)
    reply(pid=pid)
else:
    code = child.wait()
    with open(spec["log"], "rb") as logged:
        logged.seek(max(0, os.fstat(logged.fileno()).st_size - 400))
        tail = logged.read().decode("utf-8", "replace").strip()
    reply(error=f"the sandbox exited with code {code} before starting the command: {tail}")
"""


def boot_time_read() -> int | None:
    """The OS boot time in Unix ms, from `btime` in /proc/stat; None where there is no such file."""
    try:
        with open("/proc/stat", "rb") as stat:  # bytes: no text decoder (nor the ascii codec's import) to set up
            lines = stat.read().splitlines()
        for line in lines:
            if line.startswith(b"btime "):
                seconds = int(line[6:].strip())
                return seconds * 1000 if seconds > 0 else None
    except (OSError, ValueError):
        return None
    return None


def pid_alive(pid: int) -> bool:
    """Whether `pid` is a live process that leads its own session, as every process this service starts does.

    A zombie is dead (an init that does not reap leaves them behind), and a live pid that is no
    session leader is another program that got the number after ours ended.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    state = _proc_stat(pid)
    if state is not None and state[0] in ("Z", "X"):
        return False
    try:
        return os.getsid(pid) == pid
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def group_alive(pgid: int) -> bool:
    """Whether any live (not zombie) process is in the process group; falls back to the leader without /proc."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return pid_alive(pgid)
    for name in entries:
        if name.isdigit():
            state = _proc_stat(int(name))
            if state is not None and state[2] == str(pgid) and state[0] not in ("Z", "X"):
                return True
    return False


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, pgrp, ...), or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as stat:
            return stat.read().rpartition(")")[2].split()
    except OSError:
        return None


def group_signal(pid: int, signal: signals.Signals) -> None:
    """Sends `signal` to the process group `pid` leads, or to the pid alone when it has no group."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal)
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal)


def _env_value(value: str | int | float | bool) -> str:
    # The strings JS String() gave: true/false, and integral numbers without ".0".
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def env_normalize(env: Mapping[str, Any] | None) -> dict[str, str]:
    """Keys trimmed (blank ones dropped), string, number and boolean values as strings; anything else dropped."""
    result: dict[str, str] = {}
    for key, value in (env or {}).items():
        name = key.strip() if isinstance(key, str) else ""
        if name and name not in ("__proto__", "constructor", "prototype") and isinstance(value, str | int | float):
            result[name] = _env_value(value)
    return result


def home_env(env: Mapping[str, str], home: str) -> dict[str, str]:
    """The environment with HOME and the usual tool homes inside `home`; creates those folders."""
    base = Path(home).resolve()
    tmp = base / ".tmp"
    places = {
        "XDG_CONFIG_HOME": base / ".config",
        "XDG_CACHE_HOME": base / ".cache",
        "XDG_DATA_HOME": base / ".local" / "share",
        "XDG_STATE_HOME": base / ".local" / "state",
        "CARGO_HOME": base / ".cargo",
        "RUSTUP_HOME": base / ".rustup",
        "NUGET_PACKAGES": base / ".nuget" / "packages",
        "GEM_HOME": base / ".gem",
        "BUNDLE_USER_HOME": base / ".bundle",
        "PUB_CACHE": base / ".pub-cache",
        "COMPOSER_HOME": base / ".composer",
    }
    for folder in (base, tmp, base / ".config" / "pip", *places.values()):
        folder.mkdir(parents=True, exist_ok=True)
    return {
        **env,
        "HOME": str(base),
        "USERPROFILE": str(base),
        **{name: str(path) for name, path in places.items()},
        "TMPDIR": str(tmp),
        "TMP": str(tmp),
        "TEMP": str(tmp),
        "DOTNET_CLI_HOME": str(base),
        "PIP_CONFIG_FILE": str(base / ".config" / "pip" / "pip.conf"),
        "NPM_CONFIG_USERCONFIG": str(base / ".npmrc"),
        "npm_config_userconfig": str(base / ".npmrc"),
    }


def file_write_atomic(path: str, text: str) -> None:
    """Writes `text` to a temporary file next to `path` (mode 0600), syncs it, and renames it over `path`
    (`durable_rename`, as the backups do: the folder is synced too)."""
    temporary = f"{path}.tmp-{os.getpid()}-{time.monotonic_ns()}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        durable_rename(Path(temporary), Path(path))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


async def process_launch(command: SandboxCommand, cwd: str, env: Mapping[str, str], log_path: str) -> int:
    """Starts `command` detached in a session of its own, output appended to `log_path`; returns the pid to watch.

    Raises RuntimeError with the reason when it could not start.
    """
    spec = {
        "argv": list(command.argv),
        "cwd": cwd,
        "env": dict(env),
        "log": log_path,
        "reportsPid": command.reports_pid,
        "infoFd": INFO_FD,
    }
    launcher = await asyncio.create_subprocess_exec(
        sys.executable,
        "-I",
        "-S",
        "-c",
        _LAUNCHER,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd="/",
    )
    try:
        out, err = await asyncio.wait_for(launcher.communicate(json.dumps(spec).encode()), LAUNCH_TIMEOUT_S)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            launcher.kill()
        await launcher.wait()
        raise
    try:
        reply = json.loads(out)
    except ValueError:
        raise RuntimeError(f"Process launcher failed: {err.decode('utf-8', 'replace').strip()}") from None
    if "pid" not in reply:
        raise RuntimeError(f"Process failed to start: {reply.get('error')}")
    return int(reply["pid"])
