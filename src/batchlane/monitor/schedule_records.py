"""The records of monitoring schedules: statuses, the ``Target`` an execution runs, and ``Schedule`` /
``Execution`` as stored by ``schedules.ScheduleStore`` (SQLite rows → typed records).

Statuses are SageMaker's: schedules ``Scheduled`` | ``Stopped`` | ``Failed``; executions ``Pending`` →
``InProgress`` → ``Completed`` | ``CompletedWithViolations`` | ``Failed``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from batchlane.errors import ValidationError
from batchlane.jobs.db import _dt

NAME_PATTERN = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")


class ScheduleStatus(StrEnum):
    SCHEDULED = "Scheduled"
    STOPPED = "Stopped"
    FAILED = "Failed"


class ExecutionStatus(StrEnum):
    PENDING = "Pending"
    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    COMPLETED_WITH_VIOLATIONS = "CompletedWithViolations"
    FAILED = "Failed"

    @property
    def done(self) -> bool:
        return self not in (ExecutionStatus.PENDING, ExecutionStatus.IN_PROGRESS)


@dataclass(frozen=True)
class Target:
    """What one execution runs: ``batchlane monitor run`` over ``data`` against ``baseline``, reports under
    ``output``; alerts to ``webhook`` / ``sns_topic`` on violations. ``image`` is the monitoring container's image
    (empty for CLI schedules); an image that is not batchlane's cannot run without a container runtime."""

    baseline: str
    data: tuple[str, ...]
    output: str
    threshold: float | None = None
    webhook: str | None = None
    sns_topic: str | None = None
    image: str = ""
    max_runtime_s: int = 3600
    environment: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "data": list(self.data)}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Target:
        return cls(**{**value, "data": tuple(value["data"])})


@dataclass(frozen=True)
class Schedule:
    name: str
    arn: str
    status: ScheduleStatus
    expression: str
    config: dict[str, Any]
    target: Target
    endpoint: str | None
    failure_reason: str | None
    creation_time: datetime
    last_modified_time: datetime
    next_run_time: datetime | None


@dataclass(frozen=True)
class Execution:
    name: str
    schedule: str
    arn: str
    status: ExecutionStatus
    failure_reason: str | None
    scheduled_time: datetime
    creation_time: datetime
    start_time: datetime | None
    end_time: datetime | None
    last_modified_time: datetime
    output_uri: str | None
    violations_uri: str | None
    summary_uri: str | None
    exit_code: int | None
    alert: str | None
    owner: str | None


def check_schedule_name(name: str, field: str = "MonitoringScheduleName") -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ValidationError(
            f"{field} {name!r} must be 1-63 letters, digits or hyphens, starting and ending with a letter or digit",
            field=field,
        )
    return name


def this_owner() -> str:
    """Who runs an execution: ``host:pid`` (an orphan sweep marks executions of dead pids on this host Failed)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_is_dead(owner: str | None) -> bool:
    if not owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's: only it can tell
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def schedule_from_row(row: sqlite3.Row) -> Schedule:
    return Schedule(
        name=row["name"],
        arn=row["arn"],
        status=ScheduleStatus(row["status"]),
        expression=row["expression"],
        config=json.loads(row["config"]),
        target=Target.from_json(json.loads(row["target"])),
        endpoint=row["endpoint"],
        failure_reason=row["failure_reason"],
        creation_time=_dt(row["creation_time"]),
        last_modified_time=_dt(row["last_modified_time"]),
        next_run_time=_dt(row["next_run_time"]),
    )


def execution_from_row(row: sqlite3.Row) -> Execution:
    return Execution(
        name=row["name"],
        schedule=row["schedule"],
        arn=row["arn"],
        status=ExecutionStatus(row["status"]),
        failure_reason=row["failure_reason"],
        scheduled_time=_dt(row["scheduled_time"]),
        creation_time=_dt(row["creation_time"]),
        start_time=_dt(row["start_time"]),
        end_time=_dt(row["end_time"]),
        last_modified_time=_dt(row["last_modified_time"]),
        output_uri=row["output_uri"],
        violations_uri=row["violations_uri"],
        summary_uri=row["summary_uri"],
        exit_code=row["exit_code"],
        alert=row["alert"],
        owner=row["owner"],
    )
