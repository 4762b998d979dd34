"""``JobStore``: transform jobs, their per-file checkpoints and the model registry in one SQLite file.

Concurrency: any number of threads and processes may share the file. Each thread gets its own connection (WAL mode,
``busy_timeout``); every state change is ONE ``BEGIN IMMEDIATE`` transaction that re-reads the row and writes it
with a compare-and-set on the status it read, so of two racing transitions exactly one wins and the other gets
``Conflict``. ``synchronous=FULL`` so a committed transition survives power loss.

Runner leases: a runner ``claim``s a job for ``lease_s`` seconds and ``renew``s it while it works. A claim is refused
while another owner's lease is unexpired (fencing); ``transition``, ``mark_file`` and ``add_progress`` take an optional
``owner`` and refuse to act for an owner that no longer holds the job, so a paused "zombie" runner cannot commit over
its successor (RELIABILITY §4 rows 11, 14). ``resumable_jobs`` lists InProgress/Stopping jobs whose lease expired or
that were never claimed; a newly created job is therefore picked up by the next worker even if its creator died.

Counters: a job's record/byte counters always equal the sum over its files. ``add_progress`` adds to a pending file
and its job in one transaction; ``mark_file`` finalises a file; when a new owner claims a job the progress of files
that were still pending is reset (they will be redone), so counters never double count after a resume.

Decisions:

* Names are unique case-insensitively and ARNs use the lower-cased name **[inferred]**: SageMaker ARNs are lower case,
  so ``MyJob`` and ``myjob`` would share an ARN (and an output folder on a case-insensitive filesystem).
* ``create_job`` with an existing name raises ``AlreadyExists`` (a ``Conflict``) carrying the existing record; with
  ``if_same_spec_ok=True`` it returns the existing job when the spec hash (canonical JSON of request + options) is
  identical, which makes automated submission idempotent (RELIABILITY §0.2).
* ``request_stop`` is idempotent: InProgress → Stopping; on a Stopping or terminal job it changes nothing and returns
  the record (RELIABILITY §4 row 18). The runner (or whoever resumes a Stopping job) finishes with Stopped.
* A transition to ``Failed`` needs a failure reason; reasons are cut to SageMaker's 1024 characters.
* List paging is keyset-based: the opaque ``NextToken`` encodes the last row's sort key and a fingerprint of the
  filters, so pages stay consistent while jobs are created, and a token reused with other filters (or mangled) is a
  ``ValidationError``.
* Times are stored as fixed-width UTC ISO-8601 text (so they sort as strings) and returned as aware datetimes; naive
  datetimes passed in are taken as UTC.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from batchlane import settings
from batchlane.errors import AlreadyExists, Conflict, NotFound, StorageError, ValidationError
from batchlane.jobs.state import (
    ACTIVE,
    FileState,
    JobStatus,
    check_file_transition,
    check_job_name,
    check_transition,
)

SCHEMA_VERSION = 1
MAX_FAILURE_REASON = 1024
MAX_NEXT_TOKEN = 8192

_SCHEMA_V1 = [
    """CREATE TABLE jobs (
        name TEXT PRIMARY KEY COLLATE NOCASE,
        arn TEXT NOT NULL,
        status TEXT NOT NULL,
        failure_reason TEXT,
        request TEXT NOT NULL,
        options TEXT NOT NULL,
        spec_hash TEXT NOT NULL,
        creation_time TEXT NOT NULL,
        start_time TEXT,
        end_time TEXT,
        last_modified_time TEXT NOT NULL,
        files_total INTEGER NOT NULL DEFAULT 0,
        files_done INTEGER NOT NULL DEFAULT 0,
        files_failed INTEGER NOT NULL DEFAULT 0,
        records_done INTEGER NOT NULL DEFAULT 0,
        records_failed INTEGER NOT NULL DEFAULT 0,
        bytes_total INTEGER NOT NULL DEFAULT 0,
        bytes_done INTEGER NOT NULL DEFAULT 0,
        owner TEXT,
        lease_expires TEXT,
        attempts INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX jobs_by_creation ON jobs (creation_time, name)",
    "CREATE INDEX jobs_by_status ON jobs (status, name)",
    """CREATE TABLE job_files (
        job TEXT NOT NULL COLLATE NOCASE REFERENCES jobs (name) ON DELETE CASCADE,
        input_key TEXT NOT NULL,
        output_key TEXT NOT NULL,
        size INTEGER NOT NULL,
        state TEXT NOT NULL,
        records INTEGER NOT NULL DEFAULT 0,
        records_failed INTEGER NOT NULL DEFAULT 0,
        bytes_done INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        updated TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (job, input_key)
    ) WITHOUT ROWID""",
    "CREATE INDEX job_files_by_seq ON job_files (job, seq)",
    """CREATE TABLE models (
        name TEXT PRIMARY KEY COLLATE NOCASE,
        arn TEXT NOT NULL,
        spec TEXT NOT NULL,
        spec_hash TEXT NOT NULL,
        creation_time TEXT NOT NULL
    )""",
    "CREATE INDEX models_by_creation ON models (creation_time, name)",
]
_MIGRATIONS: dict[int, list[str]] = {1: _SCHEMA_V1}


