"""``JobStore``: transform jobs, their per-file checkpoints and the model registry in one SQLite file.

Concurrency: any number of threads and processes may share the file. Each thread gets its own connection (WAL mode,
``busy_timeout``); every state change is ONE ``BEGIN IMMEDIATE`` transaction that re-reads the row and writes it
with a compare-and-set on the status it read, so of two racing transitions exactly one wins and the other gets
``Conflict``. ``synchronous=FULL`` so a committed transition survives power loss.

Runner leases and fencing (``claim``, ``renew``, ``release``, the ``owner`` check of every write) live in
``jobs.lease``; ``resumable_jobs`` lists InProgress/Stopping jobs whose lease is free.

Counters: a job's record/byte counters always equal the sum over its files. ``add_progress`` adds to a pending file
and its job in one transaction; ``mark_file`` finalises a file; when a new owner claims a job the progress of files
that were still pending is reset (they will be redone), so counters never double count after a resume.

Decisions:

* Names are unique case-insensitively and ARNs use the lower-cased name **[inferred]**: SageMaker ARNs are lower case,
  so ``MyJob`` and ``myjob`` would share an ARN (and an output folder on a case-insensitive filesystem).
* ``create_job`` with an existing name raises ``AlreadyExists`` (a ``Conflict``) carrying the existing record; with
  ``if_same_spec_ok=True`` it returns the existing job when the spec hash (canonical JSON of request + options) is
  identical, which makes automated submission idempotent (docs/reliability.md).
* ``request_stop`` is idempotent: InProgress → Stopping; on a Stopping or terminal job it changes nothing and returns
  the record (docs/reliability.md). The runner (or whoever resumes a Stopping job) finishes with Stopped.
* A transition to ``Failed`` needs a failure reason; reasons are cut to SageMaker's 1024 characters.
* List paging is keyset-based: the opaque ``NextToken`` encodes the last row's sort key and a fingerprint of the
  filters, so pages stay consistent while jobs are created, and a token reused with other filters (or mangled) is a
  ``ValidationError``.
* Times are stored as fixed-width UTC ISO-8601 text (so they sort as strings) and returned as aware datetimes; naive
  datetimes passed in are taken as UTC.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from batchlane import settings
from batchlane.aws_names import canonical_job_name
from batchlane.errors import AlreadyExists, Conflict, NotFound, ValidationError
from batchlane.jobs import outputs
from batchlane.jobs.checkpoints import CheckpointTable
from batchlane.jobs.db import MAX_FAILURE_REASON, Database, _json, _reason, _ts, spec_hash, utcnow
from batchlane.jobs.lease import LeaseTable
from batchlane.jobs.parts import PartTable
from batchlane.jobs.records import FileCheckpoint, JobRecord, ModelRow
from batchlane.jobs.state import ACTIVE, REOPENABLE, FileState, JobStatus, check_job_name, check_transition

__all__ = [
    "MAX_FAILURE_REASON",
    "FileCheckpoint",
    "JobRecord",
    "JobStore",
    "ModelRow",
    "spec_hash",
    "utcnow",
]


class JobStore(Database, LeaseTable, CheckpointTable, PartTable):
    """Jobs, file and part checkpoints and models in the SQLite file at ``path`` (created with its folder if missing).

    ``region`` and ``account`` go into ARNs; ``clock`` (default: UTC now) makes times testable.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        region: str = "us-east-1",
        account: str = "000000000000",
        busy_timeout_s: float = 30.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not re.fullmatch(r"[a-z]{2}(-[a-z0-9]+)+", region):
            raise ValidationError(f"region {region!r} is not a valid AWS region name")
        if not re.fullmatch(r"\d{12}", account):
            raise ValidationError(f"account {account!r} must be 12 digits")
        self.region = region
        self.account = account
        super().__init__(path, busy_timeout_s=busy_timeout_s, clock=clock)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kwargs: Any) -> JobStore:
        """The store at ``$BATCHLANE_DB`` (default ``<home>/batchlane.db``), ARNs from ``$BATCHLANE_REGION`` (else
        ``$AWS_REGION``/``$AWS_DEFAULT_REGION``, else us-east-1) and ``$BATCHLANE_ACCOUNT_ID`` (else 000000000000)."""
        env = os.environ if env is None else env
        region = (
            env.get(settings.BATCHLANE_REGION)
            or env.get(settings.AWS_REGION)
            or env.get(settings.AWS_DEFAULT_REGION)
            or "us-east-1"
        )
        account = env.get(settings.BATCHLANE_ACCOUNT_ID) or "000000000000"
        kwargs.setdefault("region", region)
        kwargs.setdefault("account", account)
        return cls(settings.default_db_path(env), **kwargs)

    def __repr__(self) -> str:
        return f"JobStore({str(self.path)!r})"

    def job_arn(self, name: str) -> str:
        return f"arn:aws:sagemaker:{self.region}:{self.account}:transform-job/{canonical_job_name(name)}"

    def model_arn(self, name: str) -> str:
        return f"arn:aws:sagemaker:{self.region}:{self.account}:model/{name.lower()}"

    def log_path(self, name: str) -> Path:
        """The job's log file (one per job, like a CloudWatch stream): ``<store folder>/logs/<name>.log``."""
        check_job_name(name)
        folder = self.folder / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{canonical_job_name(name)}.log"

    def _job_row(self, conn: sqlite3.Connection, name: str) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM jobs WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"Could not find transform job '{self.job_arn(name)}'.", field="TransformJobName")
        return row

    def create_job(
        self,
        name: str,
        request: Mapping[str, Any],
        options: Mapping[str, Any] | None = None,
        *,
        if_same_spec_ok: bool = False,
        exclusive_output: bool = False,
    ) -> JobRecord:
        """Create an InProgress job. A taken name raises ``AlreadyExists`` (``.existing`` is the stored job), unless
        ``if_same_spec_ok`` and the existing job has the same spec hash, in which case that job is returned.

        ``exclusive_output``: raise ``Conflict`` naming the other job if an active job's output prefix overlaps this
        one's (``jobs.outputs``), checked in the insert's own transaction so concurrent creates cannot both pass."""
        check_job_name(name)
        request = dict(request)
        options = dict(options or {})
        if request.get("TransformJobName", name) != name:
            raise ValidationError(
                f"TransformJobName {request['TransformJobName']!r} in the request differs from {name!r}",
                field="TransformJobName",
            )
        digest = spec_hash(request, options)
        now = _ts(self._now())
        with self._write() as conn:
            row = conn.execute("SELECT * FROM jobs WHERE name = ?", (name,)).fetchone()
            if row is not None:
                existing = JobRecord._from_row(row)
                if if_same_spec_ok and existing.spec_hash == digest:
                    return existing
                detail = "with a different spec" if existing.spec_hash != digest else "already"
                raise AlreadyExists(
                    f"Job name must be unique within an account and region: transform job {existing.name} "
                    f"({existing.arn}) exists {detail}",
                    existing=existing,
                    field="TransformJobName",
                )
            output = outputs.output_path(request)
            if exclusive_output and output is not None:
                active = conn.execute(
                    "SELECT * FROM jobs WHERE status IN (?, ?) ORDER BY creation_time, name",
                    tuple(s.value for s in ACTIVE),
                )
                busy = outputs.conflicting_jobs(active, output)
                if busy:
                    raise Conflict(outputs.busy_message(output, busy[0]), field=outputs.OUTPUT_FIELD)
            conn.execute(
                "INSERT INTO jobs (name, arn, status, request, options, spec_hash, creation_time, last_modified_time)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    self.job_arn(name),
                    JobStatus.IN_PROGRESS.value,
                    _json(request, "request"),
                    _json(options, "options"),
                    digest,
                    now,
                    now,
                ),
            )
            return JobRecord._from_row(self._job_row(conn, name))

    def get_job(self, name: str) -> JobRecord:
        """The job; ``NotFound`` if there is none."""
        return JobRecord._from_row(self._job_row(self._conn(), name))

    def find_job(self, name: str) -> JobRecord | None:
        """The job, or None if there is none."""
        row = self._conn().execute("SELECT * FROM jobs WHERE name = ?", (name,)).fetchone()
        return None if row is None else JobRecord._from_row(row)

    def list_jobs(
        self,
        *,
        status_equals: JobStatus | str | None = None,
        name_contains: str | None = None,
        creation_time_after: datetime | None = None,
        creation_time_before: datetime | None = None,
        last_modified_time_after: datetime | None = None,
        last_modified_time_before: datetime | None = None,
        sort_by: str = "CreationTime",
        sort_order: str = "Descending",
        max_results: int = 10,
        next_token: str | None = None,
    ) -> tuple[list[JobRecord], str | None]:
        """One page of jobs with ListTransformJobs' filters and defaults; the token is None on the last page.

        ``name_contains`` matches case-insensitively; time filters are strict (``after`` means ``>``).
        """
        where: list[str] = []
        params: list[Any] = []
        if status_equals is not None:
            where.append("status = ?")
            params.append(JobStatus.parse(status_equals).value)
        self._name_filter(name_contains, where, params)
        for column, op, value in (
            ("creation_time", ">", creation_time_after),
            ("creation_time", "<", creation_time_before),
            ("last_modified_time", ">", last_modified_time_after),
            ("last_modified_time", "<", last_modified_time_before),
        ):
            if value is not None:
                where.append(f"{column} {op} ?")
                params.append(_ts(value))
        columns = {"CreationTime": "creation_time", "Name": "name", "Status": "status"}
        rows, token = self._page("jobs", where, params, columns, sort_by, sort_order, max_results, next_token)
        return [JobRecord._from_row(row) for row in rows], token

    def transition(
        self,
        name: str,
        to: JobStatus | str,
        *,
        failure_reason: str | None = None,
        expected_from: JobStatus | str | None = None,
        owner: str | None = None,
    ) -> JobRecord:
        """Move the job to ``to`` in one transaction; ``Conflict`` if the move is not allowed, if the job is not in
        ``expected_from`` (when given) or if ``owner`` (when given) no longer holds the job."""
        target = JobStatus(to)
        if target is JobStatus.FAILED and not failure_reason:
            raise ValidationError(f"moving transform job {name} to Failed needs a failure reason")
        with self._write() as conn:
            row = self._job_row(conn, name)
            current = JobStatus(row["status"])
            if expected_from is not None and current is not JobStatus(expected_from):
                raise Conflict(
                    f"transform job {name} is {current.value}, not {JobStatus(expected_from).value}"
                )
            self._check_owner(row, owner)
            check_transition(current, target, name=name)
            now = _ts(self._now())
            terminal = target.is_terminal
            cursor = conn.execute(
                "UPDATE jobs SET status = ?, last_modified_time = ?,"
                " failure_reason = COALESCE(?, failure_reason),"
                " end_time = CASE WHEN ? THEN ? ELSE end_time END,"
                " owner = CASE WHEN ? THEN NULL ELSE owner END,"
                " lease_expires = CASE WHEN ? THEN NULL ELSE lease_expires END"
                " WHERE name = ? AND status = ?",
                (
                    target.value,
                    now,
                    _reason(failure_reason) if failure_reason else None,
                    terminal,
                    now,
                    terminal,
                    terminal,
                    name,
                    current.value,
                ),
            )
            if cursor.rowcount != 1:  # unreachable under BEGIN IMMEDIATE; kept as the compare-and-set guard
                raise Conflict(f"transform job {name} changed while moving it to {target.value}")
            return JobRecord._from_row(self._job_row(conn, name))

    def request_stop(self, name: str) -> JobRecord:
        """InProgress → Stopping; on a job that is already Stopping or finished, a no-op. Returns the job."""
        with self._write() as conn:
            row = self._job_row(conn, name)
            if row["status"] == JobStatus.IN_PROGRESS.value:
                conn.execute(
                    "UPDATE jobs SET status = ?, last_modified_time = ? WHERE name = ? AND status = ?",
                    (JobStatus.STOPPING.value, _ts(self._now()), name, JobStatus.IN_PROGRESS.value),
                )
                row = self._job_row(conn, name)
            return JobRecord._from_row(row)

    def reopen(self, name: str) -> JobRecord:
        """Stopped or Failed → InProgress, for ``batchlane jobs resume`` (see ``jobs.state``): failed files become
        pending again with their counts zeroed, committed files stay done, the failure reason and end time are
        cleared. ``Conflict`` naming the state for any other job."""
        with self._write() as conn:
            row = self._job_row(conn, name)
            current = JobStatus(row["status"])
            if current not in REOPENABLE:
                raise Conflict(
                    f"transform job {name} is {current.value}; only Stopped or Failed jobs can be reopened"
                )
            now = _ts(self._now())
            conn.execute(
                "UPDATE job_files SET state = ?, records = 0, records_failed = 0, bytes_done = 0, error = NULL,"
                " updated = ? WHERE job = ? AND state = ?",
                (FileState.PENDING.value, now, name, FileState.FAILED.value),
            )
            conn.execute(
                "UPDATE jobs SET status = ?, failure_reason = NULL, end_time = NULL, owner = NULL,"
                " lease_expires = NULL, last_modified_time = ? WHERE name = ? AND status = ?",
                (JobStatus.IN_PROGRESS.value, now, name, current.value),
            )
            self._recount(conn, name)
            return JobRecord._from_row(self._job_row(conn, name))

    def add_restart(self, name: str, owner: str | None = None) -> int:
        """Count one restart of the job's model server (``Batchlane.Restarts`` in describe); returns the new total.
        ``Conflict`` if ``owner`` (when given) no longer holds the job."""
        with self._write() as conn:
            row = self._job_row(conn, name)
            self._check_active(row)
            self._check_owner(row, owner)
            conn.execute("UPDATE jobs SET restarts = restarts + 1 WHERE name = ?", (name,))
            return int(self._job_row(conn, name)["restarts"])

    def active_jobs_writing_to(self, output_uri: str, *, exclude: str | None = None) -> list[JobRecord]:
        """InProgress/Stopping jobs whose ``S3OutputPath`` overlaps ``output_uri`` (canonical locations compared as
        folders, ``jobs.outputs``), other than ``exclude``. Two jobs on one output prefix overwrite each other's
        ``.out`` objects (docs/reliability.md); ``create_job(exclusive_output=True)`` refuses them atomically."""
        rows = self._conn().execute(
            "SELECT * FROM jobs WHERE status IN (?, ?) ORDER BY creation_time, name",
            tuple(s.value for s in ACTIVE),
        )
        return outputs.conflicting_jobs(rows, output_uri, exclude=exclude)

    def _check_active(self, row: sqlite3.Row) -> None:
        if JobStatus(row["status"]) not in ACTIVE:
            raise Conflict(f"transform job {row['name']} is {row['status']}; its files can no longer change")

    def create_model(self, name: str, spec: Mapping[str, Any], digest: str) -> ModelRow:
        """Insert a model row; ``AlreadyExists`` carrying the existing row if the name is taken."""
        with self._write() as conn:
            row = conn.execute("SELECT * FROM models WHERE name = ?", (name,)).fetchone()
            if row is not None:
                existing = ModelRow._from_row(row)
                raise AlreadyExists(
                    f'Cannot create already existing model "{existing.arn}".',
                    existing=existing,
                    field="ModelName",
                )
            conn.execute(
                "INSERT INTO models (name, arn, spec, spec_hash, creation_time) VALUES (?, ?, ?, ?, ?)",
                (name, self.model_arn(name), _json(dict(spec), "model spec"), digest, _ts(self._now())),
            )
            return ModelRow._from_row(conn.execute("SELECT * FROM models WHERE name = ?", (name,)).fetchone())

    def get_model(self, name: str) -> ModelRow:
        """The model row; ``NotFound`` if there is none."""
        row = self._conn().execute("SELECT * FROM models WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f'Could not find model "{self.model_arn(name)}".', field="ModelName")
        return ModelRow._from_row(row)

    def list_models(
        self,
        *,
        name_contains: str | None = None,
        creation_time_after: datetime | None = None,
        creation_time_before: datetime | None = None,
        sort_by: str = "CreationTime",
        sort_order: str = "Descending",
        max_results: int = 10,
        next_token: str | None = None,
    ) -> tuple[list[ModelRow], str | None]:
        """One page of models with ListModels' filters and defaults; the token is None on the last page."""
        where: list[str] = []
        params: list[Any] = []
        self._name_filter(name_contains, where, params)
        for op, value in ((">", creation_time_after), ("<", creation_time_before)):
            if value is not None:
                where.append(f"creation_time {op} ?")
                params.append(_ts(value))
        columns = {"CreationTime": "creation_time", "Name": "name"}
        rows, token = self._page(
            "models", where, params, columns, sort_by, sort_order, max_results, next_token
        )
        return [ModelRow._from_row(row) for row in rows], token

    def delete_model(self, name: str) -> None:
        """Delete the model; ``NotFound`` if there is none. Jobs keep the model spec they were started with."""
        with self._write() as conn:
            if conn.execute("DELETE FROM models WHERE name = ?", (name,)).rowcount == 0:
                raise NotFound(f'Could not find model "{self.model_arn(name)}".', field="ModelName")
