"""Prometheus metrics of batchlane's processes, on ``prometheus_client``'s default ``REGISTRY`` (docs/metrics.md).

* ``batchlane serve`` counts its requests, batches and tokens as they happen (``observe_*`` helpers below, called
  from ``serving``) and answers ``GET /metrics``.
* ``batchlane server`` and ``batchlane worker`` expose the state of their job store and queue. Those numbers live
  in SQLite files that several processes share, so they are read when Prometheus scrapes (``StoreCollector``),
  never counted in one process's memory: a worker and a server on the same store report the same jobs.
* ``set_drift_score(schedule, score)`` is the hook monitoring schedules call after each run.

Names follow Prometheus conventions: a ``batchlane_`` prefix, base units (``_seconds``, ``_bytes``), ``_total`` on
counters, and labels only with small, bounded value sets.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The exposition format ``/metrics`` answers in (Prometheus text 0.0.4)."""

# Seconds: from a sub-millisecond echo model to a long CPU payload.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_RATIO_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)

SERVE_REQUESTS = Counter(
    "batchlane_serve_requests_total",
    "Requests to POST /invocations, by HTTP status and request media type.",
    ["status", "content_type"],
)
SERVE_REQUEST_SECONDS = Histogram(
    "batchlane_serve_request_duration_seconds",
    "Time from receiving an /invocations request to its response, errors included.",
    buckets=_LATENCY_BUCKETS,
)
SERVE_QUEUE_WAIT_SECONDS = Histogram(
    "batchlane_serve_queue_wait_seconds",
    "Time a request waited before its model work started: for a free slot (queue=admission) and, with dynamic "
    "batching, in the batch queue (queue=batch).",
    ["queue"],
    buckets=_LATENCY_BUCKETS,
)
SERVE_BATCH_RECORDS = Histogram(
    "batchlane_serve_batch_records",
    "Records per forward pass of the default classifier.",
    buckets=_BATCH_BUCKETS,
)
SERVE_BATCH_PADDING_RATIO = Histogram(
    "batchlane_serve_batch_padding_ratio",
    "Share of a forward pass's padded tokens that are padding (0: none wasted).",
    buckets=_RATIO_BUCKETS,
)
SERVE_TOKENS = Counter(
    "batchlane_serve_tokens_total",
    "Real (non-padding) tokens run through the model; rate() gives tokens per second.",
)
SERVE_PADDED_TOKENS = Counter(
    "batchlane_serve_padded_tokens_total",
    "Tokens run through the model, padding included (batch width x records, summed over forward passes).",
)
SERVE_RECORDS = Counter("batchlane_serve_records_total", "Records run through the model.")
SERVE_MODEL_LOAD_SECONDS = Gauge(
    "batchlane_serve_model_load_seconds",
    "How long model_fn (and the warm-up) took when the model last loaded.",
)
SERVE_MODEL_READY = Gauge("batchlane_serve_model_ready", "1 once the model is loaded and /ping answers 200.")

CAPTURE_RECORDS = Counter(
    "batchlane_capture_records_total", "Data capture records written to the capture destination."
)
CAPTURE_DROPPED = Counter(
    "batchlane_capture_dropped_records_total",
    "Data capture records dropped, by reason: queue_full (the writer fell behind) or write_error.",
    ["reason"],
)

DRIFT_SCORE = Gauge(
    "batchlane_monitor_drift_score",
    "The latest drift score of each monitoring schedule: its last run's squared MMD to the baseline.",
    ["schedule"],
)

# Label values a client controls are capped, so a scanner cannot blow up the series count.
_MAX_CONTENT_TYPES = 32
_content_types: set[str] = set()
_content_types_lock = threading.Lock()


def content_type_label(content_type: str | None) -> str:
    """The media type (lowercase, no parameters) as a label value; ``other`` past a small cap of distinct ones."""
    media = (content_type or "").split(";", 1)[0].strip().lower()[:64] or "none"
    with _content_types_lock:
        if media in _content_types:
            return media
        if len(_content_types) >= _MAX_CONTENT_TYPES:
            return "other"
        _content_types.add(media)
        return media


def observe_request(status: int, content_type: str | None, seconds: float) -> None:
    """One finished ``/invocations`` request."""
    SERVE_REQUESTS.labels(status=str(status), content_type=content_type_label(content_type)).inc()
    SERVE_REQUEST_SECONDS.observe(seconds)


def observe_batch(records: int, tokens: int, padded_tokens: int) -> None:
    """One forward pass over ``records`` records holding ``tokens`` real tokens in ``padded_tokens`` cells."""
    SERVE_RECORDS.inc(records)
    SERVE_BATCH_RECORDS.observe(records)
    SERVE_TOKENS.inc(tokens)
    SERVE_PADDED_TOKENS.inc(padded_tokens)
    if padded_tokens > 0:
        SERVE_BATCH_PADDING_RATIO.observe(1 - tokens / padded_tokens)


def set_drift_score(schedule: str, score: float) -> None:
    """Record the latest drift score of monitoring schedule ``schedule`` (``batchlane_monitor_drift_score``)."""
    DRIFT_SCORE.labels(schedule=schedule).set(score)


