"""Cron schedules: the legacy cronTimeGetNext.spec tests, and the behavior the parser specs pinned down
(which expressions are accepted, and which minutes they match), in local time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from daycare.engine.cron_expressions import cron_next_run, cron_schedule_check


def ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def next_local(expression: str, start: datetime) -> datetime:
    found = cron_next_run(expression, ms(start))
    assert found is not None, expression
    return datetime.fromtimestamp(found / 1000)


def test_returns_next_minute_for_every_minute_schedule() -> None:
    found = next_local("* * * * *", datetime(2024, 1, 15, 10, 30, 45))
    assert found == datetime(2024, 1, 15, 10, 31, 0)


def test_returns_next_matching_hour() -> None:
    assert next_local("0 12 * * *", datetime(2024, 1, 15, 10, 30)) == datetime(2024, 1, 15, 12, 0)


def test_returns_next_day_if_hour_passed() -> None:
    assert next_local("0 9 * * *", datetime(2024, 1, 15, 14, 30)) == datetime(2024, 1, 16, 9, 0)


def test_handles_weekday_constraints() -> None:
    found = next_local("0 9 * * 1", datetime(2024, 1, 19, 10, 0))  # a Friday
    assert found == datetime(2024, 1, 22, 9, 0) and found.isoweekday() == 1


def test_handles_step_values() -> None:
    assert next_local("*/15 * * * *", datetime(2024, 1, 15, 10, 32)).minute == 45


def test_handles_specific_day_of_month() -> None:
    assert next_local("0 12 20 * *", datetime(2024, 1, 15, 10, 0)) == datetime(2024, 1, 20, 12, 0)


def test_handles_month_constraint() -> None:
    assert next_local("0 0 1 6 *", datetime(2024, 1, 15, 10, 0)) == datetime(2024, 6, 1, 0, 0)


def test_returns_null_for_invalid_expression() -> None:
    assert cron_next_run("invalid", ms(datetime(2024, 1, 15))) is None


def test_a_matching_minute_is_never_returned_for_the_same_minute() -> None:
    """The search starts at the next whole minute: a run at 10:30:00 does not fire again at 10:30."""
    assert next_local("30 10 * * *", datetime(2024, 1, 15, 10, 30, 0)) == datetime(2024, 1, 16, 10, 30)
    assert next_local("30 10 * * *", datetime(2024, 1, 15, 10, 29, 59)) == datetime(2024, 1, 15, 10, 30)


def test_day_of_month_and_weekday_must_both_match() -> None:
    """Legacy rule (unlike standard cron's OR): Friday the 13th, not every Friday and every 13th."""
    assert next_local("0 9 13 * 5", datetime(2024, 1, 1)) == datetime(2024, 9, 13, 9, 0)


def test_lists_and_ranges_match_exactly_their_minutes() -> None:
    start = datetime(2024, 1, 15, 10, 0)
    minutes = []
    current = start
    for _ in range(7):
        current = next_local("1-3,10,20-22 * * * *", current)
        minutes.append(current.minute)
    assert minutes == [1, 2, 3, 10, 20, 21, 22]
    assert [next_local("* 9-17 * * *", datetime(2024, 1, 15, h, 59)).hour for h in (8, 17)] == [9, 9]
    assert next_local("0,30 * * * *", datetime(2024, 1, 15, 10, 0)) == datetime(2024, 1, 15, 10, 30)


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("* * *", "expected 5 fields, got 3"),
        ("* * * * * *", "expected 5 fields, got 6"),
        ("60 * * * *", "out of range"),
        ("* 24 * * *", "out of range"),
        ("* * 32 * *", "out of range"),
        ("* * 0 * *", "out of range"),
        ("* * * 13 *", "out of range"),
        ("* * * 0 *", "out of range"),
        ("* * * * 7", "weekday values are 0-6"),
        ("invalid", "expected 5 fields, got 1"),
        ("*/0 * * * *", "a step is 0"),
        ("*/-1 * * * *", "the minute field '*/-1' is not valid"),
        ("*/abc * * * *", "the minute field '*/abc' is not valid"),
        ("abc * * * *", "the minute field 'abc' is not valid"),
        ("-1 * * * *", "the minute field '-1' is not valid"),
        ("10-5 * * * *", "the minute range 10-5 runs backwards"),
        ("0-60 * * * *", "out of range"),
        ("@daily * * * *", "the minute field '@daily' is not valid"),
        ("0 0 31 4 *", "no date ever matches it"),
    ],
)
def test_invalid_schedules_are_refused_with_the_reason(expression: str, reason: str) -> None:
    with pytest.raises(ValueError, match="Invalid cron schedule") as raised:
        cron_schedule_check(expression)
    assert reason in str(raised.value)
    assert cron_next_run(expression, ms(datetime(2024, 1, 15))) is None


def test_valid_schedules_come_back_trimmed() -> None:
    for expression in ("* * * * *", "30 9 * * *", "*/15 * * * *", "* 9-17 * * *", "0,30 * * * *", "0 9 * * 1"):
        assert cron_schedule_check(f"  {expression} ") == expression


@pytest.fixture
def new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("new_york")
def test_schedules_are_evaluated_in_local_time() -> None:
    start = datetime(2024, 1, 15, 12, 0, tzinfo=UTC)  # 07:00 in New York (UTC-5 in January)
    found = cron_next_run("0 9 * * *", int(start.timestamp() * 1000))
    assert found is not None
    assert datetime.fromtimestamp(found / 1000, UTC) == datetime(2024, 1, 15, 14, 0, tzinfo=UTC)
