"""The SQLite file under the job store: per-thread connections, write transactions, schema migrations, stored
time and JSON encodings, and keyset paging with opaque tokens. ``JobStore`` builds on ``Database``.

Each thread gets its own connection (WAL mode, ``busy_timeout``, ``synchronous=FULL``); a connection never crosses a
fork. ``_write()`` is one ``BEGIN IMMEDIATE`` transaction, so read-then-write inside it cannot race another writer.
Times are stored as fixed-width UTC ISO-8601 text (they sort as strings) and returned as aware datetimes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from batchlane.errors import StorageError, ValidationError

SCHEMA_VERSION = 5
MAX_FAILURE_REASON = 1024
MAX_NEXT_TOKEN = 8192

_SCHEMA_V1 = [
    """CREATE TABLE jobs (
        name TEXT PRIMARY KEY COLLATE NOCASE,
        arn TEXT NOT NULL,
        status TEXT NOT NULL,
        failure_reason TEXT,
        request TEXT NOT NULL,
        options TEXT NOT NULL,
        spec_hash TEXT NOT NULL,
        creation_time TEXT NOT NULL,
        start_time TEXT,
        end_time TEXT,
        last_modified_time TEXT NOT NULL,
        files_total INTEGER NOT NULL DEFAULT 0,
        files_done INTEGER NOT NULL DEFAULT 0,
        files_failed INTEGER NOT NULL DEFAULT 0,
        records_done INTEGER NOT NULL DEFAULT 0,
        records_failed INTEGER NOT NULL DEFAULT 0,
        bytes_total INTEGER NOT NULL DEFAULT 0,
        bytes_done INTEGER NOT NULL DEFAULT 0,
        owner TEXT,
        lease_expires TEXT,
        attempts INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX jobs_by_creation ON jobs (creation_time, name)",
    "CREATE INDEX jobs_by_status ON jobs (status, name)",
    """CREATE TABLE job_files (
        job TEXT NOT NULL COLLATE NOCASE REFERENCES jobs (name) ON DELETE CASCADE,
        input_key TEXT NOT NULL,
        output_key TEXT NOT NULL,
        size INTEGER NOT NULL,
        state TEXT NOT NULL,
        records INTEGER NOT NULL DEFAULT 0,
        records_failed INTEGER NOT NULL DEFAULT 0,
        bytes_done INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        updated TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (job, input_key)
    ) WITHOUT ROWID""",
    "CREATE INDEX job_files_by_seq ON job_files (job, seq)",
    """CREATE TABLE models (
        name TEXT PRIMARY KEY COLLATE NOCASE,
        arn TEXT NOT NULL,
        spec TEXT NOT NULL,
        spec_hash TEXT NOT NULL,
        creation_time TEXT NOT NULL
    )""",
    "CREATE INDEX models_by_creation ON models (creation_time, name)",
]
# Version 2: result-count warnings (``CheckpointTable.set_file_warnings``), per file and summed per job.
_SCHEMA_V2 = [
    "ALTER TABLE jobs ADD COLUMN warnings INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE jobs ADD COLUMN first_warning TEXT",
    "ALTER TABLE job_files ADD COLUMN warnings INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE job_files ADD COLUMN warning TEXT",
]
# Version 3: how many times the job's model server was restarted after a fault (``JobStore.add_restart``).
_SCHEMA_V3 = ["ALTER TABLE jobs ADD COLUMN restarts INTEGER NOT NULL DEFAULT 0"]
# Version 4: monitoring schedules and their executions (``batchlane.monitor.schedules``, docs/monitoring-schedules.md).
_SCHEMA_V4 = [
    """CREATE TABLE monitoring_schedules (
        name TEXT PRIMARY KEY COLLATE NOCASE,
        arn TEXT NOT NULL,
        status TEXT NOT NULL,
        expression TEXT NOT NULL,
        config TEXT NOT NULL,
        target TEXT NOT NULL,
        endpoint TEXT,
        failure_reason TEXT,
        creation_time TEXT NOT NULL,
        last_modified_time TEXT NOT NULL,
        next_run_time TEXT
    )""",
    "CREATE INDEX monitoring_schedules_by_creation ON monitoring_schedules (creation_time, name)",
    "CREATE INDEX monitoring_schedules_by_next_run ON monitoring_schedules (status, next_run_time)",
    """CREATE TABLE monitoring_executions (
        name TEXT PRIMARY KEY COLLATE NOCASE,
        schedule TEXT NOT NULL COLLATE NOCASE REFERENCES monitoring_schedules (name) ON DELETE CASCADE,
        arn TEXT NOT NULL,
        status TEXT NOT NULL,
        failure_reason TEXT,
        scheduled_time TEXT NOT NULL,
        creation_time TEXT NOT NULL,
        start_time TEXT,
        end_time TEXT,
        last_modified_time TEXT NOT NULL,
        output_uri TEXT,
        violations_uri TEXT,
        summary_uri TEXT,
        exit_code INTEGER,
        alert TEXT,
        owner TEXT,
        UNIQUE (schedule, scheduled_time)
    )""",
    "CREATE INDEX monitoring_executions_by_schedule ON monitoring_executions (schedule, creation_time, name)",
]
# Version 5: per-part checkpoints of large input files (``jobs.parts.PartTable``, docs/parts.md). A part is a byte
# range of one input file; ``end`` NULL means "to the end of the object" (a whole-object part).
_SCHEMA_V5 = [
    """CREATE TABLE job_parts (
        job TEXT NOT NULL COLLATE NOCASE REFERENCES jobs (name) ON DELETE CASCADE,
        input_key TEXT NOT NULL,
        number INTEGER NOT NULL,
        count INTEGER NOT NULL,
        start INTEGER NOT NULL,
        "end" INTEGER,
        first_index INTEGER NOT NULL,
        first_line INTEGER NOT NULL,
        state TEXT NOT NULL,
        owner TEXT,
        records INTEGER NOT NULL DEFAULT 0,
        records_failed INTEGER NOT NULL DEFAULT 0,
        bytes_read INTEGER NOT NULL DEFAULT 0,
        warnings INTEGER NOT NULL DEFAULT 0,
        warning TEXT,
        last_error TEXT,
        updated TEXT NOT NULL,
        PRIMARY KEY (job, input_key, number)
    ) WITHOUT ROWID""",
]
_MIGRATIONS: dict[int, list[str]] = {
    1: _SCHEMA_V1,
    2: _SCHEMA_V2,
    3: _SCHEMA_V3,
    4: _SCHEMA_V4,
    5: _SCHEMA_V5,
}


