"""The rows of the job store as frozen dataclasses: a job, one file's checkpoint, a registered model."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from batchlane.jobs.db import _dt, utcnow
from batchlane.jobs.state import FileState, JobStatus


@dataclass(frozen=True)
class JobRecord:
    """One transform job as stored. ``request`` is the CreateTransformJob request, ``options`` batchlane's extras.
    ``warnings`` sums its files' warnings; ``first_warning`` is the first file's (in plan order). ``restarts``
    counts the model-server restarts of all its runs (docs/transform.md, "Recovery")."""

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
    warnings: int = 0
    first_warning: str | None = None
    restarts: int = 0

    @property
    def model_name(self) -> str | None:
        return self.request.get("ModelName")

    @property
    def engine(self) -> str:
        """The engine the job runs on (its job option ``engine``; ``local`` when unset): orphan sweeps resume a job
        only on its own engine."""
        return str((self.options.get("job") or {}).get("engine", "local"))

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
            warnings=row["warnings"],
            first_warning=row["first_warning"],
            restarts=row["restarts"],
        )


@dataclass(frozen=True)
class FileCheckpoint:
    """The checkpoint of one input file of a job. ``warnings`` counts its warnings (e.g. mini-batches whose result
    count differed from their record count); ``warning`` is the first one's message."""

    input_key: str
    output_key: str
    size: int
    state: FileState
    records: int
    records_failed: int
    bytes_done: int
    error: str | None
    updated: datetime
    warnings: int = 0
    warning: str | None = None

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
            warnings=row["warnings"],
            warning=row["warning"],
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
