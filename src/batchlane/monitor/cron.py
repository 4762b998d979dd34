"""Schedule expressions: when a monitoring schedule fires (docs/monitoring-schedules.md, "Schedule expressions").

``parse_expression(text)`` accepts, and ``Expression.next_after(t)`` answers the first firing time after ``t``:

* SageMaker's ``cron(Minutes Hours Day-of-month Month Day-of-week Year)`` (six fields, EventBridge syntax: ``?``
  for "no specific value", day-of-week ``1``-``7`` = ``SUN``-``SAT``, ``L``, ``W``, ``#``), e.g.
  ``cron(0 * ? * * *)`` (hourly, what ``CronExpressionGenerator.hourly()`` writes);
* ``NOW``: one run as soon as the scheduler sees the schedule (SageMaker's one-time schedule);
* ``rate(N minute|minutes|hour|hours|day|days)`` as EventBridge writes it, plus ``rate(N second|seconds)``, a
  batchlane extension for tests and demos;
* standard five-field cron ``M H DoM Mon DoW`` (day-of-week ``0``-``7``, ``0`` and ``7`` = Sunday) and croniter's
  ``@hourly``/``@daily`` aliases.

Times are aware UTC datetimes. The calendar arithmetic is croniter's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from batchlane.errors import ValidationError

FIELD = "ScheduleExpression"
_RATE = re.compile(r"rate\(\s*(\d+)\s+(second|minute|hour|day)s?\s*\)", re.IGNORECASE)
_CRON = re.compile(r"cron\((.*)\)", re.IGNORECASE | re.DOTALL)
_RATE_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class Expression:
    """A parsed schedule expression. ``text`` is what the user wrote; ``kind`` is ``cron``, ``rate`` or ``now``."""

    text: str
    kind: str
    cron: str | None = None  # croniter syntax (seven fields for SageMaker cron, five for standard cron)
    every_s: int | None = None

    def next_after(self, after: datetime, *, anchor: datetime | None = None) -> datetime | None:
        """The first firing time strictly after ``after``; ``None`` when it never fires again (``NOW`` once run).

        A ``rate`` counts whole periods from ``anchor`` (the schedule's creation time; default ``after``)."""
        after = after.astimezone(UTC)
        if self.kind == "now":
            return None
        if self.kind == "rate":
            assert self.every_s is not None
            start = (anchor or after).astimezone(UTC)
            periods = max(0, int((after - start).total_seconds() // self.every_s) + 1)
            return start + timedelta(seconds=self.every_s * periods)
        from croniter import CroniterBadDateError, croniter

        try:
            return croniter(self.cron, after).get_next(datetime).astimezone(UTC)
        except CroniterBadDateError:  # e.g. a Year field wholly in the past
            return None

    def first(self, now: datetime) -> datetime | None:
        """When a schedule created (or restarted) at ``now`` first fires: ``NOW`` fires at once."""
        return now.astimezone(UTC) if self.kind == "now" else self.next_after(now, anchor=now)


def parse_expression(text: str, *, field: str = FIELD) -> Expression:
    """``text`` parsed (see the module docstring); a ``ValidationError`` naming ``field`` and the bad part if not."""
    if not isinstance(text, str) or not text.strip():
        raise ValidationError(f"{field} must be a non-empty string", field=field)
    stripped = text.strip()
    if stripped.upper() == "NOW":
        return Expression(stripped, "now")
    if match := _RATE.fullmatch(stripped):
        count = int(match.group(1))
        if count < 1:
            raise ValidationError(f"{field} {text!r}: the rate must be at least 1", field=field)
        return Expression(stripped, "rate", every_s=count * _RATE_UNITS[match.group(2).lower()])
    if stripped.lower().startswith("rate("):
        raise ValidationError(f"{field} {text!r} is not rate(N seconds|minutes|hours|days)", field=field)
    if match := _CRON.fullmatch(stripped):
        fields = match.group(1).split()
        if len(fields) != 6:
            raise ValidationError(
                f"{field} {text!r}: cron(...) takes 6 fields (Minutes Hours Day-of-month Month Day-of-week "
                f"Year), got {len(fields)}",
                field=field,
            )
        minute, hour, dom, month, dow, year = (part.replace("?", "*") for part in fields)
        cron = " ".join([minute, hour, dom, month, _aws_day_of_week(dow, text, field), "0", year])
    else:
        fields = stripped.split()
        if len(fields) == 5 or (len(fields) == 1 and stripped.startswith("@")):
            cron = stripped
        else:
            raise ValidationError(
                f"{field} {text!r} is not cron(M H DoM Mon DoW Y), rate(N unit), NOW or a five-field cron "
                "expression",
                field=field,
            )
    _check_cron(cron, text, field)
    return Expression(stripped, "cron", cron=cron)


def _aws_day_of_week(part: str, text: str, field: str) -> str:
    """EventBridge numbers days 1-7 from Sunday; croniter 0-6. Shift each day number (not ``#n``, not a step)."""

    def shift(token: str) -> str:
        base, hash_, nth = token.partition("#")
        base, slash, step = base.partition("/")

        def minus_one(match: re.Match[str]) -> str:
            day = int(match.group())
            if not 1 <= day <= 7:
                raise ValidationError(
                    f"{field} {text!r}: day-of-week {day} is outside 1-7 (SUN-SAT)", field=field
                )
            return str(day - 1)

        return re.sub(r"\d+", minus_one, base) + slash + step + hash_ + nth

    return ",".join(shift(token) for token in part.split(","))


def _check_cron(cron: str, text: str, field: str) -> None:
    from croniter import croniter

    if not croniter.is_valid(cron):
        raise ValidationError(f"{field} {text!r} is not a valid cron expression", field=field)
