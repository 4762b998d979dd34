"""The embedded queue: any number of named queues with SQS semantics in one SQLite file, with fenced leases.

Every state change is one ``BEGIN IMMEDIATE`` transaction, so concurrent consumers (threads or processes) never get
the same message under two live leases. A receive claims a message: it increments the receive count, draws a new
lease token and hides the message until ``now + visibility timeout``. The receipt handle carries that token, and
``delete``/``change_visibility``/``dead_letter`` refuse a receipt whose lease is over (expired, released, or replaced
by another consumer's receive) with :class:`~batchlane.errors.StaleReceipt`. SQS accepts such calls and may delete
the message another consumer now holds (docs/reliability.md); here a zombie worker cannot.

Where this queue differs from SQS (see docs/queue.md):

* fencing, as above; and a lease that ran out is over even when nobody has received the message again;
* a message whose next receive would exceed ``max_receive_count`` moves to the dead-letter queue with a reason
  naming the limit and the last error a consumer reported (``nack``/``change_visibility(reason=…)``);
* retention does not delete silently: a message not deleted within the retention period moves to the dead-letter
  queue with reason ``expired …``; dead-letter queues keep messages until they are redriven or purged;
* redrive keeps the message id (SQS makes new messages), resets the receive count and records the redrive;
* ``dedup_id`` deduplicates sends for 5 minutes (SQS does that only on FIFO queues).

The file, its schema and its connections are :mod:`batchlane.queue.sqlite_db`; the queues' stored settings
:mod:`~batchlane.queue.sqlite_config`; dead letters, retention and redrive :mod:`~batchlane.queue.sqlite_deadletter`;
the batch actions :mod:`~batchlane.queue.sqlite_batch`. Times come from ``clock`` (Unix seconds; injectable so tests
can pass hours without sleeping); long polling waits on the real monotonic clock.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from batchlane.errors import StaleReceipt, ValidationError
from batchlane.queue.base import (
    DEFAULT_QUEUE_NAME,
    MAX_DELAY_S,
    MAX_MESSAGES_PER_RECEIVE,
    MAX_VISIBILITY_TIMEOUT_S,
    MAX_WAIT_S,
    Message,
    Receipt,
    SendEntry,
    check_range,
    receipt_of,
    validate_body,
    validate_queue_name,
)
from batchlane.queue.sqlite_batch import SqliteBatchActions
from batchlane.queue.sqlite_config import (
    MAX_RECEIVE_COUNT_LIMIT,
    MAX_RETENTION_S,
    MIN_RETENTION_S,
    QueueConfig,
    ensure_queue_row,
    load_config,
    validate_config,
)
from batchlane.queue.sqlite_db import HISTORY_LIMIT, QueueDatabase, append_history
from batchlane.queue.sqlite_deadletter import SqliteDeadLetters

__all__ = [
    "DEDUP_WINDOW_S",
    "HISTORY_LIMIT",
    "MAX_RECEIVE_COUNT_LIMIT",
    "MAX_RETENTION_S",
    "MIN_RETENTION_S",
    "QueueConfig",
    "SqliteQueue",
]

DEDUP_WINDOW_S = 300  # as SQS FIFO's deduplication interval


def _clean_attributes(attributes: Mapping[str, str] | None) -> dict[str, str]:
    if not attributes:
        return {}
    out: dict[str, str] = {}
    for key, value in attributes.items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise ValidationError(f"message attribute {key!r} must be a non-empty name with a string value")
        out[key] = value
    return out


def _parse_receipt(receipt: Receipt) -> tuple[str, str]:
    handle = receipt_of(receipt)
    message_id, _, token = handle.rpartition(":") if isinstance(handle, str) else ("", "", "")
    if not message_id or not token:
        raise ValidationError(f"not a receipt handle of the embedded queue: {handle!r}", field="receipt")
    return message_id, token


class SqliteQueue(SqliteBatchActions, SqliteDeadLetters):
    """One named queue in a SQLite file (created with its dead-letter queue ``<name>-dlq`` if missing).

    ``visibility_timeout_s`` (default 900), ``max_receive_count`` (default 5) and ``retention_s`` (default 4 days)
    apply when the queue is created; passing them for an existing queue updates its stored settings. A name ending
    in ``-dlq`` that does not exist yet is created as a dead-letter queue (no receive limit, no retention).
    Safe to share between threads; each thread gets its own connection.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        name: str = DEFAULT_QUEUE_NAME,
        *,
        visibility_timeout_s: float | None = None,
        max_receive_count: int | None = None,
        retention_s: float | None = None,
        clock: Callable[[], float] | None = None,
        poll_interval_s: float = 0.05,
        busy_timeout_s: float = 30.0,
    ) -> None:
        self.name = validate_queue_name(name)
        validate_config(visibility_timeout_s, max_receive_count, retention_s)
        self.path = Path(path).expanduser().resolve()
        self.url = f"sqlite://{quote(str(self.path))}?queue={self.name}"
        self._clock = clock or time.time
        self._poll_interval_s = poll_interval_s
        self._db = QueueDatabase(self.path, busy_timeout_s=busy_timeout_s)
        self._dlq: SqliteQueue | None = None
        with self._tx() as conn:
            ensure_queue_row(
                conn, self.name, visibility_timeout_s, max_receive_count, retention_s, self._clock
            )

    def __repr__(self) -> str:
        return f"SqliteQueue({self.url!r})"

    def _conn(self) -> sqlite3.Connection:
        return self._db.connection()

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._db.transaction()

    def close(self) -> None:
        """Close the file's connections (call when no thread is using this object any more)."""
        self._db.close()
        if self._dlq is not None:
            self._dlq.close()

    def _config(self, conn: sqlite3.Connection) -> QueueConfig:
        return load_config(conn, self.name, self.path)

    def config(self) -> QueueConfig:
        """The queue's current stored settings."""
        return self._config(self._conn())

    @property
    def dead_letter_queue(self) -> SqliteQueue | None:
        """The dead-letter queue (``<name>-dlq``) as a queue of its own; None for a dead-letter queue."""
        name = self.config().dead_letter_queue
        if name is None:
            return None
        if self._dlq is None:
            self._dlq = SqliteQueue(
                self.path,
                name,
                clock=self._clock,
                poll_interval_s=self._poll_interval_s,
                busy_timeout_s=self._db.busy_timeout_s,
            )
        return self._dlq

    def send(
        self,
        body: str,
        *,
        dedup_id: str | None = None,
        delay_s: int = 0,
        attributes: Mapping[str, str] | None = None,
    ) -> str:
        """Enqueue ``body``; a ``dedup_id`` seen on this queue in the last 5 minutes returns the earlier id."""
        entry = SendEntry(body, dedup_id, delay_s, attributes)
        attrs = self._checked(entry)
        with self._tx() as conn:
            self._config(conn)
            return self._insert(conn, entry, attrs, self._clock())

    @staticmethod
    def _checked(entry: SendEntry) -> str:
        """Validate one message to send; its attributes as stored (JSON)."""
        validate_body(entry.body)
        check_range(entry.delay_s, 0, MAX_DELAY_S, "delay_s")
        dedup_id = entry.dedup_id
        if dedup_id is not None and not (isinstance(dedup_id, str) and 0 < len(dedup_id) <= 128):
            raise ValidationError("dedup_id must be 1-128 characters", field="dedup_id")
        return json.dumps(_clean_attributes(entry.attributes))

    def _insert(self, conn: sqlite3.Connection, entry: SendEntry, attrs: str, now: float) -> str:
        if entry.dedup_id is not None:
            conn.execute("DELETE FROM dedup WHERE sent_at <= ?", (now - DEDUP_WINDOW_S,))
            seen = conn.execute(
                "SELECT message_id FROM dedup WHERE queue = ? AND dedup_id = ?", (self.name, entry.dedup_id)
            ).fetchone()
            if seen is not None:
                return seen["message_id"]
        message_id = str(uuid.uuid4())
        conn.execute(
            "INSERT INTO messages (id, queue, body, attributes, sent_at, enqueued_at, visible_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (message_id, self.name, entry.body, attrs, now, now, now + entry.delay_s),
        )
        if entry.dedup_id is not None:
            conn.execute(
                "INSERT INTO dedup VALUES (?, ?, ?, ?)", (self.name, entry.dedup_id, message_id, now)
            )
        return message_id

    def receive(
        self, max_messages: int = 1, wait_s: float = 0, visibility_timeout_s: int | None = None
    ) -> list[Message]:
        """Lease up to ``max_messages`` messages, waiting up to ``wait_s`` seconds (long polling) for the first."""
        check_range(max_messages, 1, MAX_MESSAGES_PER_RECEIVE, "max_messages")
        check_range(wait_s, 0, MAX_WAIT_S, "wait_s")
        if visibility_timeout_s is not None:
            check_range(visibility_timeout_s, 0, MAX_VISIBILITY_TIMEOUT_S, "visibility_timeout_s")
        deadline = time.monotonic() + wait_s
        while True:
            messages = self._claim(max_messages, visibility_timeout_s)
            left = deadline - time.monotonic()
            if messages or left <= 0:
                return messages
            time.sleep(min(self._poll_interval_s, left))

    def _claim(self, max_messages: int, visibility_timeout_s: float | None) -> list[Message]:
        now = self._clock()
        # A plain read first, so idle pollers do not take the write lock every few milliseconds.
        due = self._conn().execute(
            "SELECT 1 FROM messages WHERE queue = ? AND visible_at <= ? LIMIT 1", (self.name, now)
        )
        if due.fetchone() is None:
            return []
        out: list[Message] = []
        with self._tx() as conn:
            config = self._config(conn)
            self._expire(conn, config, now)
            visibility = config.visibility_timeout_s if visibility_timeout_s is None else visibility_timeout_s
            seen: list[
                int
            ] = []  # with visibility 0 a claimed row stays due; never hand it out twice in one call
            while len(out) < max_messages:
                rows = conn.execute(
                    "SELECT * FROM messages WHERE queue = ? AND visible_at <= ?"
                    f" AND seq NOT IN ({','.join('?' * len(seen))}) ORDER BY visible_at, seq LIMIT ?",
                    (self.name, now, *seen, max_messages - len(out)),
                ).fetchall()
                if not rows:
                    break
                for row in rows:
                    seen.append(row["seq"])
                    count = row["receive_count"] + 1
                    if config.max_receive_count is not None and count > config.max_receive_count:
                        reason = (
                            f"maxReceiveCount exceeded: received {row['receive_count']} times without being "
                            f"deleted (limit {config.max_receive_count})"
                        )
                        if row["last_error"]:
                            reason += f"; last error: {row['last_error']}"
                        self._move_to_dead_letters(conn, config, row, "max_receive_count", reason, now)
                        continue
                    lease = uuid.uuid4().hex
                    first = row["first_received_at"] if row["first_received_at"] is not None else now
                    conn.execute(
                        "UPDATE messages SET receive_count = ?, lease = ?, visible_at = ?, first_received_at = ?"
                        " WHERE seq = ?",
                        (count, lease, now + visibility, first, row["seq"]),
                    )
                    out.append(self._message(row, f"{row['id']}:{lease}", count, first))
        return out

    @staticmethod
    def _message(row: sqlite3.Row, receipt: str, count: int, first: float | None) -> Message:
        attributes = json.loads(row["attributes"])
        for key in ("last_error", "dead_reason", "source_queue"):
            if row[key]:
                attributes[key] = row[key]
        if row["redrive_count"]:
            attributes["redrive_count"] = str(row["redrive_count"])
        return Message(row["id"], receipt, row["body"], count, row["sent_at"], first, attributes)

    def _leased(self, conn: sqlite3.Connection, receipt: Receipt, now: float) -> sqlite3.Row:
        """The message row if ``receipt`` holds its live lease; StaleReceipt saying why not otherwise."""
        message_id, token = _parse_receipt(receipt)
        row = conn.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
        if row is None:
            raise StaleReceipt(
                f"receipt refused: message {message_id} is no longer in queue {self.name} (deleted or purged)",
                field="receipt",
            )
        if row["queue"] != self.name:
            raise StaleReceipt(
                f"receipt refused: message {message_id} has moved to queue {row['queue']}", field="receipt"
            )
        if row["lease"] != token:
            why = (
                "its lease was released (visibility set to 0)"
                if row["lease"] is None
                else f"it was received again (receive #{row['receive_count']}) by another consumer"
            )
            raise StaleReceipt(
                f"receipt refused: stale lease on message {message_id}: {why}", field="receipt"
            )
        if row["visible_at"] <= now:
            raise StaleReceipt(
                f"receipt refused: the lease on message {message_id} expired {now - row['visible_at']:.1f}s ago "
                "and the message may be redelivered; extend the visibility timeout before it runs out",
                field="receipt",
            )
        return row

    def delete(self, receipt: Receipt) -> None:
        """Acknowledge the message; StaleReceipt if this delivery's lease is over."""
        with self._tx() as conn:
            self._delete(conn, receipt, self._clock())

    def _delete(self, conn: sqlite3.Connection, receipt: Receipt, now: float) -> None:
        row = self._leased(conn, receipt, now)
        conn.execute("DELETE FROM messages WHERE seq = ?", (row["seq"],))

    def change_visibility(self, receipt: Receipt, timeout_s: int, *, reason: str | None = None) -> None:
        """Hide the message ``timeout_s`` seconds from now (heartbeat), or release it with 0 (nack).

        ``reason`` (an error message) is recorded in the message's history and becomes its ``last_error``, which the
        dead-letter reason quotes if the message later exceeds its receive limit. StaleReceipt if the lease is over.
        """
        check_range(timeout_s, 0, MAX_VISIBILITY_TIMEOUT_S, "timeout_s")
        with self._tx() as conn:
            self._change_visibility(conn, receipt, timeout_s, reason, self._clock())

    def _change_visibility(
        self, conn: sqlite3.Connection, receipt: Receipt, timeout_s: int, reason: str | None, now: float
    ) -> None:
        check_range(timeout_s, 0, MAX_VISIBILITY_TIMEOUT_S, "timeout_s")
        row = self._leased(conn, receipt, now)
        history, last_error = row["history"], row["last_error"]
        if reason is not None:
            entry = {"at": now, "event": "error", "reason": reason, "receive_count": row["receive_count"]}
            history, last_error = append_history(history, entry), reason
        conn.execute(
            "UPDATE messages SET visible_at = ?, lease = ?, history = ?, last_error = ? WHERE seq = ?",
            (now + timeout_s, row["lease"] if timeout_s else None, history, last_error, row["seq"]),
        )

    def nack(self, receipt: Receipt, reason: str | None = None) -> None:
        """Release the message for redelivery now, recording ``reason`` (see ``change_visibility``)."""
        self.change_visibility(receipt, 0, reason=reason)

    def attributes(self) -> dict[str, Any]:
        """Counts (visible, in flight, delayed, dead letters), the oldest message's age and the settings."""
        now = self._clock()
        with self._tx() as conn:
            config = self._config(conn)
            self._expire(conn, config, now)
            row = conn.execute(
                "SELECT"
                " SUM(visible_at <= :now) AS visible,"
                " SUM(visible_at > :now AND lease IS NOT NULL) AS in_flight,"
                " SUM(visible_at > :now AND lease IS NULL) AS delayed,"
                " MIN(enqueued_at) AS oldest"
                " FROM messages WHERE queue = :queue",
                {"now": now, "queue": self.name},
            ).fetchone()
            dead = 0
            if config.dead_letter_queue is not None:
                dead = conn.execute(
                    "SELECT COUNT(*) FROM messages WHERE queue = ?", (config.dead_letter_queue,)
                ).fetchone()[0]
        return {
            "name": self.name,
            "url": self.url,
            "visible": row["visible"] or 0,
            "in_flight": row["in_flight"] or 0,
            "delayed": row["delayed"] or 0,
            "dead_letters": dead,
            "oldest_age_s": None if row["oldest"] is None else max(0.0, now - row["oldest"]),
            "visibility_timeout_s": config.visibility_timeout_s,
            "max_receive_count": config.max_receive_count,
            "retention_s": config.retention_s,
            "dead_letter_queue": config.dead_letter_queue,
        }

    def purge(self) -> int:
        """Delete every message of this queue (visible, delayed and in flight); return how many."""
        with self._tx() as conn:
            self._config(conn)
            return conn.execute("DELETE FROM messages WHERE queue = ?", (self.name,)).rowcount
