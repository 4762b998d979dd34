"""The embedded queue: any number of named queues with SQS semantics in one SQLite file, with fenced leases.

Every state change is one ``BEGIN IMMEDIATE`` transaction, so concurrent consumers (threads or processes) never get
the same message under two live leases. A receive claims a message: it increments the receive count, draws a new
lease token and hides the message until ``now + visibility timeout``. The receipt handle carries that token, and
``delete``/``change_visibility``/``dead_letter`` refuse a receipt whose lease is over (expired, released, or replaced
by another consumer's receive) with :class:`~batchlane.errors.StaleReceipt`. SQS accepts such calls and may delete
the message another consumer now holds (RELIABILITY §0.3); here a zombie worker cannot.

Where this queue differs from SQS (see docs/queue.md):

* fencing, as above; and a lease that ran out is over even when nobody has received the message again;
* a message whose next receive would exceed ``max_receive_count`` moves to the dead-letter queue with a reason
  naming the limit and the last error a consumer reported (``nack``/``change_visibility(reason=…)``);
* retention does not delete silently: a message not deleted within the retention period moves to the dead-letter
  queue with reason ``expired …``; dead-letter queues keep messages until they are redriven or purged;
* redrive keeps the message id (SQS makes new messages), resets the receive count and records the redrive;
* ``dedup_id`` deduplicates sends for 5 minutes (SQS does that only on FIFO queues).

The file, its schema and its connections are :mod:`batchlane.queue.sqlite_db`. Times come from ``clock`` (Unix
seconds; injectable so tests can pass hours without sleeping); long polling waits on the real monotonic clock.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from batchlane.errors import BatchlaneError, NotFound, StaleReceipt, ValidationError
from batchlane.queue.base import (
    DEAD_LETTER_SUFFIX,
    DEFAULT_MAX_RECEIVE_COUNT,
    DEFAULT_QUEUE_NAME,
    DEFAULT_RETENTION_S,
    DEFAULT_VISIBILITY_TIMEOUT_S,
    MAX_DELAY_S,
    MAX_MESSAGES_PER_RECEIVE,
    MAX_VISIBILITY_TIMEOUT_S,
    MAX_WAIT_S,
    DeadLetter,
    Message,
    Outcome,
    Receipt,
    SendEntry,
    SendOutcome,
    check_range,
    dead_letter_name,
    receipt_of,
    validate_body,
    validate_queue_name,
)
from batchlane.queue.sqlite_db import QueueDatabase

DEDUP_WINDOW_S = 300  # as SQS FIFO's deduplication interval
HISTORY_LIMIT = 50  # entries kept per message; a poison message must not grow its row without bound
MIN_RETENTION_S, MAX_RETENTION_S = 60, 14 * 86_400  # SQS's range
MAX_RECEIVE_COUNT_LIMIT = 1000  # SQS's range for maxReceiveCount


@dataclass(frozen=True)
class QueueConfig:
    """A queue's stored settings (shared by every process using the file)."""

    visibility_timeout_s: float
    max_receive_count: int | None
    retention_s: float | None
    dead_letter_queue: str | None


def _validate_config(visibility_timeout_s: Any, max_receive_count: Any, retention_s: Any) -> None:
    if visibility_timeout_s is not None:
        check_range(visibility_timeout_s, 0, MAX_VISIBILITY_TIMEOUT_S, "visibility_timeout_s")
    if max_receive_count is not None:
        check_range(max_receive_count, 1, MAX_RECEIVE_COUNT_LIMIT, "max_receive_count")
        if not isinstance(max_receive_count, int):
            raise ValidationError("max_receive_count must be an integer", field="max_receive_count")
    if retention_s is not None:
        check_range(retention_s, MIN_RETENTION_S, MAX_RETENTION_S, "retention_s")


def _clean_attributes(attributes: Mapping[str, str] | None) -> dict[str, str]:
    if not attributes:
        return {}
    out: dict[str, str] = {}
    for key, value in attributes.items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise ValidationError(f"message attribute {key!r} must be a non-empty name with a string value")
        out[key] = value
    return out


def _number(value: float | None) -> Any:
    """Whole seconds as int (as SQS reports them); fractions (tests) as float."""
    return int(value) if value is not None and float(value).is_integer() else value


def _append(history_json: str, entry: dict[str, Any]) -> str:
    history = json.loads(history_json)
    history.append(entry)
    return json.dumps(history[-HISTORY_LIMIT:])


def _checked(entry: SendEntry) -> str:
    """Validate one message to send; its attributes as stored (JSON)."""
    validate_body(entry.body)
    check_range(entry.delay_s, 0, MAX_DELAY_S, "delay_s")
    dedup_id = entry.dedup_id
    if dedup_id is not None and not (isinstance(dedup_id, str) and 0 < len(dedup_id) <= 128):
        raise ValidationError("dedup_id must be 1-128 characters", field="dedup_id")
    return json.dumps(_clean_attributes(entry.attributes))


