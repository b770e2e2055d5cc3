"""Runs `daycare start` as a real process until its startup line, then stops it with SIGTERM."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

import pytest

STARTED = "daycare.engine: engine started on"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")  # what the log format puts first


class LineReader:
    """Collects a process's stderr line by line on a thread, so waiting for a line can time out."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        self.process = process
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(process.stderr,), daemon=True)
        self._thread.start()

    def _read(self, stream: TextIO) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def until(self, prefix: str, timeout: float) -> str:
        """The first line starting with `prefix` after its timestamp, returned without the timestamp; fails with
        what was read if none comes within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if TIMESTAMP.sub("", line).startswith(prefix):
                return TIMESTAMP.sub("", line)
        pytest.fail(f"no line starting with {prefix!r} on stderr (exit code {self.process.poll()}):\n{self.text()}")

    def text(self) -> str:
        """Everything read so far; after the process ended, all it wrote."""
        if self.process.poll() is not None:
            self._thread.join(timeout=10)
        while not self._queue.empty():
            line = self._queue.get()
            if line is not None:
                self.lines.append(line)
        return "".join(self.lines)


def engine_start_stop(command: Sequence[str | Path], *, cwd: Path, env: Mapping[str, str], timeout: float = 60) -> str:
    """Runs `command` (a `daycare start ...`) until it logs its startup line, sends SIGTERM, and checks
    that it exits 0 without a traceback; returns the startup line."""
    process = subprocess.Popen(
        [str(part) for part in command],
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr = LineReader(process)
    try:
        started = stderr.until(STARTED, timeout=timeout)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr.text()
    assert "Traceback" not in stderr.text()
    return started