def utcnow() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


def _ts(value: datetime) -> str:
    # isoformat always pads the year to four digits, so the text sorts like the time it encodes.
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds") + "Z"


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.removesuffix("Z")).replace(tzinfo=UTC)


def _json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{what} must be JSON-serialisable: {exc}") from None


def spec_hash(*parts: Any) -> str:
    """SHA-256 of the canonical JSON of ``parts`` (sorted keys): equal for specs that differ only in key order."""
    try:
        canonical = json.dumps(
            list(parts), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"spec must be JSON-serialisable: {exc}") from None
    return hashlib.sha256(canonical.encode()).hexdigest()


def _reason(text: str) -> str:
    return text if len(text) <= MAX_FAILURE_REASON else text[: MAX_FAILURE_REASON - 3] + "..."


@dataclass(frozen=True)
class JobRecord:
    """One transform job as stored. ``request`` is the CreateTransformJob request, ``options`` batchlane's extras."""

    name: str
    arn: str
    status: JobStatus
    failure_reason: str | None
    request: dict[str, Any]
    options: dict[str, Any]
    spec_hash: str
    creation_time: datetime
    start_time: datetime | None
    end_time: datetime | None
    last_modified_time: datetime
    files_total: int
    files_done: int
    files_failed: int
    records_done: int
    records_failed: int
    bytes_total: int
    bytes_done: int
    owner: str | None
    lease_expires: datetime | None
    attempts: int

    @property
    def model_name(self) -> str | None:
        return self.request.get("ModelName")

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    def lease_active(self, now: datetime | None = None) -> bool:
        """Whether some runner holds an unexpired lease on the job."""
        return self.lease_expires is not None and self.lease_expires > (now or utcnow())

    @classmethod
    def _from_row(cls, row: sqlite3.Row) -> JobRecord:
        return cls(
            name=row["name"],
            arn=row["arn"],
            status=JobStatus(row["status"]),
            failure_reason=row["failure_reason"],
            request=json.loads(row["request"]),
            options=json.loads(row["options"]),
            spec_hash=row["spec_hash"],
            creation_time=_dt(row["creation_time"]),  # type: ignore[arg-type]
            start_time=_dt(row["start_time"]),
            end_time=_dt(row["end_time"]),
            last_modified_time=_dt(row["last_modified_time"]),  # type: ignore[arg-type]
            files_total=row["files_total"],
            files_done=row["files_done"],
            files_failed=row["files_failed"],
            records_done=row["records_done"],
            records_failed=row["records_failed"],
            bytes_total=row["bytes_total"],
            bytes_done=row["bytes_done"],
            owner=row["owner"],
            lease_expires=_dt(row["lease_expires"]),
            attempts=row["attempts"],
        )


