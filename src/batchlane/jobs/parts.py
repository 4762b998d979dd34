"""Per-part checkpoints of a transform job (the ``job_parts`` table), as a part of ``JobStore`` (docs/parts.md).

A *part* is a byte range of one input file, cut at a mini-batch boundary by ``transform.parts.plan_parts``. The
plan of a file is recorded once, when the file is first planned (``add_parts``); a resumed job reuses it, so the
cut never changes under committed parts. A part is ``pending`` until its output object is committed, then ``done``
with its counts; only the file's own ``mark_file`` (``CheckpointTable``) moves the job's file counters, so a
file's records are the sum of its parts' when the file is done.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from batchlane.errors import Conflict, ValidationError
from batchlane.jobs.db import _reason, _ts

PART_PENDING = "pending"
PART_DONE = "done"


@dataclass(frozen=True)
class PartCheckpoint:
    """One stored part: its place in the file (``number`` of ``count``, bytes ``start``..``end``, ``end`` None =
    to the end of the object; ``first_index``/``first_line`` of its first record) and, once ``done``, its counts."""

    input_key: str
    number: int
    count: int
    start: int
    end: int | None
    first_index: int
    first_line: int
    state: str = PART_PENDING
    records: int = 0
    records_failed: int = 0
    bytes_read: int = 0
    warnings: int = 0
    warning: str | None = None
    last_error: str | None = None

    @property
    def done(self) -> bool:
        return self.state == PART_DONE

    @property
    def cut(self) -> tuple[int, int, int | None, int, int]:
        """What must not change between two plans of the same file."""
        return (self.count, self.start, self.end, self.first_index, self.first_line)

    @classmethod
    def _from_row(cls, row: sqlite3.Row) -> PartCheckpoint:
        return cls(
            input_key=row["input_key"],
            number=row["number"],
            count=row["count"],
            start=row["start"],
            end=row["end"],
            first_index=row["first_index"],
            first_line=row["first_line"],
            state=row["state"],
            records=row["records"],
            records_failed=row["records_failed"],
            bytes_read=row["bytes_read"],
            warnings=row["warnings"],
            warning=row["warning"],
            last_error=row["last_error"],
        )


def _cut_of(part: Any) -> tuple[int, int, int, int | None, int, int]:
    get = part.get if isinstance(part, dict) else lambda name: getattr(part, name)
    end = get("end")
    return (
        int(get("number")),
        int(get("count")),
        int(get("start")),
        None if end is None else int(end),
        int(get("first_index")),
        int(get("first_line")),
    )


class PartTable:
    """Part checkpoint methods of ``JobStore`` (they use its ``_write``, ``_job_row`` and owner checks)."""

    def add_parts(
        self, name: str, input_key: str, parts: Iterable[Any], *, owner: str | None = None
    ) -> list[PartCheckpoint]:
        """Record the part plan of one pending input file (objects or dicts with ``number``, ``count``, ``start``,
        ``end``, ``first_index``, ``first_line``) and return the stored plan. Idempotent: a file planned before
        keeps its plan when the same plan comes again; a different plan is a ``Conflict`` (the cut must not move
        under committed parts)."""
        cuts = sorted(_cut_of(part) for part in parts)
        if (
            not cuts
            or [cut[0] for cut in cuts] != list(range(len(cuts)))
            or any(cut[1] != len(cuts) for cut in cuts)
        ):
            raise ValidationError(f"part plan of {input_key!r} must number its parts 0..count-1")
        now = _ts(self._now())
        with self._write() as conn:
            self._pending_file_row(conn, name, input_key, owner)  # type: ignore[attr-defined]
            stored = self._part_rows(conn, name, input_key)
            if stored:
                known = [(row.number, *row.cut) for row in stored]
                if known != cuts:
                    raise Conflict(
                        f"transform job {name}: input {input_key!r} is already planned as {len(stored)} parts "
                        f"with other byte ranges; a resumed job keeps its first plan"
                    )
                return stored
            conn.executemany(
                'INSERT INTO job_parts (job, input_key, number, count, start, "end", first_index, first_line,'
                " state, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(name, input_key, *cut, PART_PENDING, now) for cut in cuts],
            )
            return self._part_rows(conn, name, input_key)

    def parts(self, name: str, input_key: str | None = None) -> list[PartCheckpoint]:
        """The job's stored parts (of one input file, or all) in file-plan then part order."""
        conn = self._conn()  # type: ignore[attr-defined]
        self._job_row(conn, name)  # type: ignore[attr-defined]
        if input_key is not None:
            return self._part_rows(conn, name, input_key)
        rows = conn.execute(
            "SELECT p.* FROM job_parts p JOIN job_files f ON f.job = p.job AND f.input_key = p.input_key"
            " WHERE p.job = ? ORDER BY f.seq, p.number",
            (name,),
        )
        return [PartCheckpoint._from_row(row) for row in rows]

    def mark_part(
        self,
        name: str,
        input_key: str,
        number: int,
        *,
        records: int,
        records_failed: int = 0,
        bytes_read: int = 0,
        warnings: int = 0,
        warning: str | None = None,
        last_error: str | None = None,
        owner: str | None = None,
    ) -> PartCheckpoint:
        """Commit one part (its output object is written) with its counts. Fenced: the job must be active and
        held by ``owner`` and the file pending. Marking a done part again is a no-op, so a retried commit is
        harmless."""
        now = _ts(self._now())
        with self._write() as conn:
            self._pending_file_row(conn, name, input_key, owner)  # type: ignore[attr-defined]
            row = self._part_row(conn, name, input_key, number)
            if row["state"] == PART_DONE:
                return PartCheckpoint._from_row(row)
            conn.execute(
                "UPDATE job_parts SET state = ?, owner = ?, records = ?, records_failed = ?, bytes_read = ?,"
                " warnings = ?, warning = ?, last_error = ?, updated = ?"
                " WHERE job = ? AND input_key = ? AND number = ?",
                (
                    PART_DONE,
                    owner,
                    records,
                    records_failed,
                    bytes_read,
                    warnings,
                    _reason(warning) if warning else None,
                    _reason(last_error) if last_error else None,
                    now,
                    name,
                    input_key,
                    number,
                ),
            )
            return PartCheckpoint._from_row(self._part_row(conn, name, input_key, number))

    def reset_parts(self, name: str, input_key: str, *, owner: str | None = None) -> None:
        """Forget the committed parts of one file (it failed, or is retried from its start): all pending again."""
        now = _ts(self._now())
        with self._write() as conn:
            job = self._job_row(conn, name)  # type: ignore[attr-defined]
            self._check_owner(job, owner)  # type: ignore[attr-defined]
            conn.execute(
                "UPDATE job_parts SET state = ?, owner = NULL, records = 0, records_failed = 0, bytes_read = 0,"
                " warnings = 0, warning = NULL, last_error = NULL, updated = ? WHERE job = ? AND input_key = ?",
                (PART_PENDING, now, name, input_key),
            )

    def part_counts(self, name: str) -> tuple[int, int]:
        """``(done, total)`` parts of the job's files planned so far (files not yet planned count for nothing)."""
        conn = self._conn()  # type: ignore[attr-defined]
        self._job_row(conn, name)  # type: ignore[attr-defined]
        row = conn.execute(
            "SELECT COUNT(*) AS total, COALESCE(SUM(state = ?), 0) AS done FROM job_parts WHERE job = ?",
            (PART_DONE, name),
        ).fetchone()
        return int(row["done"]), int(row["total"])

    def _part_rows(self, conn: sqlite3.Connection, name: str, input_key: str) -> list[PartCheckpoint]:
        rows = conn.execute(
            "SELECT * FROM job_parts WHERE job = ? AND input_key = ? ORDER BY number", (name, input_key)
        )
        return [PartCheckpoint._from_row(row) for row in rows]

    def _part_row(self, conn: sqlite3.Connection, name: str, input_key: str, number: int) -> sqlite3.Row:
        row = conn.execute(
            "SELECT * FROM job_parts WHERE job = ? AND input_key = ? AND number = ?",
            (name, input_key, number),
        ).fetchone()
        if row is None:
            raise Conflict(
                f"input file {input_key!r} of transform job {name} has no part {number} in its plan"
            )
        return row


__all__ = ["PART_DONE", "PART_PENDING", "PartCheckpoint", "PartTable"]
