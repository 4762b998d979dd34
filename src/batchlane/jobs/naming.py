"""How batchlane names a transform job when the user gives no name, in one place.

* ``timestamped_name(base)``: ``<base>-YYYY-MM-DD-HH-MM-SS-mmm`` in UTC, like the SageMaker SDK's ``name_from_base``
  (``batchlane transform`` without ``--name``, the demo);
* ``attempt_name(name, attempt)``: the name of a queue message's re-sent attempt ``k > 0``, ``<name>-r<k>``, the
  base shortened so the whole still fits SageMaker's 63 characters (docs/automation.md).

A queue message's own job name, derived from its content without a clock, is ``queue.message.job_name_for``.
Every result matches SageMaker's job-name pattern ``[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}`` for a base that does.
"""

from __future__ import annotations

from datetime import UTC, datetime

MAX_JOB_NAME = 63


def timestamped_name(base: str = "batchlane", *, now: datetime | None = None) -> str:
    """``<base>-YYYY-MM-DD-HH-MM-SS-mmm`` (UTC), the base cut so the whole fits ``MAX_JOB_NAME``."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    stamp = moment.strftime("%Y-%m-%d-%H-%M-%S-") + f"{moment.microsecond // 1000:03d}"
    return f"{base[: MAX_JOB_NAME - len(stamp) - 1].rstrip('-')}-{stamp}"


def attempt_name(name: str, attempt: int) -> str:
    """``name`` for attempt 0, else ``<name>-r<attempt>`` with ``name`` shortened to fit ``MAX_JOB_NAME``."""
    if attempt <= 0:
        return name
    suffix = f"-r{attempt}"
    return name[: MAX_JOB_NAME - len(suffix)].rstrip("-") + suffix
