"""Reading the pre-SQLite data files the import steps bring in, the way the legacy code read them.

Values follow JavaScript's rules where the legacy readers relied on them (a number is never a
boolean, `??` treats null like a missing key, truthiness). A file that cannot be read or
parsed is reported through `StepContext.skip` by the caller and left out.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from daycare.storage.clock import now_ms

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class FileBroken(Exception):
    """A legacy file that cannot be read or parsed; the message says why."""


def text_read(path: Path) -> str:
    """The file as text; undecodable bytes become U+FFFD, as Node's utf8 reader did."""
    try:
        return path.read_bytes().decode("utf-8-sig", errors="replace")
    except OSError as exc:
        raise FileBroken(f"cannot read {path.name} ({exc.strerror})") from None


def _constant_refused(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


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
    """Parses JSON as JS `JSON.parse` accepts it (no NaN or Infinity); raises FileBroken."""
    try:
        value = json.loads(text, parse_constant=_constant_refused)
    except (ValueError, RecursionError) as exc:
        raise FileBroken(f"not valid JSON ({exc})") from None
    return _surrogates_replaced(value) if _SURROGATE_ESCAPE.search(text) else value


def json_file_read(path: Path) -> Any:
    """The parsed content of a JSON file; raises FileBroken naming the file."""
    text = text_read(path)
    try:
        return json_parse(text)
    except FileBroken as exc:
        raise FileBroken(f"{path.name} is {exc}") from None


def jsonl_lines(path: Path) -> Iterator[tuple[int, str]]:
    """The non-blank lines of a JSON-lines file, trimmed, with their 1-based line numbers."""
    for number, line in enumerate(text_read(path).split("\n"), start=1):
        if line.strip():
            yield number, line.strip()


def folder_entries(folder: Path, *, folders: bool) -> list[Path]:
    """The sub-folders (or the files) of `folder`, sorted by name like Node's readdir."""
    return sorted(
        (entry for entry in folder.iterdir() if (entry.is_dir() if folders else entry.is_file())),
        key=lambda entry: entry.name.encode("utf-8", "surrogateescape"),
    )


def is_number(value: Any) -> bool:
    """True for a finite JSON number (JS `typeof value === "number" && Number.isFinite(value)`)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def string_or_none(value: Any) -> str | None:
    """A string trimmed, or None when it is not a string or is blank."""
    if not isinstance(value, str):
        return None
    trimmed = value.strip()
    return trimmed or None


def number_or_none(value: Any) -> int | None:
    """A finite number rounded down, else None."""
    return math.floor(value) if is_number(value) else None


def number_or_zero(value: Any) -> int:
    """A finite number rounded down, else 0."""
    return math.floor(value) if is_number(value) else 0


def number_or_now(value: Any) -> int:
    """A finite, non-negative number rounded down, else the clock."""
    return math.floor(value) if is_number(value) and value >= 0 else now_ms()


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
