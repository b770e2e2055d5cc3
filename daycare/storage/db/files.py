"""The files of one database on disk: its companions, their permissions, and durable renames.

A SQLite database is more than its file: `<name>-wal` holds committed changes not yet copied
into it, `<name>-shm` indexes that log, and `<name>-journal` (rollback mode) holds what an
interrupted transaction must undo. Daycare adds `<name>.bak-<time>` (backups) and
`<name>.before-restore-<time>` (a file `daycare restore` moved aside). All of them hold private
conversations, so they are readable by their owner only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("daycare.storage")

COMPANIONS = ("-wal", "-shm", "-journal")  # SQLite pairs these with the database by name
COPY_INFIXES = (".bak-", ".before-restore-")  # Daycare's copies of the database, named after it


def companion(path: Path, suffix: str) -> Path:
    """`<name><suffix>` beside `path`, e.g. the -wal of a database."""
    return path.with_name(path.name + suffix)


def regular_file(path: Path) -> bool:
    """Whether `path` is a regular file itself (a symlink is not followed)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def database_files(path: Path) -> list[Path]:
    """The database, its companions and Daycare's copies of it that exist, as regular files."""
    candidates = [path, *(companion(path, suffix) for suffix in COMPANIONS)]
    try:
        names = sorted(os.listdir(path.parent))
    except OSError:
        names = []
    candidates += [
        path.parent / name for name in names if any(name.startswith(path.name + infix) for infix in COPY_INFIXES)
    ]
    return [candidate for candidate in candidates if regular_file(candidate)]


def private_modes_ensure(path: Path, *, change: bool = True) -> list[Path]:
    """Removes group and other permissions from the database's files, and logs what it did in one line.

    0644 and 0666 become 0600. With `change` False (read-only inspection) nothing is changed and
    the line only names the files. Returns the files that were readable by others.
    """
    shared: list[tuple[Path, int]] = []
    for file in database_files(path):
        with contextlib.suppress(FileNotFoundError):  # SQLite removes -wal and -shm when the last connection closes
            mode = stat.S_IMODE(os.lstat(file).st_mode)
            if mode & 0o077:
                shared.append((file, mode))
    if not shared:
        return []
    described = ", ".join(f"{file.name} ({mode:04o})" for file, mode in shared)
    if not change:
        log.warning(
            "In %s, other users can access %s; daycare upgrade or start makes them private (0600)",
            path.parent,
            described,
        )
        return [file for file, _ in shared]
    refused: list[str] = []
    for file, mode in shared:
        try:
            os.chmod(file, mode & 0o700)
        except FileNotFoundError:
            pass
        except OSError as exc:
            refused.append(f"{file.name} ({exc.strerror})")
    line = f"In {path.parent}, made private (owner only, 0600): {described}"
    if refused:
        line += f"; could not change {', '.join(refused)}"
    log.warning("%s", line)
    return [file for file, _ in shared]


def file_sync(path: Path) -> None:
    """Flushes a file's content to the disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def folder_sync(folder: Path) -> None:
    """Flushes a folder's entries (a rename in it) to the disk."""
    descriptor = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def durable_rename(source: Path, target: Path) -> None:
    """Renames `source` to `target` in one folder, then syncs the folder so the new name survives a power cut."""
    os.rename(source, target)
    folder_sync(target.parent)
