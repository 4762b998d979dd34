"""Dead letters of the embedded queue, as a part of ``SqliteQueue``: moving a message there, retention, redrive.

A message moves to the dead-letter queue when a consumer calls ``dead_letter``, when its next receive would exceed
``max_receive_count`` (see ``SqliteQueue.receive``) or when it was not deleted within the retention period; it keeps
its id, attempts and history, and the move records why. Dead-letter queues keep messages until they are redriven or
purged; redrive keeps the message id, resets the receive count and records the redrive.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable

from batchlane.errors import NotFound, ValidationError
from batchlane.queue.base import DeadLetter, Receipt
from batchlane.queue.sqlite_config import QueueConfig
from batchlane.queue.sqlite_db import append_history


class SqliteDeadLetters:
    """Dead-letter methods of ``SqliteQueue`` (they use its ``_tx``, ``_config``, ``_leased`` and ``_clock``)."""

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
                append_history(row["history"], entry),
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
                    (self.name, now, now, append_history(row["history"], entry), row["seq"]),
                )
        return [row["id"] for row in rows]
