"""Schedule expressions: SageMaker cron(...), rate(...), NOW and five-field cron, as a table."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from batchlane.errors import ValidationError
from batchlane.monitor.cron import parse_expression

T0 = datetime(2026, 12, 6, 21, 17, 30, tzinfo=UTC)  # a Sunday


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("cron(0 * ? * * *)", T0, at(2026, 12, 6, 22, 0)),  # CronExpressionGenerator.hourly()
        ("cron(0 0 ? * * *)", T0, at(2026, 12, 7, 0, 0)),  # daily()
        ("cron(0 0/6 ? * * *)", T0, at(2026, 12, 7, 0, 0)),  # daily_every_x_hours(6)
        ("cron(15 10 ? * 2 *)", T0, at(2026, 12, 7, 10, 15)),  # 2 = MON in EventBridge
        ("cron(15 10 ? * MON-FRI *)", T0, at(2026, 12, 7, 10, 15)),
        ("cron(0 12 ? * 1 *)", T0, at(2026, 12, 13, 12, 0)),  # 1 = SUN; today's noon has passed
        ("cron(0 8 ? * 6#3 *)", T0, at(2026, 12, 18, 8, 0)),  # the third Friday
        ("cron(0 0 L * ? *)", T0, at(2026, 12, 31, 0, 0)),
        ("cron(0 0 1 1 ? 2028)", T0, at(2028, 1, 1, 0, 0)),
        ("cron(0 0 1 1 ? 2020)", T0, None),  # a year in the past never fires
        ("*/15 * * * *", T0, at(2026, 12, 6, 21, 30)),
        ("0 9 * * 1", T0, at(2026, 12, 7, 9, 0)),  # standard cron: 1 = Monday
        ("@daily", T0, at(2026, 12, 7, 0, 0)),
        ("rate(5 minutes)", T0, at(2026, 12, 6, 21, 22, 30)),
        ("rate(1 hour)", T0, at(2026, 12, 6, 22, 17, 30)),
        ("rate(2 seconds)", T0, at(2026, 12, 6, 21, 17, 32)),
        ("NOW", T0, None),
    ],
)
def test_next_firing(expression: str, after: datetime, expected: datetime | None) -> None:
    assert parse_expression(expression).next_after(after) == expected


def test_rate_counts_periods_from_the_anchor() -> None:
    every_2s = parse_expression("rate(2 seconds)")
    assert every_2s.next_after(at(2026, 1, 1, 0, 0, 5), anchor=at(2026, 1, 1)) == at(2026, 1, 1, 0, 0, 6)


def test_now_fires_once_at_creation() -> None:
    assert parse_expression("now").first(T0) == T0
    assert parse_expression("cron(0 * ? * * *)").first(T0) == at(2026, 12, 6, 22, 0)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "non-empty"),
        ("cron(0 * ? * *)", "takes 6 fields"),
        ("cron(0 * ? * 9 *)", "day-of-week 9"),
        ("cron(61 * ? * * *)", "not a valid cron"),
        ("rate(0 minutes)", "at least 1"),
        ("rate(5 fortnights)", "rate(N seconds"),
        ("every hour", "five-field cron"),
    ],
)
def test_bad_expressions_name_the_field(expression: str, message: str) -> None:
    with pytest.raises(ValidationError, match="ScheduleExpression") as info:
        parse_expression(expression)
    assert message in str(info.value)