class StoreCollector(Collector):
    """Job-store and queue gauges, read when scraped. Use ``watch``; one instance serves the whole process."""

    def __init__(self) -> None:
        self._stores: dict[str, Path] = {}
        self._queues: dict[str, Any] = {}
        self._lock = threading.Lock()

    def add(self, db_path: str | Path | None, queues: Iterable[Any]) -> None:
        with self._lock:
            if db_path is not None:
                self._stores[str(db_path)] = Path(db_path)
            for queue in queues:
                self._queues[str(getattr(queue, "name", queue))] = queue

    def remove(self, db_path: str | Path | None, queues: Iterable[Any]) -> None:
        with self._lock:
            if db_path is not None:
                self._stores.pop(str(db_path), None)
            for queue in queues:
                if self._queues.get(str(getattr(queue, "name", queue))) is queue:
                    del self._queues[str(getattr(queue, "name", queue))]

    def describe(self) -> list[Metric]:
        return []  # collected lazily: registering must not touch the database

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            stores, queues = list(self._stores.values()), list(self._queues.items())
        if stores:
            yield from _job_metrics(stores)
        if queues:
            yield from _queue_metrics(queues)


def _read_store(path: Path) -> tuple[dict[str, int], int, int, dict[str, int]]:
    """Jobs by status, records done and failed, and files of running jobs by state, from one read transaction."""
    from batchlane.jobs.state import JobStatus

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        jobs = dict.fromkeys((s.value for s in JobStatus), 0)
        jobs.update(conn.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())
        done, failed = conn.execute(
            "SELECT COALESCE(SUM(records_done), 0), COALESCE(SUM(records_failed), 0) FROM jobs"
        ).fetchone()
        files = dict(
            conn.execute(
                "SELECT f.state, COUNT(*) FROM job_files f JOIN jobs j ON f.job = j.name"
                " WHERE j.status IN ('InProgress', 'Stopping') GROUP BY f.state"
            ).fetchall()
        )
    finally:
        conn.close()
    return jobs, int(done), int(failed), files


def _job_metrics(stores: list[Path]) -> Iterator[Metric]:
    jobs = GaugeMetricFamily(
        "batchlane_jobs", "Transform jobs in the job store, by status.", labels=["status"]
    )
    records = CounterMetricFamily(
        "batchlane_job_records",
        "Records the store's transform jobs have processed (sum over jobs); rate() gives records per second.",
        labels=["outcome"],
    )
    files = GaugeMetricFamily(
        "batchlane_job_files",
        "Input files of InProgress and Stopping jobs, by checkpoint state; state=pending is the files in flight.",
        labels=["state"],
    )
    totals: dict[str, int] = {}
    done = failed = 0
    by_state: dict[str, int] = {"pending": 0, "done": 0, "failed": 0}
    for path in stores:
        if not path.exists():
            continue
        try:
            store_jobs, store_done, store_failed, store_files = _read_store(path)
        except sqlite3.Error as exc:  # a busy or half-migrated store: skip this scrape, never fail it
            logger.debug("metrics: cannot read job store %s: %s", path, exc)
            continue
        for status, count in store_jobs.items():
            totals[status] = totals.get(status, 0) + count
        done, failed = done + store_done, failed + store_failed
        for state, count in store_files.items():
            by_state[state] = by_state.get(state, 0) + count
    for status, count in sorted(totals.items()):
        jobs.add_metric([status], count)
    records.add_metric(["done"], done)
    records.add_metric(["failed"], failed)
    for state, count in sorted(by_state.items()):
        files.add_metric([state], count)
    yield from (jobs, records, files)


def _queue_metrics(queues: list[tuple[str, Any]]) -> Iterator[Metric]:
    messages = GaugeMetricFamily(
        "batchlane_queue_messages",
        "Messages in the queue by state: visible (waiting), in_flight (received, not deleted) and delayed.",
        labels=["queue", "state"],
    )
    oldest = GaugeMetricFamily(
        "batchlane_queue_oldest_message_age_seconds",
        "Age of the oldest message in the queue (embedded queues; SQS reports it to CloudWatch instead).",
        labels=["queue"],
    )
    dead = GaugeMetricFamily(
        "batchlane_queue_dead_letter_messages", "Messages in the queue's dead-letter queue.", labels=["queue"]
    )
    for name, queue in queues:
        try:
            attributes = queue.attributes()
        except Exception as exc:  # an unreachable SQS or a closed queue: skip it this scrape
            logger.debug("metrics: cannot read queue %s: %s", name, exc)
            continue
        for state in ("visible", "in_flight", "delayed"):
            messages.add_metric([name, state], float(attributes.get(state) or 0))
        if attributes.get("oldest_age_s") is not None:
            oldest.add_metric([name], float(attributes["oldest_age_s"]))
        dead.add_metric([name], float(attributes.get("dead_letters") or 0))
    yield from (messages, oldest, dead)


_collector: StoreCollector | None = None
_collector_lock = threading.Lock()


def watch(db_path: str | Path | None = None, queues: Iterable[Any] = ()) -> StoreCollector:
    """Report the job store at ``db_path`` and ``queues`` (``queue.base.Queue`` objects) on ``/metrics``.

    Safe to call more than once (several apps in one process): the first call registers the collector.
    """
    global _collector
    with _collector_lock:
        if _collector is None:
            _collector = StoreCollector()
            REGISTRY.register(_collector)
    _collector.add(db_path, list(queues))
    return _collector


def unwatch(db_path: str | Path | None = None, queues: Iterable[Any] = ()) -> None:
    """Stop reporting what ``watch`` added (a server shutting down closes its queue)."""
    if _collector is not None:
        _collector.remove(db_path, list(queues))


def exposition() -> bytes:
    """The default registry in Prometheus's text format (what ``GET /metrics`` answers)."""
    from prometheus_client import generate_latest

    return generate_latest(REGISTRY)


def start_http_server(port: int, host: str = "127.0.0.1") -> Any:
    """Serve ``/metrics`` on ``host:port`` from a daemon thread (for processes without an HTTP server)."""
    from prometheus_client import start_http_server as start

    server, _thread = start(port, addr=host)
    return server