def _attempt(action: Callable[..., None], *args: Any) -> Outcome:
    """Run one entry of a batch: None if it succeeded, the refusal if it raised one (nothing was written then)."""
    try:
        action(*args)
    except BatchlaneError as exc:
        return exc
    return None


def _parse_receipt(receipt: Receipt) -> tuple[str, str]:
    handle = receipt_of(receipt)
    message_id, _, token = handle.rpartition(":") if isinstance(handle, str) else ("", "", "")
    if not message_id or not token:
        raise ValidationError(f"not a receipt handle of the embedded queue: {handle!r}", field="receipt")
    return message_id, token


class SqliteQueue:
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
        _validate_config(visibility_timeout_s, max_receive_count, retention_s)
        self.path = Path(path).expanduser().resolve()
        self.url = f"sqlite://{quote(str(self.path))}?queue={self.name}"
        self._clock = clock or time.time
        self._poll_interval_s = poll_interval_s
        self._db = QueueDatabase(self.path, busy_timeout_s=busy_timeout_s)
        self._dlq: SqliteQueue | None = None
        with self._tx() as conn:
            self._ensure(conn, self.name, visibility_timeout_s, max_receive_count, retention_s)

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

    def _ensure(
        self,
        conn: sqlite3.Connection,
        name: str,
        visibility_timeout_s: float | None,
        max_receive_count: int | None,
        retention_s: float | None,
    ) -> None:
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
                    self._clock(),
                ),
            )
            if dlq is not None:
                validate_queue_name(dlq)
                self._ensure(conn, dlq, None, None, None)
            return
        for column, value in (
            ("visibility_timeout_s", visibility_timeout_s),
            ("max_receive_count", max_receive_count),
            ("retention_s", retention_s),
        ):
            if value is not None:
                conn.execute(f"UPDATE queues SET {column} = ? WHERE name = ?", (value, name))

    def _config(self, conn: sqlite3.Connection) -> QueueConfig:
        row = conn.execute("SELECT * FROM queues WHERE name = ?", (self.name,)).fetchone()
        if row is None:
            raise NotFound(f"queue {self.name!r} does not exist in {self.path}", field="queue")
        return QueueConfig(
            _number(row["visibility_timeout_s"]),
            row["max_receive_count"],
            _number(row["retention_s"]),
            row["dead_letter_queue"],
        )

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
        attrs = _checked(entry)
        with self._tx() as conn:
            self._config(conn)
            return self._insert(conn, entry, attrs, self._clock())

    def send_batch(self, entries: Sequence[SendEntry]) -> list[SendOutcome]:
        """``send`` for each entry, in one transaction; per entry, its message id or the error ``send`` raises."""
        out: list[SendOutcome] = []
        checked: list[tuple[int, SendEntry, str]] = []
        for index, entry in enumerate(entries):
            try:
                checked.append((index, entry, _checked(entry)))
                out.append("")  # the message id, once sent
            except BatchlaneError as exc:
                out.append(exc)
        if checked:
            now = self._clock()
            with self._tx() as conn:
                self._config(conn)
                for index, entry, attrs in checked:
                    out[index] = self._insert(conn, entry, attrs, now)
        return out

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

    def delete_batch(self, receipts: Sequence[Receipt]) -> list[Outcome]:
        """``delete`` for each receipt, in one transaction; per receipt, None or the StaleReceipt/ValidationError
        that refused it (the others are deleted all the same)."""
        now = self._clock()
        with self._tx() as conn:
            return [_attempt(self._delete, conn, receipt, now) for receipt in receipts]

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

    def change_visibility_batch(self, changes: Sequence[tuple[Receipt, int]]) -> list[Outcome]:
        """``change_visibility`` for each (receipt, timeout_s), in one transaction; per pair, None or its error."""
        now = self._clock()
        with self._tx() as conn:
            return [
                _attempt(self._change_visibility, conn, receipt, timeout_s, None, now)
                for receipt, timeout_s in changes
            ]

    def _change_visibility(
        self, conn: sqlite3.Connection, receipt: Receipt, timeout_s: int, reason: str | None, now: float
    ) -> None:
        check_range(timeout_s, 0, MAX_VISIBILITY_TIMEOUT_S, "timeout_s")
        row = self._leased(conn, receipt, now)
        history, last_error = row["history"], row["last_error"]
        if reason is not None:
            entry = {"at": now, "event": "error", "reason": reason, "receive_count": row["receive_count"]}
            history, last_error = _append(history, entry), reason
        conn.execute(
            "UPDATE messages SET visible_at = ?, lease = ?, history = ?, last_error = ? WHERE seq = ?",
            (now + timeout_s, row["lease"] if timeout_s else None, history, last_error, row["seq"]),
        )

    def nack(self, receipt: Receipt, reason: str | None = None) -> None:
        """Release the message for redelivery now, recording ``reason`` (see ``change_visibility``)."""
        self.change_visibility(receipt, 0, reason=reason)

    def dead_letter(self, receipt: Receipt, reason: str) -> str:
        """Move the message to the dead-letter queue now with ``reason``, keeping its id, attempts and history."""
        now = self._clock()
        with self._tx() as conn:
            row = self._leased(conn, receipt, now)
            config = self._config(conn)
            if config.dead_letter_queue is None:
                raise ValidationError(f"queue {self.name} is a dead-letter queue and has none of its own")
            self._move_to_dead_letters(conn, config, row, "dead_letter", reason, now)
            return row["id"]

    def _move_to_dead_letters(
        self,
        conn: sqlite3.Connection,
        config: QueueConfig,
        row: sqlite3.Row,
        event: str,
        reason: str,
        now: float,
    ) -> None:
        entry = {"at": now, "event": event, "reason": reason, "receive_count": row["receive_count"]}
        conn.execute(
            "UPDATE messages SET queue = ?, visible_at = ?, enqueued_at = ?, lease = NULL, dead_reason = ?,"
            " dead_at = ?, source_queue = ?, history = ? WHERE seq = ?",
            (
                config.dead_letter_queue,
                now,
                now,
                reason,
                now,
                self.name,
                _append(row["history"], entry),
                row["seq"],
            ),
        )

    def _expire(self, conn: sqlite3.Connection, config: QueueConfig, now: float) -> None:
        """Move messages past the retention period (and not in flight) to the dead-letter queue, never drop them."""
        if config.retention_s is None or config.dead_letter_queue is None:
            return
        rows = conn.execute(
            "SELECT * FROM messages WHERE queue = ? AND visible_at <= ? AND enqueued_at <= ?",
            (self.name, now, now - config.retention_s),
        ).fetchall()
        for row in rows:
            reason = (
                f"expired: not deleted within the retention period of {config.retention_s:g}s "
                f"(enqueued {now - row['enqueued_at']:.0f}s ago, received {row['receive_count']} times)"
            )
            self._move_to_dead_letters(conn, config, row, "expired", reason, now)

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

    def list_dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The dead-letter queue's messages, oldest first (expired messages are moved there first)."""
        now = self._clock()
        with self._tx() as conn:
            config = self._config(conn)
            self._expire(conn, config, now)
            if config.dead_letter_queue is None:
                return []
            rows = conn.execute(
                "SELECT * FROM messages WHERE queue = ? ORDER BY dead_at, seq LIMIT ?",
                (config.dead_letter_queue, limit),
            ).fetchall()
        return [self._dead_letter(row) for row in rows]

    @staticmethod
    def _dead_letter(row: sqlite3.Row) -> DeadLetter:
        history = tuple(json.loads(row["history"]))
        dead_events = [
            h for h in history if h.get("event") in ("dead_letter", "max_receive_count", "expired")
        ]
        attempts = dead_events[-1]["receive_count"] if dead_events else row["receive_count"]
        return DeadLetter(
            message_id=row["id"],
            body=row["body"],
            reason=row["dead_reason"] or "sent to the dead-letter queue directly",
            attempts=attempts,
            sent_at=row["sent_at"],
            dead_at=row["dead_at"],
            source_queue=row["source_queue"],
            redrive_count=row["redrive_count"],
            history=history,
        )

    def redrive(self, message_ids: Iterable[str] | None = None) -> list[str]:
        """Move dead letters back to this queue: all of them, or those ``message_ids`` (NotFound if one is absent).

        Each keeps its id and history, gets a receive count of 0, a fresh retention period, and a ``redrive`` entry
        in its history. All or nothing: one transaction. Returns the ids moved.
        """
        now = self._clock()
        with self._tx() as conn:
            config = self._config(conn)
            dlq = config.dead_letter_queue
            if dlq is None:
                raise ValidationError(
                    f"queue {self.name} is a dead-letter queue; redrive from its source queue"
                )
            if message_ids is None:
                rows = conn.execute(
                    "SELECT * FROM messages WHERE queue = ? AND (source_queue = ? OR source_queue IS NULL)"
                    " ORDER BY dead_at, seq",
                    (dlq, self.name),
                ).fetchall()
            else:
                rows = []
                for message_id in dict.fromkeys(message_ids):
                    row = conn.execute(
                        "SELECT * FROM messages WHERE id = ? AND queue = ?", (message_id, dlq)
                    ).fetchone()
                    if row is None:
                        raise NotFound(
                            f"message {message_id} is not in dead-letter queue {dlq}", field="message_id"
                        )
                    rows.append(row)
            for row in rows:
                entry = {"at": now, "event": "redrive", "reason": row["dead_reason"], "receive_count": 0}
                conn.execute(
                    "UPDATE messages SET queue = ?, receive_count = 0, first_received_at = NULL, lease = NULL,"
                    " visible_at = ?, enqueued_at = ?, last_error = NULL, dead_reason = NULL, dead_at = NULL,"
                    " source_queue = NULL, redrive_count = redrive_count + 1, history = ? WHERE seq = ?",
                    (self.name, now, now, _append(row["history"], entry), row["seq"]),
                )
        return [row["id"] for row in rows]
