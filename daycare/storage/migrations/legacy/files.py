"""Reading the pre-SQLite data files the import steps bring in, the way the legacy code read them,
and only inside the data folder.

Values follow JavaScript's rules where the legacy readers relied on them (a number is never a
boolean, `??` treats null like a missing key, truthiness). A problem of the legacy data itself
raises `LegacyDataError`: a file that is missing, unreadable, larger than its cap, not a regular
file, or whose real path leaves the data folder; a name that is not UTF-8; text that does not
parse; a number SQLite cannot store. The caller skips that entry with a warning
(`StepContext.skip`). A database error is never a `LegacyDataError`: it fails the step.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from daycare.storage.clock import now_ms

MB = 1024 * 1024
FILE_MAX_BYTES = 16 * MB  # a JSON or Markdown file read whole; the largest legacy ones are a few KB
LINE_MAX_BYTES = 16 * MB  # one line of a JSON-lines file; the file itself is streamed and has no cap
INTEGER_MIN, INTEGER_MAX = -(2**63), 2**63 - 1  # what an SQLite INTEGER holds

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_BOM = b"\xef\xbb\xbf"
# Never follow a FIFO's open into a wait for a writer, never take a terminal, never follow a
# link swapped in after the real path was checked.
_OPEN_FLAGS = os.O_RDONLY
for _flag in ("O_NONBLOCK", "O_NOCTTY", "O_CLOEXEC", "O_NOFOLLOW"):
    _OPEN_FLAGS |= getattr(os, _flag, 0)
_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISLNK, "a symbolic link"),
)


class LegacyDataError(Exception):
    """A problem of the legacy data, not of the database; the message says what and why."""


def path_text(path: Path | str) -> str:
    """A path for a message; bytes of a name that are not UTF-8 are shown as \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def name_valid(name: str) -> bool:
    """True when a file name (as Python decoded it) is valid UTF-8, so SQLite can store it."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def size_text(size: int) -> str:
    """A byte count for a message: whole MB from 1 MB up, else bytes."""
    return f"{size // MB} MB" if size >= MB else f"{size} bytes"


def kind_text(mode: int) -> str:
    """What a file mode says the entry is, for a message ("a FIFO", "a folder")."""
    return next((text for test, text in _KINDS if test(mode)), "not a regular file")


@dataclass(frozen=True)
class LegacyFolder:
    """The folder holding the database file: the only place the imports read.

    Only regular files whose real path (symbolic links resolved) is inside it are opened, and
    only folders inside it are listed. Paths in messages are the ones the steps built.
    """

    path: Path
    real: Path

    @classmethod
    def of(cls, path: Path) -> LegacyFolder:
        return cls(path, Path(os.path.realpath(path)))

    def real_path(self, path: Path) -> Path:
        """The real path of `path`; raises LegacyDataError when it leads outside the folder."""
        real = Path(os.path.realpath(path))
        if real != self.real and not real.is_relative_to(self.real):
            raise LegacyDataError(f"{path_text(path.name)} leads outside the data folder, to {path_text(real)}")
        return real

    def stat(self, path: Path) -> os.stat_result | None:
        """What `path` leads to (inside the folder), or None when nothing is there."""
        real = self.real_path(path)
        try:
            return os.stat(real)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise LegacyDataError(f"cannot read {path_text(path.name)} ({exc.strerror})") from None

    def folder_found(self, path: Path) -> bool:
        """True when `path` is a folder inside the data folder, False when nothing is there; else LegacyDataError."""
        found = self.stat(path)
        if found is not None and not stat.S_ISDIR(found.st_mode):
            raise LegacyDataError(f"{path_text(path.name)} is {kind_text(found.st_mode)}, not a folder")
        return found is not None

    def file_open(self, path: Path) -> IO[bytes]:
        """`path` opened for reading; raises LegacyDataError unless it is a regular file inside the folder."""
        real = self.real_path(path)
        name = path_text(path.name)
        try:
            # Looked at before opening: opening a device or a FIFO can have effects of its own.
            mode = os.stat(real).st_mode
            if not stat.S_ISREG(mode):
                raise LegacyDataError(f"{name} is {kind_text(mode)}, not a regular file")
            fd = os.open(real, _OPEN_FLAGS)
        except OSError as exc:
            raise LegacyDataError(f"cannot read {name} ({exc.strerror})") from None
        try:
            mode = os.fstat(fd).st_mode  # what was opened, in case the file was swapped since
            if not stat.S_ISREG(mode):
                raise LegacyDataError(f"{name} is {kind_text(mode)}, not a regular file")
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    def file_find(self, path: Path) -> IO[bytes] | None:
        """Like `file_open`, but None when nothing is at `path` (an optional file)."""
        return None if self.stat(path) is None else self.file_open(path)

    def text_read(self, path: Path) -> str:
        """The file as text, at most FILE_MAX_BYTES; undecodable bytes become U+FFFD, as Node's utf8 reader did."""
        with self.file_open(path) as stream:
            try:
                data = stream.read(FILE_MAX_BYTES + 1)
            except OSError as exc:
                raise LegacyDataError(f"cannot read {path_text(path.name)} ({exc.strerror})") from None
        if len(data) > FILE_MAX_BYTES:
            raise LegacyDataError(
                f"{path_text(path.name)} is larger than {size_text(FILE_MAX_BYTES)}, the cap for a legacy file"
            )
        return data.decode("utf-8-sig", errors="replace")

    def json_read(self, path: Path) -> Any:
        """The parsed content of a JSON file; raises LegacyDataError naming the file."""
        text = self.text_read(path)
        try:
            return json_parse(text)
        except LegacyDataError as exc:
            raise LegacyDataError(f"{path_text(path.name)} is {exc}") from None

    def entries_list(
        self,
        folder: Path,
        skip: Callable[[Path, str], None],
        *,
        folders: bool,
        name_match: Callable[[str], bool] = lambda _: True,
    ) -> list[Path]:
        """The sub-folders (or the files whose name matches) of `folder`, sorted by name like Node's readdir.

        Nothing when `folder` is absent. Each entry that is not what is expected (a link leading
        outside the folder, a FIFO, a device, a socket, a folder where a file is expected, a name
        that is not UTF-8) goes to `skip`, as does `folder` itself when it cannot be listed.
        Regular files among sub-folders are not data and are passed over.
        """
        try:
            if not self.folder_found(folder):
                return []
            try:
                names = os.listdir(self.real_path(folder))
            except OSError as exc:
                raise LegacyDataError(f"cannot read {path_text(folder.name)} ({exc.strerror})") from None
        except LegacyDataError as exc:
            skip(folder, str(exc))
            return []
        chosen = []
        for name in sorted(names, key=lambda name: name.encode("utf-8", "surrogateescape")):
            if not folders and not name_match(name):
                continue
            entry = folder / name
            try:
                found = self.stat(entry)
                if found is None or (folders and stat.S_ISREG(found.st_mode)):
                    continue
                expected = "a folder" if folders else "a regular file"
                if not (stat.S_ISDIR if folders else stat.S_ISREG)(found.st_mode):
                    raise LegacyDataError(f"{path_text(name)} is {kind_text(found.st_mode)}, not {expected}")
                if not name_valid(name):
                    raise LegacyDataError(f"its name {path_text(name)!r} is not valid UTF-8")
            except LegacyDataError as exc:
                skip(entry, str(exc))
                continue
            chosen.append(entry)
        return chosen


