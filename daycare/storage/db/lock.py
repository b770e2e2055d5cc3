"""One process at a time on a database file: an OS lock on `<name>.lock` beside it.

An engine holds the lock from before it opens the file until after it closes it, and `daycare
upgrade` for the whole upgrade; the inspection commands take none. The lock is `flock` on the
lock file, so the OS drops it when the holder dies: a crash never leaves a stale lock. The
holder writes its pid, what it does and its command line into the file, so a refused process
can name it. The file stays when the lock is released (emptied): removing it would let two
processes lock two different files of the same name.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from daycare.storage.db.backend import private_folder_create
from daycare.storage.db.database import database_failure
from daycare.storage.errors import StorageError

ENGINE = "engine"
UPGRADE = "upgrade"
SCRIPT = "script"  # storage_open: a script writing without the engine
UPGRADE_WAIT = 30.0  # seconds a process waits for another process's upgrade to finish
_POLL = 0.1  # seconds between two attempts while waiting
_NAMELESS_TRIES = 5  # attempts 10 ms apart while the lock is held by a process that names no one


def lock_path(database: Path) -> Path:
    """The lock file of the database at `database`: `<name>.lock` beside it."""
    return database.with_name(database.name + ".lock")


@dataclass(frozen=True)
class LockHolder:
    """What the process holding a lock wrote into the lock file."""

    pid: int | None
    purpose: str  # ENGINE, UPGRADE, or what another holder wrote
    command: str

    def describe(self) -> str:
        """E.g. `an engine (pid 123: daycare start --db x.db)`."""
        what = {ENGINE: "an engine", UPGRADE: "an upgrade", SCRIPT: "a script"}.get(self.purpose, "a process")
        own = ", this process" if self.pid == os.getpid() else ""
        details = f"pid {self.pid}{own}" if self.pid is not None else "pid unknown"
        if self.command:
            details += f": {self.command}"
        return f"{what} ({details})"


def lock_holder_read(path: Path) -> LockHolder | None:
    """The holder the lock file at `path` names; None when it names none (empty, unreadable, not ours)."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
        pid = content.get("pid")
        return LockHolder(
            pid if isinstance(pid, int) else None, str(content.get("purpose", "")), str(content.get("command", ""))
        )
    except (OSError, ValueError, AttributeError):
        return None


class DatabaseInUse(StorageError):
    """Another process holds the database's lock: an engine runs on it, or an upgrade."""

    def __init__(self, database: Path, holder: LockHolder | None, *advice: str) -> None:
        who = holder.describe() if holder else "another process"
        super().__init__(
            f"{database} is in use by {who}, which holds its lock file {lock_path(database)}.",
            *advice,
            "Nothing was changed. Only one engine, upgrade or script may write a database file at a time: stop that one"
            " first. daycare db status and daycare db check work meanwhile.",
        )
        self.database = database
        self.holder = holder


class DatabaseLock:
    """A held lock on one database file; `release()` (or leaving its `with` block, or exiting) gives it up."""

    def __init__(self, database: Path, descriptor: int) -> None:
        self.database = database
        self.path = lock_path(database)
        self._descriptor: int | None = descriptor

    @property
    def held(self) -> bool:
        return self._descriptor is not None

    def release(self) -> None:
        """Empties the lock file and releases the lock; safe to call twice."""
        descriptor, self._descriptor = self._descriptor, None
        if descriptor is None:
            return
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(descriptor, 0)
        finally:
            os.close(descriptor)  # closing the last descriptor releases the flock

    def __enter__(self) -> DatabaseLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _command_line() -> str:
    command = shlex.join(getattr(sys, "orig_argv", sys.argv))
    return command if len(command) <= 300 else command[:297] + "..."


def database_lock_try(database: Path, purpose: str) -> DatabaseLock:
    """Takes the lock of the database at `database` at once, or raises DatabaseInUse naming the holder.

    Creates the database's folder (0700) and the lock file (0600) when missing; a folder that
    cannot be written raises DatabaseNotWritable.
    """
    path = lock_path(database)
    try:
        private_folder_create(path.parent)
        descriptor = os.open(
            path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), 0o600
        )
    except OSError as exc:
        failure = database_failure(database, exc, outcome="Nothing was changed")  # a read-only folder, a full disk
        raise failure or StorageError(
            f"Cannot open the lock file {path}: {exc.strerror}.", "Nothing was changed."
        ) from None
    for attempt in range(_NAMELESS_TRIES):
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(descriptor)
                raise StorageError(f"Cannot lock {path}: {exc.strerror}.", "Nothing was changed.") from None
            named = lock_holder_read(path)
            if named is not None or attempt == _NAMELESS_TRIES - 1:
                os.close(descriptor)
                raise DatabaseInUse(database, named) from None
            # A holder that names no one is writing its name, or releasing: try again shortly.
            time.sleep(0.01)
    holder = {"pid": os.getpid(), "purpose": purpose, "command": _command_line(), "since": int(time.time())}
    with contextlib.suppress(OSError):  # the pid is for messages only; the flock is the lock
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, (json.dumps(holder) + "\n").encode(), 0)
    return DatabaseLock(database, descriptor)


@contextlib.contextmanager
def database_lock(database: Path | None, purpose: str = "") -> Iterator[DatabaseLock | None]:
    """Holds the database's lock for the `with` block, or raises DatabaseInUse at once; None for memory."""
    if database is None:
        yield None
        return
    with database_lock_try(database, purpose) as lock:
        yield lock


async def database_lock_wait(
    database: Path | None,
    purpose: str,
    *,
    wait: float = UPGRADE_WAIT,
    notify: Callable[[str], None] | None = None,
) -> DatabaseLock | None:
    """Takes the database's lock, waiting up to `wait` seconds while an upgrade holds it; None for memory.

    An upgrade is short and its end is what the caller wants, so it is waited for, saying so
    once through `notify`; a running engine is not: DatabaseInUse is raised at once.
    """
    if database is None:
        return None
    deadline = time.monotonic() + wait
    waiting = False
    while True:
        try:
            return database_lock_try(database, purpose)
        except DatabaseInUse as exc:
            upgrading = exc.holder is not None and exc.holder.purpose == UPGRADE
            if not upgrading:
                raise
            if time.monotonic() >= deadline:
                raise DatabaseInUse(
                    database,
                    exc.holder,
                    f"Waited {wait:g} s for that upgrade to finish; run this command again once it has.",
                ) from None
            if not waiting and notify is not None:
                assert exc.holder is not None
                notify(f"Waiting up to {wait:g} s for {exc.holder.describe()} to finish upgrading {database}")
            waiting = True
        await asyncio.sleep(_POLL)