@dataclass(frozen=True)
class FileCheckpoint:
    """The checkpoint of one input file of a job."""

    input_key: str
    output_key: str
    size: int
    state: FileState
    records: int
    records_failed: int
    bytes_done: int
    error: str | None
    updated: datetime

    @classmethod
    def _from_row(cls, row: sqlite3.Row) -> FileCheckpoint:
        return cls(
            input_key=row["input_key"],
            output_key=row["output_key"],
            size=row["size"],
            state=FileState(row["state"]),
            records=row["records"],
            records_failed=row["records_failed"],
            bytes_done=row["bytes_done"],
            error=row["error"],
            updated=_dt(row["updated"]),  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class ModelRow:
    """One registered model as stored; ``spec`` is the ModelSpec as JSON (see ``batchlane.models``)."""

    name: str
    arn: str
    spec: dict[str, Any]
    spec_hash: str
    creation_time: datetime

    @classmethod
    def _from_row(cls, row: sqlite3.Row) -> ModelRow:
        return cls(
            name=row["name"],
            arn=row["arn"],
            spec=json.loads(row["spec"]),
            spec_hash=row["spec_hash"],
            creation_time=_dt(row["creation_time"]),  # type: ignore[arg-type]
        )


def _plan_fields(plan: Any) -> tuple[str, str, int]:
    """(input_key, output_key, size) from a FilePlan-like object, a mapping or a tuple."""
    if isinstance(plan, Mapping):
        return str(plan["input_key"]), str(plan["output_key"]), int(plan.get("size", 0))
    if isinstance(plan, tuple):
        return str(plan[0]), str(plan[1]), int(plan[2]) if len(plan) > 2 else 0
    return str(plan.input_key), str(plan.output_key), int(getattr(plan, "size", 0) or 0)


class JobStore:
    """Jobs, file checkpoints and models in the SQLite file at ``path`` (created with its folder if missing).

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
        self.path = Path(path).expanduser().absolute()
        self.folder = self.path.parent
        self.region = region
        self.account = account
        self._busy_ms = int(busy_timeout_s * 1000)
        self._clock = clock or utcnow
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self.folder.mkdir(parents=True, exist_ok=True)
        self._migrate()

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

    def _conn(self) -> sqlite3.Connection:
        held = getattr(self._local, "held", None)
        # A connection must never cross a fork: the child opens its own.
        if held is not None and held[0] == os.getpid():
            return held[1]
        try:
            conn = sqlite3.connect(
                self.path, timeout=self._busy_ms / 1000, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open job store {self.path}: {exc}") from exc
        self._local.held = (os.getpid(), conn)
        with self._lock:
            self._connections.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE takes the write lock up front so read-then-write cannot race."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StorageError(f"job store {self.path} is busy: {exc}") from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback(conn)
            raise StorageError(f"job store {self.path}: {exc}") from exc
        except BaseException:
            self._rollback(conn)
            raise

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        # SQLite may already have rolled back by itself (e.g. after SQLITE_FULL); don't mask the original error.
        if conn.in_transaction:
            conn.execute("ROLLBACK")

    def close(self) -> None:
        """Close every connection this store opened (in any thread)."""
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()

    def _migrate(self) -> None:
        with self._write() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            current = row[0] if row else 0
            if current > SCHEMA_VERSION:
                raise StorageError(
                    f"job store {self.path} has schema version {current}; this batchlane knows up to "
                    f"{SCHEMA_VERSION} (upgrade batchlane)"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version]:
                    conn.execute(statement)
            if row is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif current != SCHEMA_VERSION:
                conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    def _now(self, now: datetime | None = None) -> datetime:
        return now if now is not None else self._clock()

    def job_arn(self, name: str) -> str:
        return f"arn:aws:sagemaker:{self.region}:{self.account}:transform-job/{name.lower()}"

    def model_arn(self, name: str) -> str:
        return f"arn:aws:sagemaker:{self.region}:{self.account}:model/{name.lower()}"

    def log_path(self, name: str) -> Path:
        """The job's log file (one per job, like a CloudWatch stream): ``<store folder>/logs/<name>.log``."""
        check_job_name(name)
        folder = self.folder / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{name.lower()}.log"

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
    ) -> JobRecord:
        """Create an InProgress job. A taken name raises ``AlreadyExists`` (``.existing`` is the stored job), unless
        ``if_same_spec_ok`` and the existing job has the same spec hash, in which case that job is returned."""
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

    def _check_owner(self, row: sqlite3.Row, owner: str | None) -> None:
        if owner is not None and row["owner"] != owner:
            holder = row["owner"] or "nobody"
            raise Conflict(f"transform job {row['name']} is held by {holder}, not {owner}")

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

    def claim(self, name: str, owner: str, lease_s: float, *, now: datetime | None = None) -> bool:
        """Take the job for ``owner`` until now + ``lease_s``; False if it is finished or another owner's lease is
        unexpired. A claim by a new owner counts an attempt and resets the progress of files still pending."""
        if not owner:
            raise ValidationError("a runner owner id must not be empty")
        moment = self._now(now)
        with self._write() as conn:
            row = self._job_row(conn, name)
            if JobStatus(row["status"]) not in ACTIVE:
                return False
            lease = _dt(row["lease_expires"])
            if row["owner"] not in (None, owner) and lease is not None and lease > moment:
                return False
            new_owner = row["owner"] != owner
            conn.execute(
                "UPDATE jobs SET owner = ?, lease_expires = ?, attempts = attempts + ?,"
                " start_time = COALESCE(start_time, ?),"
                " last_modified_time = CASE WHEN start_time IS NULL THEN ? ELSE last_modified_time END"
                " WHERE name = ?",
                (
                    owner,
                    _ts(moment + timedelta(seconds=lease_s)),
                    int(new_owner),
                    _ts(moment),
                    _ts(moment),
                    name,
                ),
            )
            if new_owner:
                conn.execute(
                    "UPDATE job_files SET records = 0, records_failed = 0, bytes_done = 0 WHERE job = ? AND state = ?",
                    (name, FileState.PENDING.value),
                )
                self._recount(conn, name)
            return True

    def renew(self, name: str, owner: str, lease_s: float, *, now: datetime | None = None) -> bool:
        """Extend ``owner``'s lease to now + ``lease_s``; False if ``owner`` no longer holds the job or it finished."""
        moment = self._now(now)
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE jobs SET lease_expires = ? WHERE name = ? AND owner = ? AND status IN (?, ?)",
                (_ts(moment + timedelta(seconds=lease_s)), name, owner, *(s.value for s in ACTIVE)),
            )
            return cursor.rowcount == 1

    def release(self, name: str, owner: str) -> bool:
        """Give the job up (e.g. on a clean worker shutdown) so another runner may resume it at once."""
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE jobs SET owner = NULL, lease_expires = NULL WHERE name = ? AND owner = ?",
                (name, owner),
            )
            return cursor.rowcount == 1

    def resumable_jobs(self, now: datetime | None = None) -> list[JobRecord]:
        """InProgress or Stopping jobs that no runner holds (never claimed, released, or lease expired), oldest first."""
        rows = self._conn().execute(
            "SELECT * FROM jobs WHERE status IN (?, ?) AND (owner IS NULL OR lease_expires IS NULL"
            " OR lease_expires <= ?) ORDER BY creation_time, name",
            (*(s.value for s in ACTIVE), _ts(self._now(now))),
        )
        return [JobRecord._from_row(row) for row in rows]

    def active_jobs_writing_to(self, output_uri: str, *, exclude: str | None = None) -> list[JobRecord]:
        """InProgress/Stopping jobs whose ``S3OutputPath`` overlaps ``output_uri`` as a raw string prefix (either one
        starts with the other), other than ``exclude``. A caller starting a job refuses (409) when this is non-empty,
        since two jobs on one output prefix overwrite each other's ``.out`` objects (RELIABILITY §4 row 17)."""
        rows = self._conn().execute(
            "SELECT * FROM jobs WHERE status IN (?, ?) ORDER BY creation_time, name",
            tuple(s.value for s in ACTIVE),
        )
        found = []
        for row in rows:
            record = JobRecord._from_row(row)
            other = (record.request.get("TransformOutput") or {}).get("S3OutputPath")
            if not isinstance(other, str) or (exclude is not None and record.name.lower() == exclude.lower()):
                continue
            if other.startswith(output_uri) or output_uri.startswith(other):
                found.append(record)
        return found

    def add_files(self, name: str, plans: Iterable[Any], *, owner: str | None = None) -> int:
        """Register the job's input files (objects with ``input_key``, ``output_key``, ``size``; mappings or tuples
        work too) as pending, in order. Idempotent: a file already registered with the same output key and size is
        skipped; a different one is a ``Conflict`` (the plan changed under a running job). Returns how many were new."""
        items = [_plan_fields(plan) for plan in plans]
        now = _ts(self._now())
        with self._write() as conn:
            row = self._job_row(conn, name)
            self._check_active(row)
            self._check_owner(row, owner)
            known = {
                r["input_key"]: (r["output_key"], r["size"])
                for r in conn.execute(
                    "SELECT input_key, output_key, size FROM job_files WHERE job = ?", (name,)
                )
            }
            seq = len(known)
            added = 0
            for input_key, output_key, size in items:
                if input_key in known:
                    if known[input_key] != (output_key, size):
                        raise Conflict(
                            f"transform job {name}: input {input_key!r} is already planned as "
                            f"{known[input_key][0]!r} ({known[input_key][1]} bytes), not {output_key!r} ({size} bytes)"
                        )
                    continue
                conn.execute(
                    "INSERT INTO job_files (job, input_key, output_key, size, state, updated, seq)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (row["name"], input_key, output_key, size, FileState.PENDING.value, now, seq),
                )
                known[input_key] = (output_key, size)
                seq += 1
                added += 1
            self._recount(conn, name)
            return added

    def files(self, name: str, state: FileState | str | None = None) -> list[FileCheckpoint]:
        """The job's file checkpoints in plan order, optionally only those in ``state``."""
        conn = self._conn()
        self._job_row(conn, name)
        if state is None:
            rows = conn.execute("SELECT * FROM job_files WHERE job = ? ORDER BY seq", (name,))
        else:
            rows = conn.execute(
                "SELECT * FROM job_files WHERE job = ? AND state = ? ORDER BY seq",
                (name, FileState(state).value),
            )
        return [FileCheckpoint._from_row(row) for row in rows]

    def mark_file(
        self,
        name: str,
        input_key: str,
        state: FileState | str,
        *,
        records: int | None = None,
        records_failed: int | None = None,
        error: str | None = None,
        owner: str | None = None,
    ) -> FileCheckpoint:
        """Move one file to ``state`` and update the job's counters in the same transaction.

        Marking a file with the state it already has is a no-op (so a retried commit is harmless). ``records`` /
        ``records_failed``, when given, replace the file's counts (else those accumulated by ``add_progress`` stay).
        ``done`` counts the whole file's bytes; back to ``pending`` (a retry of a failed file) zeroes its progress.
        """
        target = FileState(state)
        now = _ts(self._now())
        with self._write() as conn:
            job = self._job_row(conn, name)
            self._check_active(job)
            self._check_owner(job, owner)
            row = self._file_row(conn, name, input_key)
            current = FileState(row["state"])
            if current is target:
                return FileCheckpoint._from_row(row)
            check_file_transition(current, target, key=input_key)
            new_records = row["records"] if records is None else records
            new_failed = row["records_failed"] if records_failed is None else records_failed
            new_bytes = row["bytes_done"]
            new_error = None
            if target is FileState.DONE:
                new_bytes = row["size"]
            elif target is FileState.FAILED:
                new_error = _reason(error or "failed")
            else:
                new_records = new_failed = new_bytes = 0
            conn.execute(
                "UPDATE job_files SET state = ?, records = ?, records_failed = ?, bytes_done = ?, error = ?,"
                " updated = ? WHERE job = ? AND input_key = ?",
                (target.value, new_records, new_failed, new_bytes, new_error, now, name, input_key),
            )
            conn.execute(
                "UPDATE jobs SET files_done = files_done + ?, files_failed = files_failed + ?,"
                " records_done = records_done + ?, records_failed = records_failed + ?, bytes_done = bytes_done + ?"
                " WHERE name = ?",
                (
                    (target is FileState.DONE) - (current is FileState.DONE),
                    (target is FileState.FAILED) - (current is FileState.FAILED),
                    new_records - row["records"],
                    new_failed - row["records_failed"],
                    new_bytes - row["bytes_done"],
                    name,
                ),
            )
            return FileCheckpoint._from_row(self._file_row(conn, name, input_key))

    def add_progress(
        self,
        name: str,
        input_key: str,
        *,
        records: int = 0,
        records_failed: int = 0,
        bytes_read: int = 0,
        owner: str | None = None,
    ) -> None:
        """Add to a pending file's record/byte progress and its job's counters in one transaction.

        Each call is a write; call it per mini-batch or less often, not per record.
        """
        with self._write() as conn:
            job = self._job_row(conn, name)
            self._check_active(job)
            self._check_owner(job, owner)
            row = self._file_row(conn, name, input_key)
            if row["state"] != FileState.PENDING.value:
                raise Conflict(
                    f"input file {input_key!r} of transform job {name} is {row['state']}, not pending"
                )
            conn.execute(
                "UPDATE job_files SET records = records + ?, records_failed = records_failed + ?,"
                " bytes_done = bytes_done + ? WHERE job = ? AND input_key = ?",
                (records, records_failed, bytes_read, name, input_key),
            )
            conn.execute(
                "UPDATE jobs SET records_done = records_done + ?, records_failed = records_failed + ?,"
                " bytes_done = bytes_done + ? WHERE name = ?",
                (records, records_failed, bytes_read, name),
            )

    def _file_row(self, conn: sqlite3.Connection, name: str, input_key: str) -> sqlite3.Row:
        row = conn.execute(
            "SELECT * FROM job_files WHERE job = ? AND input_key = ?", (name, input_key)
        ).fetchone()
        if row is None:
            raise NotFound(f"transform job {name} has no input file {input_key!r}")
        return row

    def _check_active(self, row: sqlite3.Row) -> None:
        if JobStatus(row["status"]) not in ACTIVE:
            raise Conflict(f"transform job {row['name']} is {row['status']}; its files can no longer change")

    def _recount(self, conn: sqlite3.Connection, name: str) -> None:
        conn.execute(
            """UPDATE jobs SET
                files_total = (SELECT COUNT(*) FROM job_files WHERE job = :n),
                bytes_total = (SELECT COALESCE(SUM(size), 0) FROM job_files WHERE job = :n),
                files_done = (SELECT COUNT(*) FROM job_files WHERE job = :n AND state = 'done'),
                files_failed = (SELECT COUNT(*) FROM job_files WHERE job = :n AND state = 'failed'),
                records_done = (SELECT COALESCE(SUM(records), 0) FROM job_files WHERE job = :n),
                records_failed = (SELECT COALESCE(SUM(records_failed), 0) FROM job_files WHERE job = :n),
                bytes_done = (SELECT COALESCE(SUM(bytes_done), 0) FROM job_files WHERE job = :n)
            WHERE name = :n""",
            {"n": name},
        )

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

    @staticmethod
    def _name_filter(name_contains: str | None, where: list[str], params: list[Any]) -> None:
        if name_contains is None:
            return
        if not re.fullmatch(r"[a-zA-Z0-9\-]{1,63}", name_contains):
            raise ValidationError(
                f"NameContains {name_contains!r} must be 1-63 letters, digits or hyphens",
                field="NameContains",
            )
        where.append("instr(lower(name), lower(?)) > 0")
        params.append(name_contains)

    def _page(
        self,
        table: str,
        where: list[str],
        params: list[Any],
        columns: Mapping[str, str],
        sort_by: str,
        sort_order: str,
        max_results: int,
        next_token: str | None,
    ) -> tuple[list[sqlite3.Row], str | None]:
        if sort_by not in columns:
            raise ValidationError(
                f"SortBy must be one of {', '.join(columns)}, got {sort_by!r}", field="SortBy"
            )
        if sort_order not in ("Ascending", "Descending"):
            raise ValidationError(
                f"SortOrder must be Ascending or Descending, got {sort_order!r}", field="SortOrder"
            )
        if isinstance(max_results, bool) or not isinstance(max_results, int) or not 1 <= max_results <= 100:
            raise ValidationError(
                f"MaxResults must be an integer from 1 to 100, got {max_results!r}", field="MaxResults"
            )
        keys = [columns[sort_by]] + (["name"] if columns[sort_by] != "name" else [])
        scope = spec_hash(table, where, params, sort_by, sort_order)[:16]
        if next_token is not None:
            after = _decode_token(next_token, scope, len(keys))
            op = ">" if sort_order == "Ascending" else "<"
            where = [*where, f"({', '.join(keys)}) {op} ({', '.join('?' * len(keys))})"]
            params = [*params, *after]
        direction = "ASC" if sort_order == "Ascending" else "DESC"
        sql = f"SELECT * FROM {table}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY " + ", ".join(f"{key} {direction}" for key in keys) + " LIMIT ?"
        rows = self._conn().execute(sql, (*params, max_results + 1)).fetchall()
        if len(rows) <= max_results:
            return rows, None
        rows = rows[:max_results]
        return rows, _encode_token(scope, [rows[-1][key] for key in keys])


def _encode_token(scope: str, position: list[Any]) -> str:
    raw = json.dumps({"v": 1, "s": scope, "k": position}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, scope: str, width: int) -> list[Any]:
    def invalid(why: str) -> ValidationError:
        return ValidationError(f'Invalid pagination token because "{why}".', field="NextToken")

    if not isinstance(token, str) or not token or len(token) > MAX_NEXT_TOKEN:
        raise invalid("it is empty or too long")
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):
        raise invalid("it is not a token this service issued") from None
    if not isinstance(data, dict) or data.get("v") != 1 or not isinstance(data.get("k"), list):
        raise invalid("it is not a token this service issued")
    if data.get("s") != scope:
        raise invalid("it was issued for a request with other filters or sorting")
    position = data["k"]
    if len(position) != width or not all(isinstance(value, str) for value in position):
        raise invalid("it is not a token this service issued")
    return position
