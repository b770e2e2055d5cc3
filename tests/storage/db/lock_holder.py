"""A process that holds a database's lock (a file's, or a PostgreSQL schema's), for the lock and command-line tests."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

# Holds the lock of argv[1] (a file, or a postgres:// URL) for argv[2] (a purpose), says so on stdout, and keeps
# it until stdin closes. The PostgreSQL lock lives on a connection of an event loop, which waits for stdin in a thread.
HOLDER = """
import asyncio
import sys
from pathlib import Path
from daycare.storage.db.location import database_location
from daycare.storage.db.lock import database_lock_try, postgres_lock_try

async def postgres_hold(url, purpose):
    lock = await postgres_lock_try(database_location(url), purpose)
    print("held", lock.session, flush=True)
    await asyncio.to_thread(sys.stdin.read)
    await lock.aclose()

if "://" in sys.argv[1]:
    asyncio.run(postgres_hold(sys.argv[1], sys.argv[2]))
else:
    lock = database_lock_try(Path(sys.argv[1]), sys.argv[2])
    print("held", flush=True)
    sys.stdin.read()
    lock.release()
"""


class Holder:
    """A process holding a database's lock."""

    def __init__(self, database: Path | str, purpose: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(database), purpose],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        said = self.process.stdout.readline().split()
        assert said[:1] == ["held"], f"the holder did not take the lock (exit code {self.process.wait(timeout=30)})"
        self.session = int(said[1]) if len(said) > 1 else None  # PostgreSQL: the server process of its session

    @property
    def pid(self) -> int:
        return self.process.pid

    def release(self) -> None:
        """Lets the holder release the lock and exit."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        assert self.process.wait(timeout=30) == 0

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)


@contextlib.contextmanager
def lock_held(database: Path | str, purpose: str) -> Iterator[Holder]:
    """A process holding the lock of `database` (a file, or a postgres:// URL) for the block (killed at its end if
    still running)."""
    holder = Holder(database, purpose)
    try:
        yield holder
    finally:
        if holder.process.poll() is None:
            holder.kill()
