"""Per-file checkpoints of a transform job (the ``job_files`` table), as a part of ``JobStore``.

A job's record/byte counters always equal the sum over its files: ``add_progress`` adds to a pending file and its
job in one transaction, ``mark_file`` finalises a file and recounts the job in the same transaction. Likewise a job's
warning count is the sum of its files' (``set_file_warnings``); a file that goes back to pending loses its warnings.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from batchlane.errors import Conflict, NotFound
from batchlane.jobs.db import _reason, _ts
from batchlane.jobs.records import FileCheckpoint, _plan_fields
from batchlane.jobs.state import FileState, check_file_transition


class CheckpointTable:
    """File checkpoint methods of ``JobStore`` (they use its ``_write``, ``_job_row`` and owner checks)."""

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
            if target is FileState.PENDING:
                conn.execute(
                    "UPDATE job_files SET warnings = 0, warning = NULL WHERE job = ? AND input_key = ?",
                    (name, input_key),
                )
                self._recount_warnings(conn, name)
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
            self._pending_file_row(conn, name, input_key, owner)
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

    def reset_progress(self, name: str, input_key: str, *, owner: str | None = None) -> None:
        """Zero a pending file's progress and warnings (and the job's counters) before it is redone from its start
        in the same run, e.g. on a restarted model server, so its records are not counted twice."""
        with self._write() as conn:
            self._pending_file_row(conn, name, input_key, owner)
            conn.execute(
                "UPDATE job_files SET records = 0, records_failed = 0, bytes_done = 0, warnings = 0, warning = NULL"
                " WHERE job = ? AND input_key = ?",
                (name, input_key),
            )
            self._recount(conn, name)

    def set_file_warnings(
        self, name: str, input_key: str, count: int, message: str | None, *, owner: str | None = None
    ) -> None:
        """Set a pending file's warning count and first warning message, and the job's totals, in one transaction.

        Setting (not adding) keeps a redone file from counting its warnings twice."""
        with self._write() as conn:
            self._pending_file_row(conn, name, input_key, owner)
            conn.execute(
                "UPDATE job_files SET warnings = ?, warning = ? WHERE job = ? AND input_key = ?",
                (count, _reason(message) if message else None, name, input_key),
            )
            self._recount_warnings(conn, name)

    def _pending_file_row(
        self, conn: sqlite3.Connection, name: str, input_key: str, owner: str | None
    ) -> sqlite3.Row:
        """The file's row, after checking that its job is active and held by ``owner`` and that it is pending."""
        job = self._job_row(conn, name)
        self._check_active(job)
        self._check_owner(job, owner)
        row = self._file_row(conn, name, input_key)
        if row["state"] != FileState.PENDING.value:
            raise Conflict(f"input file {input_key!r} of transform job {name} is {row['state']}, not pending")
        return row

    def _file_row(self, conn: sqlite3.Connection, name: str, input_key: str) -> sqlite3.Row:
        row = conn.execute(
            "SELECT * FROM job_files WHERE job = ? AND input_key = ?", (name, input_key)
        ).fetchone()
        if row is None:
            raise NotFound(f"transform job {name} has no input file {input_key!r}")
        return row

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
        self._recount_warnings(conn, name)

    def _recount_warnings(self, conn: sqlite3.Connection, name: str) -> None:
        conn.execute(
            """UPDATE jobs SET
                warnings = (SELECT COALESCE(SUM(warnings), 0) FROM job_files WHERE job = :n),
                first_warning = (SELECT warning FROM job_files WHERE job = :n AND warning IS NOT NULL
                                 ORDER BY seq LIMIT 1)
            WHERE name = :n""",
            {"n": name},
        )
