"""Checks of caller-supplied arguments that several repositories share."""

from __future__ import annotations

from typing import Any


def limit_check(limit: Any) -> int:
    """Returns `limit` if it is a non-negative int; raises ValueError otherwise (the bound LIMIT value)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"limit must be a non-negative integer, got {limit!r}")
    return limit