def jsonl_lines(stream: IO[bytes], name: str) -> Iterator[tuple[int, str | LegacyDataError]]:
    """The non-blank lines of a JSON-lines file, trimmed, with their 1-based numbers, read one at a time.

    A line longer than LINE_MAX_BYTES comes as a LegacyDataError saying so, and is read past
    without being kept. A read error raises LegacyDataError naming the file (`name`).
    """
    number = 0
    while raw := _line_read(stream, LINE_MAX_BYTES + 1, name):
        number += 1
        if len(raw) > LINE_MAX_BYTES and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):
                raw = _line_read(stream, MB, name)
            yield number, LegacyDataError(f"longer than {size_text(LINE_MAX_BYTES)}, the cap for a legacy line")
            continue
        if number == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        line = raw.decode("utf-8", errors="replace").strip()
        if line:
            yield number, line


def _line_read(stream: IO[bytes], limit: int, name: str) -> bytes:
    try:
        return stream.readline(limit)
    except OSError as exc:
        raise LegacyDataError(f"cannot read {name} to its end ({exc.strerror})") from None


def _constant_refused(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _float_finite(text: str) -> float:
    # JS reads 1e400 as Infinity and writes it back as null; refusing it keeps Infinity out of the database.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text} is too large")
    return value


_DECODER = json.JSONDecoder(parse_constant=_constant_refused, parse_float=_float_finite)


def _surrogates_replaced(value: Any) -> Any:
    """Turns lone UTF-16 surrogates (valid in JSON, not in UTF-8) into U+FFFD, as Node did on write."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, list):
        return [_surrogates_replaced(item) for item in value]
    if isinstance(value, dict):
        return {_surrogates_replaced(key): _surrogates_replaced(item) for key, item in value.items()}
    return value


def json_parse(text: str) -> Any:
    """Parses JSON as JS `JSON.parse` accepts it (no NaN or Infinity); raises LegacyDataError."""
    try:
        value = _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        raise LegacyDataError(f"not valid JSON ({exc})") from None
    return _surrogates_replaced(value) if _SURROGATE_ESCAPE.search(text) else value


def is_number(value: Any) -> bool:
    """True for a finite JSON number (JS `typeof value === "number" && Number.isFinite(value)`)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def integer_check(value: int | float) -> int | float:
    """`value` when an SQLite INTEGER column can hold it; raises LegacyDataError when it is too large."""
    if not INTEGER_MIN <= value <= INTEGER_MAX:
        raise LegacyDataError(f"the number {value:.6g} is too large for SQLite")
    return value


def string_or_none(value: Any) -> str | None:
    """A string trimmed, or None when it is not a string or is blank."""
    if not isinstance(value, str):
        return None
    trimmed = value.strip()
    return trimmed or None


def number_or_none(value: Any) -> int | None:
    """A finite number rounded down, else None; raises LegacyDataError when SQLite cannot hold it."""
    return math.floor(integer_check(value)) if is_number(value) else None


def number_or_zero(value: Any) -> int:
    """A finite number rounded down, else 0; raises LegacyDataError when SQLite cannot hold it."""
    return math.floor(integer_check(value)) if is_number(value) else 0


def number_or_now(value: Any) -> int:
    """A finite, non-negative number rounded down, else the clock; raises LegacyDataError when too large."""
    return math.floor(integer_check(value)) if is_number(value) and value >= 0 else now_ms()


def js_truthy(value: Any) -> bool:
    """JavaScript truthiness for JSON values: objects and arrays are true even when empty."""
    if isinstance(value, dict | list):
        return True
    if isinstance(value, float) and math.isnan(value):
        return False
    return bool(value)


def coalesce(value: Any, fallback: Any) -> Any:
    """JS `value ?? fallback` for a parsed JSON value (None stands for both null and missing)."""
    return fallback if value is None else value


def iso_ms(value: Any) -> int | None:
    """An ISO-8601 date string as epoch milliseconds (JS `Date.parse`), or None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC) if "T" not in value else parsed.astimezone()
    return (parsed - _EPOCH) // timedelta(milliseconds=1)
