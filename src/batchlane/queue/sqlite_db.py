"""The embedded queue's SQLite file: schema, per-thread connections, write transactions, and message history.

The file runs in WAL mode (readers never block the writer) with ``synchronous=FULL`` (an acknowledged send survives
power loss; about 200 fsynced writes a second on a plain disk, plenty for job requests) and a busy timeout, so
concurrent processes wait for the write lock instead of failing. Every change is one ``BEGIN IMMEDIATE`` transaction:
the write lock is taken before the first read, so two consumers can never claim the same message.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from batchlane.errors import QueueError

HISTORY_LIMIT = 50  # entries kept per message; a poison message must not grow its row without bound

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS queues (
        name TEXT PRIMARY KEY,
        visibility_timeout_s REAL NOT NULL,
        max_receive_count INTEGER,      -- NULL: never dead-lettered for receives (a dead-letter queue)
        retention_s REAL,               -- NULL: kept until deleted (a dead-letter queue)
        dead_letter_queue TEXT,         -- NULL: this queue is a dead-letter queue
        created_at REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS messages (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        queue TEXT NOT NULL,
        body TEXT NOT NULL,
        attributes TEXT NOT NULL DEFAULT '{}',
        sent_at REAL NOT NULL,          -- first send; kept through dead-lettering and redrive
        enqueued_at REAL NOT NULL,      -- entered this queue; the retention period counts from here
        visible_at REAL NOT NULL,       -- deliverable from then on; in flight while a lease is set and this is ahead
        receive_count INTEGER NOT NULL DEFAULT 0,
        first_received_at REAL,
        lease TEXT,                     -- token of the current delivery, part of its receipt handle
        last_error TEXT,
        history TEXT NOT NULL DEFAULT '[]',
        dead_reason TEXT,
        dead_at REAL,
        source_queue TEXT,
        redrive_count INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX IF NOT EXISTS messages_due ON messages (queue, visible_at)",
    """CREATE TABLE IF NOT EXISTS dedup (
        queue TEXT NOT NULL, dedup_id TEXT NOT NULL, message_id TEXT NOT NULL, sent_at REAL NOT NULL,
        PRIMARY KEY (queue, dedup_id)
    )""",
)


def append_history(history_json: str, entry: dict[str, Any]) -> str:
    """A message's ``history`` column with ``entry`` added, keeping the last ``HISTORY_LIMIT`` entries."""
    history = json.loads(history_json)
    history.append(entry)
    return json.dumps(history[-HISTORY_LIMIT:])


class QueueDatabase:
    """One queue file. Safe to share between threads: each thread (and forked process) gets its own connection."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.connection().execute("PRAGMA journal_mode=WAL")  # persistent: stored in the file
        except sqlite3.OperationalError as exc:
            raise QueueError(f"cannot open queue database {self.path}: {exc}") from exc
        with self.transaction() as conn:
            for statement in _SCHEMA:
                conn.execute(statement)

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (autocommit; use ``transaction`` for changes)."""
        conn = getattr(self._local, "conn", None)
        # A forked child must not reuse its parent's handle.
        if conn is None or self._local.pid != os.getpid():
            try:
                conn = sqlite3.connect(
                    self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False
                )
            except sqlite3.Error as exc:
                raise QueueError(f"cannot open queue database {self.path}: {exc}") from exc
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
            conn.execute("PRAGMA synchronous=FULL")
            self._local.conn, self._local.pid = conn, os.getpid()
            with self._lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any exception; lock or I/O failures become QueueError."""
        conn = self.connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise QueueError(f"queue database {self.path} is unavailable: {exc}") from exc
        try:
            yield conn
        except BaseException as exc:
            conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):
                raise QueueError(f"queue database {self.path}: {exc}") from exc
            raise
        else:
            conn.execute("COMMIT")

    def close(self) -> None:
        """Close every connection opened through this object."""
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()
