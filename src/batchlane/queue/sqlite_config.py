"""The embedded queue's stored settings: one row per queue in the ``queues`` table, shared by every process.

A queue is created with its dead-letter queue ``<name>-dlq``; a name ending in ``-dlq`` is created as a dead-letter
queue (no receive limit, no retention). Settings passed for an existing queue update its row.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchlane.errors import NotFound, ValidationError
from batchlane.queue.base import (
    DEAD_LETTER_SUFFIX,
    DEFAULT_MAX_RECEIVE_COUNT,
    DEFAULT_RETENTION_S,
    DEFAULT_VISIBILITY_TIMEOUT_S,
    MAX_VISIBILITY_TIMEOUT_S,
    check_range,
    dead_letter_name,
    validate_queue_name,
)

MIN_RETENTION_S, MAX_RETENTION_S = 60, 14 * 86_400  # SQS's range
MAX_RECEIVE_COUNT_LIMIT = 1000  # SQS's range for maxReceiveCount


@dataclass(frozen=True)
class QueueConfig:
    """A queue's stored settings (shared by every process using the file)."""

    visibility_timeout_s: float
    max_receive_count: int | None
    retention_s: float | None
    dead_letter_queue: str | None


def validate_config(visibility_timeout_s: Any, max_receive_count: Any, retention_s: Any) -> None:
    """ValidationError naming the setting if one given (not None) is outside SQS's range."""
    if visibility_timeout_s is not None:
        check_range(visibility_timeout_s, 0, MAX_VISIBILITY_TIMEOUT_S, "visibility_timeout_s")
    if max_receive_count is not None:
        check_range(max_receive_count, 1, MAX_RECEIVE_COUNT_LIMIT, "max_receive_count")
        if not isinstance(max_receive_count, int):
            raise ValidationError("max_receive_count must be an integer", field="max_receive_count")
    if retention_s is not None:
        check_range(retention_s, MIN_RETENTION_S, MAX_RETENTION_S, "retention_s")


def _number(value: float | None) -> Any:
    """Whole seconds as int (as SQS reports them); fractions (tests) as float."""
    return int(value) if value is not None and float(value).is_integer() else value


def ensure_queue_row(
    conn: sqlite3.Connection,
    name: str,
    visibility_timeout_s: float | None,
    max_receive_count: int | None,
    retention_s: float | None,
    clock: Callable[[], float],
) -> None:
    """Create queue ``name`` (and its dead-letter queue) with these settings, or update the ones given."""
    row = conn.execute("SELECT name FROM queues WHERE name = ?", (name,)).fetchone()
    if row is None:
        is_dlq = name.endswith(DEAD_LETTER_SUFFIX) or name.endswith(DEAD_LETTER_SUFFIX + ".fifo")
        dlq = None if is_dlq else dead_letter_name(name)
        conn.execute(
            "INSERT INTO queues VALUES (?, ?, ?, ?, ?, ?)",
            (
                name,
                DEFAULT_VISIBILITY_TIMEOUT_S if visibility_timeout_s is None else visibility_timeout_s,
                None if is_dlq else (max_receive_count or DEFAULT_MAX_RECEIVE_COUNT),
                None if is_dlq else (retention_s or DEFAULT_RETENTION_S),
                dlq,
                clock(),
            ),
        )
        if dlq is not None:
            validate_queue_name(dlq)
            ensure_queue_row(conn, dlq, None, None, None, clock)
        return
    for column, value in (
        ("visibility_timeout_s", visibility_timeout_s),
        ("max_receive_count", max_receive_count),
        ("retention_s", retention_s),
    ):
        if value is not None:
            conn.execute(f"UPDATE queues SET {column} = ? WHERE name = ?", (value, name))


def load_config(conn: sqlite3.Connection, name: str, path: Path) -> QueueConfig:
    """Queue ``name``'s settings; NotFound if the file at ``path`` has no such queue."""
    row = conn.execute("SELECT * FROM queues WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise NotFound(f"queue {name!r} does not exist in {path}", field="queue")
    return QueueConfig(
        _number(row["visibility_timeout_s"]),
        row["max_receive_count"],
        _number(row["retention_s"]),
        row["dead_letter_queue"],
    )
