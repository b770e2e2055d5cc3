"""Reading JSON columns that may hold anything: the legacy parse fallbacks in one place.

Like the legacy repositories, each falls back to a default instead of failing when a stored
JSON value is broken; these helpers give those defaults.
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

from daycare.storage.json_values import FrozenList, frozen, json_decode

T = TypeVar("T")


def json_decode_or(text: str | None, fallback: T) -> Any | T:
    """The frozen value of `text`, or `fallback` when it is NULL or not valid JSON (a BLOB, text that is
    not UTF-8 and JSON nested too deeply to read included)."""
    if text is None:
        return fallback
    try:
        return json_decode(text)
    except (ValueError, TypeError, RecursionError):
        return fallback


def strings_only(value: Any) -> FrozenList:
    """The string entries of a list, in order; anything but a list gives []."""
    if not isinstance(value, list):
        return FrozenList()
    return cast(FrozenList, frozen([entry for entry in value if isinstance(entry, str)]))


def string_list_decode(text: str | None) -> FrozenList:
    """A JSON array of strings; other entries are dropped, and anything but an array reads as []."""
    return strings_only(json_decode_or(text, None))
