"""Cron schedules: five fields in local time, evaluated by croniter, with the legacy rules.

The grammar is the legacy one: each field is `*`, `*/n`, a number, a range `a-b`, or a
comma list of numbers and ranges; weekday is 0-6 (0 is Sunday). croniter checks the value
ranges and finds the next run. As in the legacy code, a schedule that restricts both the day
of month and the weekday needs both to match (croniter's `day_or=False`), and the next run is
searched from the next whole minute, so a schedule never fires twice in one minute.
"""

from __future__ import annotations

import re
from datetime import datetime

from croniter import CroniterError, croniter

FIELD_NAMES = ("minute", "hour", "day", "month", "weekday")
_FIELD = re.compile(r"\*(?:/\d+)?|\d+(?:-\d+)?(?:,\d+(?:-\d+)?)*")
_RANGE = re.compile(r"(\d+)-(\d+)")
_HELP = "Use five fields (minute hour day month weekday), each *, */n, a number, a range a-b, or a comma list."


def _invalid(expression: str, reason: str) -> ValueError:
    return ValueError(f"Invalid cron schedule: {expression!r}: {reason}. {_HELP}")


def cron_schedule_check(expression: str) -> str:
    """The trimmed schedule; raises ValueError saying what is wrong with it, or that it never matches."""
    text = _schedule_parse(expression)
    if _next_run(text, datetime.now()) is None:
        raise _invalid(expression, "no date ever matches it")
    return text


def _schedule_parse(expression: str) -> str:
    text = expression.strip() if isinstance(expression, str) else ""
    fields = text.split()
    if len(fields) != len(FIELD_NAMES):
        raise _invalid(expression, f"expected 5 fields, got {len(fields)}")
    for name, field in zip(FIELD_NAMES, fields, strict=True):
        if not _FIELD.fullmatch(field):
            raise _invalid(expression, f"the {name} field {field!r} is not valid")
        for low, high in _RANGE.findall(field):
            if int(low) > int(high):
                raise _invalid(expression, f"the {name} range {low}-{high} runs backwards")
        if name == "weekday" and not field.startswith("*") and any(int(n) > 6 for n in re.findall(r"\d+", field)):
            raise _invalid(expression, "weekday values are 0-6 (0 is Sunday)")
    if not croniter.is_valid(text):
        raise _invalid(
            expression, "a value is out of range (minute 0-59, hour 0-23, day 1-31, month 1-12) or a step is 0"
        )
    return text


def cron_next_run(expression: str, after_ms: int) -> int | None:
    """The first matching minute (Unix ms) from the minute after `after_ms`, in local time.

    None for an invalid schedule or one that never matches.
    """
    try:
        text = _schedule_parse(expression)
    except ValueError:
        return None
    return _next_run(text, datetime.fromtimestamp(after_ms / 1000))


def _next_run(text: str, after: datetime) -> int | None:
    # croniter returns the first match strictly after its start: from the start of this minute,
    # that is the first match at or after the next whole minute.
    start = after.replace(second=0, microsecond=0)
    try:
        found: datetime = croniter(text, start, day_or=False).get_next(datetime)
    except (CroniterError, ValueError, OverflowError):
        return None
    return round(found.timestamp() * 1000)
