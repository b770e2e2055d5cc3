"""File-system states for the diagnosis tests: an unwritable file or folder, a full disk."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def unwritable(path: Path) -> Iterator[str]:
    """Within the block this process cannot write `path`; yields how ("chmod" or "chattr +i").

    chmod stops everyone but root; as root the immutable attribute is used (chattr +i), and the
    test skips where the file system or the container does not allow it.
    """
    if os.geteuid() != 0:
        mode = stat.S_IMODE(path.stat().st_mode)
        path.chmod(mode & ~0o222)
        try:
            yield "chmod"
        finally:
            path.chmod(mode)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("running as root, and chattr +i is not available here")
    try:
        yield "chattr +i"
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


@contextlib.contextmanager
def full_disk(folder: Path, size_kb: int = 1200) -> Iterator[Path]:
    """Mounts a small tmpfs on `folder` (which must be empty) for the block; the caller fills it.

    Needs root (and a container that allows mounts); the test skips otherwise.
    """
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if os.geteuid() != 0 or mount is None or umount is None:
        pytest.skip("a full disk is simulated with a tmpfs mount, which needs root")
    folder.mkdir(exist_ok=True)
    if subprocess.run([mount, "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(folder)]).returncode != 0:
        pytest.skip("this container does not allow mounting a tmpfs")
    try:
        yield folder
    finally:
        subprocess.run([umount, str(folder)], check=True)


def disk_fill(folder: Path) -> None:
    """Writes a file into `folder` until its disk has no space left."""
    with open(folder / "filler", "wb", buffering=0) as filler:
        try:
            while True:
                filler.write(b"\0" * 4096)
        except OSError:
            pass