def utcnow() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


def _ts(value: datetime) -> str:
    # isoformat always pads the year to four digits, so the text sorts like the time it encodes.
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds") + "Z"


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.removesuffix("Z")).replace(tzinfo=UTC)


def _json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{what} must be JSON-serialisable: {exc}") from None


def spec_hash(*parts: Any) -> str:
    """SHA-256 of the canonical JSON of ``parts`` (sorted keys): equal for specs that differ only in key order."""
    try:
        canonical = json.dumps(
            list(parts), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"spec must be JSON-serialisable: {exc}") from None
    return hashlib.sha256(canonical.encode()).hexdigest()


def _reason(text: str) -> str:
    return text if len(text) <= MAX_FAILURE_REASON else text[: MAX_FAILURE_REASON - 3] + "..."


class Database:
    """The SQLite file at ``path`` (created with its folder if missing), migrated to ``SCHEMA_VERSION``."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout_s: float = 30.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.path = Path(path).expanduser().absolute()
        self.folder = self.path.parent
        self._busy_ms = int(busy_timeout_s * 1000)
        self._clock = clock or utcnow
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self.folder.mkdir(parents=True, exist_ok=True)
        self._migrate()

    def _conn(self) -> sqlite3.Connection:
        held = getattr(self._local, "held", None)
        # A connection must never cross a fork: the child opens its own.
        if held is not None and held[0] == os.getpid():
            return held[1]
        try:
            conn = sqlite3.connect(
                self.path, timeout=self._busy_ms / 1000, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open job store {self.path}: {exc}") from exc
        self._local.held = (os.getpid(), conn)
        with self._lock:
            self._connections.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE takes the write lock up front so read-then-write cannot race."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StorageError(f"job store {self.path} is busy: {exc}") from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback(conn)
            raise StorageError(f"job store {self.path}: {exc}") from exc
        except BaseException:
            self._rollback(conn)
            raise

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        # SQLite may already have rolled back by itself (e.g. after SQLITE_FULL); don't mask the original error.
        if conn.in_transaction:
            conn.execute("ROLLBACK")

    def close(self) -> None:
        """Close every connection this store opened (in any thread)."""
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()

    def _migrate(self) -> None:
        with self._write() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            current = row[0] if row else 0
            if current > SCHEMA_VERSION:
                raise StorageError(
                    f"job store {self.path} has schema version {current}; this batchlane knows up to "
                    f"{SCHEMA_VERSION} (upgrade batchlane)"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version]:
                    conn.execute(statement)
            if row is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif current != SCHEMA_VERSION:
                conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    def _now(self, now: datetime | None = None) -> datetime:
        return now if now is not None else self._clock()

    @staticmethod
    def _name_filter(name_contains: str | None, where: list[str], params: list[Any]) -> None:
        if name_contains is None:
            return
        if not re.fullmatch(r"[a-zA-Z0-9\-]{1,63}", name_contains):
            raise ValidationError(
                f"NameContains {name_contains!r} must be 1-63 letters, digits or hyphens",
                field="NameContains",
            )
        where.append("instr(lower(name), lower(?)) > 0")
        params.append(name_contains)

    def _page(
        self,
        table: str,
        where: list[str],
        params: list[Any],
        columns: Mapping[str, str],
        sort_by: str,
        sort_order: str,
        max_results: int,
        next_token: str | None,
    ) -> tuple[list[sqlite3.Row], str | None]:
        if sort_by not in columns:
            raise ValidationError(
                f"SortBy must be one of {', '.join(columns)}, got {sort_by!r}", field="SortBy"
            )
        if sort_order not in ("Ascending", "Descending"):
            raise ValidationError(
                f"SortOrder must be Ascending or Descending, got {sort_order!r}", field="SortOrder"
            )
        if isinstance(max_results, bool) or not isinstance(max_results, int) or not 1 <= max_results <= 100:
            raise ValidationError(
                f"MaxResults must be an integer from 1 to 100, got {max_results!r}", field="MaxResults"
            )
        keys = [columns[sort_by]] + (["name"] if columns[sort_by] != "name" else [])
        scope = spec_hash(table, where, params, sort_by, sort_order)[:16]
        if next_token is not None:
            after = _decode_token(next_token, scope, len(keys))
            op = ">" if sort_order == "Ascending" else "<"
            where = [*where, f"({', '.join(keys)}) {op} ({', '.join('?' * len(keys))})"]
            params = [*params, *after]
        direction = "ASC" if sort_order == "Ascending" else "DESC"
        sql = f"SELECT * FROM {table}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY " + ", ".join(f"{key} {direction}" for key in keys) + " LIMIT ?"
        rows = self._conn().execute(sql, (*params, max_results + 1)).fetchall()
        if len(rows) <= max_results:
            return rows, None
        rows = rows[:max_results]
        return rows, _encode_token(scope, [rows[-1][key] for key in keys])


def _encode_token(scope: str, position: list[Any]) -> str:
    raw = json.dumps({"v": 1, "s": scope, "k": position}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, scope: str, width: int) -> list[Any]:
    def invalid(why: str) -> ValidationError:
        return ValidationError(f'Invalid pagination token because "{why}".', field="NextToken")

    if not isinstance(token, str) or not token or len(token) > MAX_NEXT_TOKEN:
        raise invalid("it is empty or too long")
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):
        raise invalid("it is not a token this service issued") from None
    if not isinstance(data, dict) or data.get("v") != 1 or not isinstance(data.get("k"), list):
        raise invalid("it is not a token this service issued")
    if data.get("s") != scope:
        raise invalid("it was issued for a request with other filters or sorting")
    position = data["k"]
    if len(position) != width or not all(isinstance(value, str) for value in position):
        raise invalid("it is not a token this service issued")
    return position
