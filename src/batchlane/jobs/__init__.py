"""Job lifecycle (``JobStatus`` + ``TRANSITIONS``, ``FileState``) and the SQLite ``JobStore`` (jobs, file
checkpoints, models), with SageMaker-shaped ``describe_job`` / ``summarize_job`` views."""

from batchlane.jobs.describe import describe_job, summarize_job
from batchlane.jobs.state import (
    ACTIVE,
    TERMINAL,
    TRANSITIONS,
    FileState,
    JobStatus,
    can_transition,
    check_job_name,
    check_transition,
)
from batchlane.jobs.store import FileCheckpoint, JobRecord, JobStore, ModelRow, spec_hash

__all__ = [
    "ACTIVE",
    "TERMINAL",
    "TRANSITIONS",
    "FileCheckpoint",
    "FileState",
    "JobRecord",
    "JobStatus",
    "JobStore",
    "ModelRow",
    "can_transition",
    "check_job_name",
    "check_transition",
    "describe_job",
    "spec_hash",
    "summarize_job",
]
