"""Runner leases: who runs a job, and fencing so that only that runner may change it (engine-neutral).

A runner is named by ``runner_id()``, ``host:pid:random``. It ``claim``s a job for ``lease_s`` seconds and
``renew``s the lease while it works; a claim is refused while another owner's lease is unexpired. Writes that take an
``owner`` (``transition``, ``mark_file``, ``add_progress``) are refused for an owner that no longer holds the job, so
a paused "zombie" runner cannot commit over its successor (docs/reliability.md rows 11, 14).

Nothing here assumes the runner is a thread of this process: a background process, a runner on another host or a
Ray actor holds a lease the same way. Only ``owner_is_dead`` uses the host and pid, to take a job over at once from
a runner of this host that was killed; a runner elsewhere is trusted until its lease expires.

An **orphan** is an InProgress or Stopping job that no live runner holds (never claimed, released, lease expired,
or its owner a dead process of this host). ``find_orphans`` is the one sweep that every front door (the control
plane's executor, the queue worker, ``batchlane jobs resume --all``) uses to pick them up.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from batchlane.errors import Conflict, ValidationError
from batchlane.jobs.db import _dt, _ts, utcnow
from batchlane.jobs.records import JobRecord
from batchlane.jobs.state import ACTIVE, FileState, JobStatus

if TYPE_CHECKING:
    from batchlane.jobs.store import JobStore

DEFAULT_LEASE_S = 30.0


def runner_id(host: str | None = None) -> str:
    """``host:pid:random``: unique per runner, and tells a later runner on the same host whether we are alive."""
    return f"{host or socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_host_pid(owner: str | None) -> tuple[str, int | None]:
    """The host and pid in a ``runner_id`` (pid None when the owner names none, e.g. a remote actor's own id)."""
    host, _, rest = (owner or "").partition(":")
    pid_text = rest.partition(":")[0]
    return host, int(pid_text) if pid_text.isdigit() else None


def owner_is_dead(owner: str | None) -> bool:
    """True when ``owner`` is a runner of this host whose process no longer exists (e.g. it was SIGKILLed)."""
    host, pid = owner_host_pid(owner)
    if not owner or pid is None or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def runner_alive(record: JobRecord, now: datetime | None = None) -> bool:
    """Whether a live runner holds the job (an unexpired lease whose owner is not a dead process of this host)."""
    return record.status in ACTIVE and record.lease_active(now) and not owner_is_dead(record.owner)


def is_orphan(record: JobRecord, now: datetime | None = None) -> bool:
    """An InProgress/Stopping job that no live runner holds: someone must resume it."""
    return record.status in ACTIVE and not runner_alive(record, now)


def find_orphans(
    store: JobStore, *, unclaimed_grace_s: float = 0.0, now: datetime | None = None
) -> list[JobRecord]:
    """The orphans of ``store``, oldest first: the one recovery sweep.

    ``unclaimed_grace_s``: leave a job that was never claimed alone for that long after its creation, so that a
    front door that creates a job and runs it itself (the CLI, a queue worker) is not raced for it.
    """
    moment = now or utcnow()
    cutoff = moment - timedelta(seconds=unclaimed_grace_s)
    found = []
    for record in store.active_jobs():
        if not is_orphan(record, moment):
            continue
        fresh = record.owner is None and record.attempts == 0 and record.creation_time > cutoff
        if unclaimed_grace_s > 0 and fresh:
            continue
        found.append(record)
    return found


def claim(store: JobStore, name: str, owner: str, lease_s: float) -> bool:
    """Take job ``name`` for ``owner``; a lease held by a dead runner of this host is taken over at once. False
    when the job is finished or a live runner holds it."""
    if store.claim(name, owner, lease_s):
        return True
    record = store.get_job(name)
    if owner_is_dead(record.owner) and store.release(name, record.owner or ""):
        return store.claim(name, owner, lease_s)
    return False


class LeaseTable:
    """The lease columns of the ``jobs`` table, as a part of ``JobStore`` (uses its ``_write``/``_job_row``)."""

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
                    "UPDATE job_files SET records = 0, records_failed = 0, bytes_done = 0, warnings = 0,"
                    " warning = NULL WHERE job = ? AND state = ?",
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

    def active_jobs(self) -> list[JobRecord]:
        """Every InProgress or Stopping job, oldest first."""
        rows = self._conn().execute(
            "SELECT * FROM jobs WHERE status IN (?, ?) ORDER BY creation_time, name",
            tuple(s.value for s in ACTIVE),
        )
        return [JobRecord._from_row(row) for row in rows]

    def resumable_jobs(self, now: datetime | None = None) -> list[JobRecord]:
        """InProgress or Stopping jobs whose lease is free (never claimed, released, or expired), oldest first.
        ``find_orphans`` adds the jobs of dead runners of this host whose lease has not run out yet."""
        rows = self._conn().execute(
            "SELECT * FROM jobs WHERE status IN (?, ?) AND (owner IS NULL OR lease_expires IS NULL"
            " OR lease_expires <= ?) ORDER BY creation_time, name",
            (*(s.value for s in ACTIVE), _ts(self._now(now))),
        )
        return [JobRecord._from_row(row) for row in rows]

    def _check_owner(self, row: sqlite3.Row, owner: str | None) -> None:
        """Fencing: ``Conflict`` unless ``owner`` (when given) holds the job."""
        if owner is not None and row["owner"] != owner:
            holder = row["owner"] or "nobody"
            raise Conflict(f"transform job {row['name']} is held by {holder}, not {owner}")
