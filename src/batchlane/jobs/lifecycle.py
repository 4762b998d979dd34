"""How a job's run ends, the same for every front door and engine: ``finish`` and ``record_crash``.

* ``finish(store, name, status, reason, owner=...)``: the runner's end of a job. A job already ended is left as it
  is; a job asked to stop (Stopping) ends Stopped unless it failed; the write is fenced by ``owner``.
* ``record_crash(store, name, owner, exc)``: the runner itself crashed (an exception, not a job failure). The
  lease is given back so that the next orphan sweep retries the job at once; after ``max_attempts`` claims the job
  is marked Failed with the error, so a crash that happens every time cannot loop forever. The control plane's
  executor and the queue worker both call it.
"""

from __future__ import annotations

import logging

from batchlane.errors import Conflict, NotFound
from batchlane.jobs.records import JobRecord
from batchlane.jobs.state import JobStatus
from batchlane.jobs.store import JobStore

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3


def finish(
    store: JobStore, name: str, status: JobStatus, reason: str | None = None, *, owner: str | None = None
) -> JobRecord:
    """End job ``name`` with ``status`` (and ``reason``, needed for Failed); see the module docstring."""
    current = store.get_job(name)
    if current.is_terminal:
        return current
    if current.status is JobStatus.STOPPING and status is not JobStatus.FAILED:
        status = JobStatus.STOPPED
    return store.transition(name, status, failure_reason=reason, owner=owner)


def record_crash(
    store: JobStore,
    name: str,
    owner: str,
    exc: BaseException,
    *,
    max_attempts: int | None = MAX_ATTEMPTS,
) -> JobRecord | None:
    """Record that the runner ``owner`` of job ``name`` crashed with ``exc``; returns the job as left (None when it
    is gone). ``max_attempts`` None: only give the lease back (e.g. an interrupted worker). Never raises for a job
    that another runner took over or that ended meanwhile."""
    try:
        record = store.get_job(name)
        if record.is_terminal or record.owner not in (None, owner):
            return record
        if max_attempts is not None and isinstance(exc, Exception) and record.attempts >= max_attempts:
            reason = f"InternalError: the job runner crashed {record.attempts} times; last error: {exc}"
            log.error("job %s: gave up after %d attempts", name, record.attempts)
            return store.transition(name, JobStatus.FAILED, failure_reason=reason, owner=record.owner)
        if record.owner == owner:
            store.release(name, owner)  # the next sweep retries it
        return store.get_job(name)
    except (Conflict, NotFound):
        return None
    except Exception:
        log.exception("job %s: could not record the runner crash", name)
        return None
