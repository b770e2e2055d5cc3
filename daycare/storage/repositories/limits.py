"""Page sizes and offsets: the legacy rules for caller numbers, and the strict check for bound LIMITs."""

from __future__ import annotations

import math
from typing import Any


def _number_check(value: float, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")


def limit_resolve(value: float | None) -> int | None:
    """None (no limit) for None or a non-finite number; otherwise floor(value), at least 1."""
    if value is None:
        return None
    _number_check(value, "limit")
    if not math.isfinite(value):
        return None
    return max(1, math.floor(value))


def offset_resolve(value: float | None) -> int:
    """0 for None or a non-finite number; otherwise floor(value), at least 0."""
    if value is None:
        return 0
    _number_check(value, "offset")
    if not math.isfinite(value):
        return 0
    return max(0, math.floor(value))


def limit_clamp(value: float, low: int, high: int) -> int:
    """floor(value) clamped to [low, high]; infinities clamp to the bounds, NaN is refused."""
    _number_check(value, "limit")
    if math.isnan(value):
        raise ValueError("limit must be a number, got nan")
    if math.isinf(value):
        return high if value > 0 else low
    return min(high, max(low, math.floor(value)))


def limit_check(limit: Any) -> int:
    """Returns `limit` if it is a non-negative int; raises ValueError otherwise (the bound LIMIT value)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"limit must be a non-negative integer, got {limit!r}")
    return limit
