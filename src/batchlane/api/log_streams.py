"""A transform job's log files seen as CloudWatch Logs streams in the group ``/aws/sagemaker/TransformJobs``.

Each job has up to two streams, named as SageMaker names them (the instance is ``batchlane-1``: a job runs on one
machine here; the epoch is the job's creation time in seconds, so a name never changes while clients poll it):

* ``<job>/batchlane-1-<epoch>``: the model container's stdout and stderr (``<store>/logs/<job>.container.log``);
* ``<job>/batchlane-1-<epoch>/data-log``: the platform's lines (``[sagemaker logs]: …``, per-file results, the
  final status), i.e. the job log that ``batchlane jobs logs`` prints (``<store>/logs/<job>.log``).

A stream exists once its file does. Every complete, non-blank line of the file is one event, its message the line
as written. Its timestamp is the ``YYYY-MM-DD HH:MM:SS,mmm`` (or ISO 8601) time the line starts with, read in the
server's local time zone as the log was written; a line without one (a traceback, a response body) takes the time of
the line before it, and lines before any timed line take the stream's creation time. Timestamps never go backwards
within a stream, so readers that resume "from timestamp T, skipping N events at T" (the SageMaker SDK) see each
event once. An event's position (its index among the file's lines) never changes as the file grows, which is what
GetLogEvents' tokens count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from batchlane.jobs.records import JobRecord
from batchlane.jobs.store import JobStore

LOG_GROUP = "/aws/sagemaker/TransformJobs"
INSTANCE = "batchlane-1"
DATA_LOG_SUFFIX = "/data-log"

_LEADING_TIME = re.compile(
    r"(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(?:[,.](\d{1,6}))?(Z|[+-]\d{2}:?\d{2})?"
)


@dataclass(frozen=True)
class LogEvent:
    """One line of a stream: ``index`` is its position in the stream (0-based), times are epoch milliseconds
    (``ingestion_time`` equals ``timestamp``: the line reached the file when it was written)."""

    index: int
    timestamp: int
    ingestion_time: int
    message: str


@dataclass(frozen=True)
class LogStream:
    """One stream of a job: its CloudWatch name, the file behind it and its creation time (epoch ms)."""

    name: str
    job: str
    path: Path
    creation_time: int

    def events(self) -> list[LogEvent]:
        """Every event the file holds now (a last line still being written is left for the next read)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]
        events: list[LogEvent] = []
        last = self.creation_time
        for raw in complete.split(b"\n"):
            message = raw.decode("utf-8", "replace").rstrip("\r")
            if not message.strip():
                continue
            stamp = parse_leading_time(message)
            last = max(last, stamp) if stamp is not None else last
            events.append(LogEvent(len(events), last, last, message))
        return events


def parse_leading_time(line: str) -> int | None:
    """The epoch milliseconds of the timestamp ``line`` starts with (naive times are local), or None."""
    match = _LEADING_TIME.match(line)
    if match is None:
        return None
    day, clock, fraction, zone = match.groups()
    text = f"{day}T{clock}.{(fraction or '0').ljust(6, '0')}"
    if zone:
        text += "+00:00" if zone == "Z" else zone
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return int(moment.timestamp() * 1000)


def job_streams(store: JobStore, record: JobRecord) -> list[LogStream]:
    """The job's streams that exist now, sorted by name (the container's stream sorts before its data-log)."""
    created = int(record.creation_time.timestamp() * 1000)
    base = f"{record.name}/{INSTANCE}-{created // 1000}"
    log_file = store.log_path(record.name)
    streams = [
        LogStream(base, record.name, log_file.with_suffix(".container.log"), created),
        LogStream(base + DATA_LOG_SUFFIX, record.name, log_file, created),
    ]
    return [stream for stream in streams if stream.path.exists()]


def group_streams(store: JobStore, prefix: str = "") -> list[LogStream]:
    """Every stream of the group whose name starts with ``prefix``, sorted by name.

    A prefix holding a ``/`` names one job (what the SageMaker SDK asks for: ``<job>/``); otherwise every job is
    looked at.
    """
    if "/" in prefix:
        record = store.find_job(prefix.split("/", 1)[0])
        records = [record] if record is not None else []
    else:
        records = _all_jobs(store)
    streams = [s for record in records for s in job_streams(store, record) if s.name.startswith(prefix)]
    return sorted(streams, key=lambda s: s.name)


def find_stream(store: JobStore, name: str) -> LogStream | None:
    """The stream called ``name``, or None."""
    return next((s for s in group_streams(store, name.split("/", 1)[0] + "/") if s.name == name), None)


def _all_jobs(store: JobStore) -> list[JobRecord]:
    records: list[JobRecord] = []
    token: str | None = None
    while True:
        page, token = store.list_jobs(
            sort_by="Name", sort_order="Ascending", max_results=100, next_token=token
        )
        records.extend(page)
        if not token:
            return records
