"""Monitoring schedules and their executions, stored in the job store's SQLite file (schema version 4).

A schedule holds its expression (``cron.py``), the SageMaker ``MonitoringScheduleConfig`` it was created with, and
the ``Target`` its executions run (baseline, data, output, threshold, alerts). Each time it fires, one execution
row is claimed: the claim moves the schedule's ``next_run_time`` with a compare-and-set in the same transaction
that inserts the execution, so two schedulers on one file (a worker and a server) never run the same firing twice.
The records and statuses are in ``schedule_records.py``.
"""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import datetime
from typing import Any

from batchlane.errors import AlreadyExists, NotFound
from batchlane.jobs.db import Database, _json, _reason, _ts
from batchlane.monitor.cron import parse_expression
from batchlane.monitor.schedule_records import (
    Execution,
    ExecutionStatus,
    Schedule,
    ScheduleStatus,
    Target,
    check_schedule_name,
    execution_from_row,
    owner_is_dead,
    schedule_from_row,
    this_owner,
)


class ScheduleStore(Database):
    """Schedules and executions in the SQLite file at ``path`` (normally the job store's)."""

    def __init__(self, path: Any, *, region: str = "us-east-1", account: str = "000000000000", **kw: Any):
        super().__init__(path, **kw)
        self.region = region
        self.account = account

    @classmethod
    def beside(cls, store: Any) -> ScheduleStore:
        """The schedule store in the same file as a ``JobStore``, with its region and account."""
        return cls(store.path, region=store.region, account=store.account)

    def schedule_arn(self, name: str) -> str:
        return f"arn:aws:sagemaker:{self.region}:{self.account}:monitoring-schedule/{name.lower()}"

    def execution_arn(self, name: str) -> str:
        return f"arn:aws:sagemaker:{self.region}:{self.account}:processing-job/{name.lower()}"

    def create(
        self,
        name: str,
        expression: str,
        target: Target,
        *,
        config: dict[str, Any] | None = None,
        endpoint: str | None = None,
        now: datetime | None = None,
    ) -> Schedule:
        """A new ``Scheduled`` schedule; ``AlreadyExists`` if the name is taken, ``ValidationError`` for a bad
        name or expression."""
        check_schedule_name(name)
        parsed = parse_expression(expression)
        now = self._now(now)
        first = parsed.first(now)
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM monitoring_schedules WHERE name = ?", (name,)).fetchone():
                raise AlreadyExists(
                    f"Monitoring schedule {self.schedule_arn(name)} already exists",
                    field="MonitoringScheduleName",
                )
            conn.execute(
                "INSERT INTO monitoring_schedules (name, arn, status, expression, config, target, endpoint, "
                "creation_time, last_modified_time, next_run_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    self.schedule_arn(name),
                    ScheduleStatus.SCHEDULED.value,
                    parsed.text,
                    _json(config or {}, "MonitoringScheduleConfig"),
                    _json(target.as_json(), "target"),
                    endpoint,
                    _ts(now),
                    _ts(now),
                    None if first is None else _ts(first),
                ),
            )
        return self.get(name)

    def get(self, name: str) -> Schedule:
        row = self._conn().execute("SELECT * FROM monitoring_schedules WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(
                f"Monitoring Schedule '{self.schedule_arn(name)}' does not exist.",
                field="MonitoringScheduleName",
            )
        return schedule_from_row(row)

    def list(self, **filters: Any) -> tuple[list[Schedule], str | None]:
        """One page of schedules: ``name_contains``, ``status``, ``endpoint``, ``sort_by`` (Name, CreationTime,
        Status), ``sort_order``, ``max_results``, ``next_token``."""
        where: list[str] = []
        params: list[Any] = []
        self._name_filter(filters.get("name_contains"), where, params)
        _filter(
            filters,
            where,
            params,
            equal=("status", "endpoint"),
            ranges=(("creation_time", "creation"), ("last_modified_time", "modified")),
        )
        rows, token = self._page(
            "monitoring_schedules",
            where,
            params,
            {"Name": "name", "CreationTime": "creation_time", "Status": "status"},
            filters.get("sort_by") or "CreationTime",
            filters.get("sort_order") or "Descending",
            filters.get("max_results", 100),
            filters.get("next_token"),
        )
        return [schedule_from_row(row) for row in rows], token

    def set_status(self, name: str, status: ScheduleStatus, *, now: datetime | None = None) -> Schedule:
        """Stop or (re)start a schedule. Restarting computes its next firing from now (no backfill)."""
        schedule = self.get(name)
        now = self._now(now)
        next_run = schedule.next_run_time
        if status is ScheduleStatus.SCHEDULED and schedule.status is not ScheduleStatus.SCHEDULED:
            first = parse_expression(schedule.expression).first(now)
            next_run = first
        with self._write() as conn:
            conn.execute(
                "UPDATE monitoring_schedules SET status = ?, last_modified_time = ?, next_run_time = ? "
                "WHERE name = ?",
                (status.value, _ts(now), None if next_run is None else _ts(next_run), name),
            )
        return self.get(name)

    def delete(self, name: str) -> None:
        """Delete a schedule and its execution records (reports stay where they were written)."""
        self.get(name)
        with self._write() as conn:
            conn.execute("DELETE FROM monitoring_schedules WHERE name = ?", (name,))

    def due(self, now: datetime | None = None) -> list[Schedule]:
        """Scheduled schedules whose next firing is at or before ``now``."""
        rows = self._conn().execute(
            "SELECT * FROM monitoring_schedules WHERE status = ? AND next_run_time IS NOT NULL "
            "AND next_run_time <= ? ORDER BY next_run_time, name",
            (ScheduleStatus.SCHEDULED.value, _ts(self._now(now))),
        )
        return [schedule_from_row(row) for row in rows.fetchall()]

    def claim(self, schedule: Schedule, *, now: datetime | None = None) -> Execution | None:
        """Claim the firing ``schedule.next_run_time``: insert its ``Pending`` execution and move the schedule to
        its next firing after ``now`` (missed firings are skipped, not run in a burst). ``None`` when another
        scheduler claimed it first."""
        now = self._now(now)
        scheduled = schedule.next_run_time
        if scheduled is None:
            return None
        following = parse_expression(schedule.expression).next_after(now, anchor=schedule.creation_time)
        name = execution_name(schedule.name, scheduled)
        with self._write() as conn:
            moved = conn.execute(
                "UPDATE monitoring_schedules SET next_run_time = ? "
                "WHERE name = ? AND status = ? AND next_run_time = ?",
                (
                    None if following is None else _ts(following),
                    schedule.name,
                    ScheduleStatus.SCHEDULED.value,
                    _ts(scheduled),
                ),
            ).rowcount
            if not moved:
                return None
            try:
                conn.execute(
                    "INSERT INTO monitoring_executions (name, schedule, arn, status, scheduled_time, "
                    "creation_time, last_modified_time, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        name,
                        schedule.name,
                        self.execution_arn(name),
                        ExecutionStatus.PENDING.value,
                        _ts(scheduled),
                        _ts(now),
                        _ts(now),
                        this_owner(),
                    ),
                )
            except sqlite3.IntegrityError:  # this firing already ran (a restart within the same second)
                return None
        return self.execution(name)

    def execution(self, name: str) -> Execution:
        row = self._conn().execute("SELECT * FROM monitoring_executions WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"Monitoring execution {name!r} does not exist.", field="ProcessingJobName")
        return execution_from_row(row)

    def update_execution(self, name: str, status: ExecutionStatus, **fields: Any) -> None:
        """Set an execution's status and any of: ``failure_reason``, ``output_uri``, ``violations_uri``,
        ``summary_uri``, ``exit_code``, ``alert``. Start and end times follow the status. A deleted schedule's
        execution is gone: the update is then a no-op."""
        now = self._now()
        sets = {"status": status.value, "last_modified_time": _ts(now)}
        if status is ExecutionStatus.IN_PROGRESS:
            sets["start_time"] = _ts(now)
        if status.done:
            sets["end_time"] = _ts(now)
        for key, value in fields.items():
            if key not in (
                "failure_reason",
                "output_uri",
                "violations_uri",
                "summary_uri",
                "exit_code",
                "alert",
            ):
                raise TypeError(f"unknown execution field {key}")
            sets[key] = _reason(value) if key == "failure_reason" and value else value
        with self._write() as conn:
            conn.execute(
                f"UPDATE monitoring_executions SET {', '.join(f'{k} = ?' for k in sets)} WHERE name = ?",
                (*sets.values(), name),
            )

    def executions(self, schedule: str | None = None, **filters: Any) -> tuple[list[Execution], str | None]:
        """One page of executions (of ``schedule`` if given): ``status``, ``sort_by`` (CreationTime,
        ScheduledTime, Status), ``sort_order``, ``max_results``, ``next_token``, ``scheduled_after`` /
        ``scheduled_before``."""
        where: list[str] = []
        params: list[Any] = []
        if schedule is not None:
            self.get(schedule)
            where.append("schedule = ?")
            params.append(schedule)
        _filter(
            filters,
            where,
            params,
            equal=("status",),
            ranges=(("scheduled_time", "scheduled"), ("creation_time", "creation")),
        )
        rows, token = self._page(
            "monitoring_executions",
            where,
            params,
            {"CreationTime": "creation_time", "ScheduledTime": "scheduled_time", "Status": "status"},
            filters.get("sort_by") or "ScheduledTime",
            filters.get("sort_order") or "Descending",
            filters.get("max_results", 100),
            filters.get("next_token"),
        )
        return [execution_from_row(row) for row in rows], token

    def last_execution(self, schedule: str) -> Execution | None:
        row = (
            self._conn()
            .execute(
                "SELECT * FROM monitoring_executions WHERE schedule = ? ORDER BY scheduled_time DESC LIMIT 1",
                (schedule,),
            )
            .fetchone()
        )
        return None if row is None else execution_from_row(row)

    def fail_orphans(self) -> list[str]:
        """Mark Pending/InProgress executions whose scheduler process died (on this host) Failed; their names."""
        rows = (
            self._conn()
            .execute(
                "SELECT name, owner FROM monitoring_executions WHERE status IN (?, ?)",
                (ExecutionStatus.PENDING.value, ExecutionStatus.IN_PROGRESS.value),
            )
            .fetchall()
        )
        orphans = [row["name"] for row in rows if owner_is_dead(row["owner"])]
        for name in orphans:
            self.update_execution(
                name, ExecutionStatus.FAILED, failure_reason="the scheduler running this execution stopped"
            )
        return orphans


def _filter(
    filters: dict[str, Any],
    where: list[str],
    params: list[Any],
    *,
    equal: tuple[str, ...],
    ranges: tuple[tuple[str, str], ...],
) -> None:
    """Add the given ``filters`` to a WHERE clause: ``column = ?`` for each ``equal`` key (named as its column), and
    ``column > ?`` / ``column < ?`` for ``<prefix>_after`` / ``<prefix>_before`` of each ``(column, prefix)``."""
    for column in equal:
        if filters.get(column) is not None:
            where.append(f"{column} = ?")
            params.append(filters[column])
    for column, prefix in ranges:
        for op, suffix in ((">", "after"), ("<", "before")):
            value = filters.get(f"{prefix}_{suffix}")
            if value is not None:
                where.append(f"{column} {op} ?")
                params.append(_ts(value))


def execution_name(schedule: str, scheduled: datetime) -> str:
    """``<schedule[:36]>-<yyyymmddHHMMSS>-<8 hex>``: at most 60 characters, unique per schedule and firing."""
    digest = hashlib.sha256(schedule.lower().encode()).hexdigest()[:8]
    return f"{schedule[:36].rstrip('-')}-{scheduled:%Y%m%d%H%M%S}-{digest}"
