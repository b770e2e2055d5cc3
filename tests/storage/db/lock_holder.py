"""A process that holds a database's lock, for the lock tests and the command-line tests."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

# Holds the lock of argv[1] for argv[2] (a purpose), says so on stdout, and keeps it until stdin closes.
HOLDER = """
import sys
from pathlib import Path
from daycare.storage.db.lock import database_lock_try
lock = database_lock_try(Path(sys.argv[1]), sys.argv[2])
print("held", flush=True)
sys.stdin.read()
lock.release()
"""


class Holder:
    """A process holding a database's lock."""

    def __init__(self, database: Path, purpose: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(database), purpose],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline() == "held\n"

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
def lock_held(database: Path, purpose: str) -> Iterator[Holder]:
    """A process holding the lock of `database` for the block (killed at its end if still running)."""
    holder = Holder(database, purpose)
    try:
        yield holder
    finally:
        if holder.process.poll() is None:
            holder.kill()
