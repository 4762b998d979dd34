"""The transform-job lifecycle: ``JobStatus``, the allowed ``TRANSITIONS``, and per-file ``FileState``. Pure.

Job states are SageMaker's ``TransformJobStatus`` values (docs/transform.md). A job is created ``InProgress``; there is
no separate "Starting" state for transform jobs.

::

    InProgress ──► Completed
        │    └───► Failed
        ▼
    Stopping ──► Stopped
             └─► Failed

Decisions:

* ``Stopping → Failed`` is allowed: the runner may crash or hit an error while stopping (e.g. it cannot clean up
  partial outputs), and the job must still end in a terminal state that says why. SageMaker documents only
  ``Stopping → Stopped``.
* ``Stopping → Completed`` is refused: once a stop was accepted the job ends ``Stopped`` (or ``Failed``), even if the
  runner happened to finish the last file at the same moment, so the caller who asked to stop gets a predictable
  answer. botocore's ``TransformJobCompletedOrStopped`` waiter treats both as success anyway.
* Terminal states (``Completed``, ``Failed``, ``Stopped``) have no way out through ``TRANSITIONS``; a re-run is a
  new job. The one exception is batchlane's own ``jobs resume`` (SageMaker has no resume): it reopens a ``Stopped``
  or ``Failed`` job (``REOPENABLE``) as ``InProgress``, keeping its committed files and retrying its failed ones
  (``JobStore.reopen``). The control plane never does this.
* Moving to the state a job is already in is not a transition (``check_transition`` refuses it); idempotent
  operations such as stop handle that case themselves.

Files: ``pending → done | failed`` and ``failed → pending`` (an explicit retry, e.g. when a job is re-run after a
transient fault). ``done`` is final: a committed output is never re-done, which is what makes resume safe.
"""

from __future__ import annotations

from enum import StrEnum

from batchlane import aws_names
from batchlane.errors import Conflict, ValidationError

# SageMaker's TransformJobName rule (aws_names).
JOB_NAME_PATTERN = aws_names.JOB_NAME_RE


class JobStatus(StrEnum):
    """SageMaker's TransformJobStatus."""

    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPING = "Stopping"
    STOPPED = "Stopped"

    @property
    def is_terminal(self) -> bool:
        """Whether the job has finished (Completed, Failed or Stopped)."""
        return self in TERMINAL

    @classmethod
    def parse(cls, value: str | JobStatus, *, field: str = "StatusEquals") -> JobStatus:
        """The status named by ``value``; ``ValidationError`` in AWS's wording if it is not one of them."""
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(s.value for s in cls)
            raise ValidationError(
                f"1 validation error detected: Value {value!r} at '{field}' failed to satisfy constraint: "
                f"Member must satisfy enum value set: [{allowed}]",
                field=field,
            ) from None


TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.STOPPED})
ACTIVE = frozenset({JobStatus.IN_PROGRESS, JobStatus.STOPPING})
REOPENABLE = frozenset({JobStatus.STOPPED, JobStatus.FAILED})

TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.IN_PROGRESS: frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.STOPPING}),
    JobStatus.STOPPING: frozenset({JobStatus.STOPPED, JobStatus.FAILED}),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.STOPPED: frozenset(),
}


def can_transition(current: JobStatus | str, target: JobStatus | str) -> bool:
    """Whether a job in ``current`` may move to ``target``."""
    return JobStatus(target) in TRANSITIONS[JobStatus(current)]


def check_transition(current: JobStatus | str, target: JobStatus | str, *, name: str | None = None) -> None:
    """Raise ``Conflict`` unless ``current → target`` is in ``TRANSITIONS``."""
    if not can_transition(current, target):
        job = f"transform job {name}" if name else "a transform job"
        raise Conflict(f"cannot move {job} from {JobStatus(current).value} to {JobStatus(target).value}")


def check_job_name(name: str, *, field: str = "TransformJobName") -> str:
    """``name`` if it matches SageMaker's job-name rule, else ``ValidationError`` naming the field."""
    if not isinstance(name, str) or not JOB_NAME_PATTERN.fullmatch(name):
        raise ValidationError(
            f"{field} {name!r} is invalid: use {aws_names.JOB_NAME_RULE}",
            field=field,
        )
    return name


class FileState(StrEnum):
    """The checkpoint state of one input file of a job."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


FILE_TRANSITIONS: dict[FileState, frozenset[FileState]] = {
    FileState.PENDING: frozenset({FileState.DONE, FileState.FAILED}),
    FileState.FAILED: frozenset({FileState.PENDING}),
    FileState.DONE: frozenset(),
}


def check_file_transition(
    current: FileState | str, target: FileState | str, *, key: str | None = None
) -> None:
    """Raise ``Conflict`` unless the file checkpoint may move from ``current`` to ``target``."""
    if FileState(target) not in FILE_TRANSITIONS[FileState(current)]:
        what = f"input file {key!r}" if key else "an input file"
        raise Conflict(f"cannot move {what} from {FileState(current).value} to {FileState(target).value}")
