"""Data capture in SageMaker's format: each ``/invocations`` request and response as one JSON line (docs/data-capture.md).

A record::

    {"captureData": {"endpointInput": {"observedContentType": "text/csv", "mode": "INPUT",
                                       "data": "...", "encoding": "CSV"},
                     "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT",
                                        "data": "...", "encoding": "JSON"}},
     "eventMetadata": {"eventId": "<uuid>", "inferenceId": "<id>", "inferenceTime": "2026-12-06T21:00:00Z"},
     "eventVersion": "0"}

``data`` is the body as text for CSV and JSON media types (``encoding`` ``CSV`` / ``JSON``) and base64 for anything
else (``BASE64``), as SageMaker writes it. Files go under ``<destination>/<name>/<yyyy>/<mm>/<dd>/<hh>/`` (UTC hour of
the inference), named ``<MM>-<SS>-<mmm>-<uuid>.jsonl`` after the time the file was written.

Capture never blocks or fails inference: ``CaptureWriter.capture`` only puts the raw bodies on a bounded queue (a
full queue drops the record, counted in ``batchlane_capture_dropped_records_total`` and logged); one background
thread encodes, batches and writes them, one file per flush, and ``close`` flushes what is left.
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchlane import content_types, metrics
from batchlane import settings as settings_mod
from batchlane.errors import ValidationError

if TYPE_CHECKING:
    from batchlane.settings import ServeSettings

logger = logging.getLogger(__name__)

EVENT_VERSION = "0"
INFERENCE_ID_HEADER = "x-amzn-sagemaker-inference-id"
"""The header InvokeEndpoint's ``InferenceId`` arrives in; its value becomes the record's ``inferenceId``."""
DEFAULT_QUEUE_RECORDS = 10_000
DEFAULT_FLUSH_INTERVAL_S = 5.0
DEFAULT_FILE_RECORDS = 1_000
DRAIN_INTERVAL_S = (
    0.5  # how often the writer takes what requests queued (the queue holds 10,000: 20,000 req/s)
)


def _is_json(media: str) -> bool:
    return media in (content_types.JSON, content_types.JSONLINES) or media.endswith("+json")


def encode_payload(body: bytes, content_type: str | None, mode: str) -> dict[str, str]:
    """One side of a record: CSV and JSON bodies as text, anything else (or non-UTF-8 text) as base64."""
    media = content_types.normalize(content_type)
    encoding = "CSV" if media == content_types.CSV else "JSON" if _is_json(media) else "BASE64"
    data: str | None = None
    if encoding != "BASE64":
        try:
            data = body.decode("utf-8")
        except UnicodeDecodeError:
            encoding = "BASE64"
    if data is None:
        data = base64.b64encode(body).decode("ascii")
    return {"observedContentType": content_type or "", "mode": mode, "data": data, "encoding": encoding}


@dataclass(frozen=True)
class Event:
    """One captured invocation, as the request thread hands it over (encoding happens on the writer thread)."""

    request: bytes
    request_type: str | None
    response: bytes
    response_type: str | None
    time: float  # Unix seconds
    inference_id: str | None = None

    def record(self) -> dict[str, Any]:
        """The JSON object of this event in SageMaker's capture format."""
        metadata: dict[str, str] = {"eventId": str(uuid.uuid4())}
        if self.inference_id:
            metadata["inferenceId"] = self.inference_id
        metadata["inferenceTime"] = datetime.fromtimestamp(self.time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "captureData": {
                "endpointInput": encode_payload(self.request, self.request_type, "INPUT"),
                "endpointOutput": encode_payload(self.response, self.response_type, "OUTPUT"),
            },
            "eventMetadata": metadata,
            "eventVersion": EVENT_VERSION,
        }


@dataclass(frozen=True)
class CaptureConfig:
    """Where and how much to capture. ``sample_percent`` is 0-100 (SageMaker's ``InitialSamplingPercentage``)."""

    destination: str
    name: str
    sample_percent: float = 100.0
    generate_inference_id: bool = False
    max_queue_records: int = DEFAULT_QUEUE_RECORDS
    flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S
    max_file_records: int = DEFAULT_FILE_RECORDS

    def __post_init__(self) -> None:
        if not 0 <= self.sample_percent <= 100:
            raise ValidationError(
                f"capture sampling must be a percentage from 0 to 100, got {self.sample_percent:g}",
                field="--capture-sample",
            )
        if not self.name.strip("/"):
            raise ValidationError(
                "the capture name (the folder under the destination) is empty", field="name"
            )

    @classmethod
    def from_settings(cls, settings: ServeSettings, default_name: str) -> CaptureConfig | None:
        """The capture of a ``batchlane serve`` (``--capture`` or ``BATCHLANE_CAPTURE_URI``), or None when off."""
        if not settings.capture_uri:
            return None
        return cls(
            destination=settings.capture_uri,
            name=settings.capture_name or default_name,
            sample_percent=100.0 if settings.capture_sample is None else settings.capture_sample,
            generate_inference_id=settings.capture_inference_id,
        )

    def environment(self) -> dict[str, str]:
        """The variables that make a ``batchlane serve`` process capture with this config (the inverse of
        ``from_env``)."""
        return {
            settings_mod.BATCHLANE_CAPTURE_URI: self.destination,
            settings_mod.BATCHLANE_CAPTURE_NAME: self.name,
            settings_mod.BATCHLANE_CAPTURE_SAMPLE: f"{self.sample_percent:g}",
            settings_mod.BATCHLANE_CAPTURE_INFERENCE_ID: "true" if self.generate_inference_id else "false",
        }


def hour_folder(when: float) -> str:
    """``<yyyy>/<mm>/<dd>/<hh>``: the UTC hour of ``when`` (Unix seconds)."""
    return datetime.fromtimestamp(when, UTC).strftime("%Y/%m/%d/%H")


def file_name(when: float) -> str:
    """SageMaker's capture file name: ``<minute>-<second>-<millisecond>-<uuid>.jsonl`` of ``when``."""
    stamp = datetime.fromtimestamp(when, UTC)
    return f"{stamp:%M-%S}-{stamp.microsecond // 1000:03d}-{uuid.uuid4()}.jsonl"


class CaptureWriter:
    """Captures invocations to ``config.destination`` without ever blocking the caller (module docstring)."""

    def __init__(
        self,
        config: CaptureConfig,
        *,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        from batchlane.storage.base import join_key, open_store

        self.config = config
        self.store, prefix = open_store(config.destination, env, field="capture destination")
        self._prefix = join_key(prefix, config.name.strip("/"))
        self._clock = clock
        self._rng = rng
        self._queue: queue.Queue[Event] = queue.Queue(maxsize=max(1, config.max_queue_records))
        self._stop = threading.Event()
        self.written = 0
        self.dropped = 0
        self.files = 0
        self._thread = threading.Thread(target=self._run, name="batchlane-capture", daemon=True)
        self._thread.start()

    def sampled(self) -> bool:
        """Whether the next invocation is captured (``sample_percent`` of them, at random)."""
        percent = self.config.sample_percent
        return percent >= 100 or (percent > 0 and self._rng() * 100 < percent)

    def capture(
        self,
        request: bytes,
        request_type: str | None,
        response: bytes,
        response_type: str | None,
        *,
        inference_id: str | None = None,
    ) -> bool:
        """Queue one invocation (if sampled); never blocks. False when it was sampled out or dropped."""
        if self._stop.is_set() or not self.sampled():
            return False
        if inference_id is None and self.config.generate_inference_id:
            inference_id = str(uuid.uuid4())
        event = Event(request, request_type, response, response_type, self._clock(), inference_id)
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self._drop("queue_full", 1)
            return False
        return True

    def _drop(self, reason: str, count: int) -> None:
        first = self.dropped == 0
        self.dropped += count
        metrics.CAPTURE_DROPPED.labels(reason=reason).inc(count)
        # The first drop and then one line per thousand: a writer that fell behind must not flood the log.
        if first or self.dropped // 1000 != (self.dropped - count) // 1000:
            logger.warning(
                "data capture dropped %d record(s) so far (%s); inference is unaffected", self.dropped, reason
            )

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop taking records, write what is queued, and stop the writer thread."""
        self._stop.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            logger.warning("data capture: the writer did not finish within %.0f s", timeout_s)

    def _run(self) -> None:
        # The writer wakes on a timer and drains the queue in one go, rather than on every record: a wake-up per
        # request would cost the request threads a GIL hand-over each.
        drain_s = min(DRAIN_INTERVAL_S, self.config.flush_interval_s)
        pending: list[Event] = []
        first_at = 0.0
        while True:
            stopping = self._stop.wait(drain_s)
            while True:
                try:
                    event = self._queue.get_nowait()
                except queue.Empty:
                    break
                if not pending:
                    first_at = time.monotonic()
                pending.append(event)
                if len(pending) >= self.config.max_file_records:
                    self._flush(pending)
                    pending = []
            if pending and (stopping or time.monotonic() - first_at >= self.config.flush_interval_s):
                self._flush(pending)
                pending = []
            if stopping:
                return

    def _flush(self, events: list[Event]) -> None:
        """Write ``events`` as one file per UTC hour they fall in."""
        from batchlane.storage.base import join_key

        by_hour: dict[str, list[Event]] = {}
        for event in events:
            by_hour.setdefault(hour_folder(event.time), []).append(event)
        for folder, group in by_hour.items():
            try:
                lines = [json.dumps(e.record(), ensure_ascii=False, separators=(",", ":")) for e in group]
                data = ("\n".join(lines) + "\n").encode("utf-8")
                key = join_key(self._prefix, folder, file_name(self._clock()))
                self.store.write_bytes(key, data)
            except Exception as exc:  # a full disk or an unreachable bucket costs records, never inference
                logger.error("data capture: could not write %d record(s): %s", len(group), exc)
                self._drop("write_error", len(group))
                continue
            self.written += len(group)
            self.files += 1
            metrics.CAPTURE_RECORDS.inc(len(group))


class JobCapture:
    """The data capture of a transform job with a ``DataCaptureConfig``: its model server captures every
    invocation under ``<DestinationS3Uri>/<job name>/``.

    A local destination is written by the model server itself. A remote one (``s3://``) is first written to
    ``spool`` and uploaded when the job's model server has stopped (leaving this context): the model process never
    gets the runner's cloud credentials (serving/environment.py).
    """

    def __init__(self, destination: str, job_name: str, generate_inference_id: bool, spool: Path) -> None:
        from batchlane.storage.uri import parse_uri

        self.destination = destination
        self.remote = parse_uri(destination, field="DataCaptureConfig.DestinationS3Uri").scheme != "file"
        self.spool = spool
        self.config = CaptureConfig(
            destination=str(spool) if self.remote else destination,
            name=job_name,
            generate_inference_id=generate_inference_id,
        )

    @classmethod
    def of(cls, config: Any, job_name: str, spool: Path) -> JobCapture | None:
        """For a request's ``DataCaptureConfig`` (None: no capture)."""
        if config is None:
            return None
        return cls(config.DestinationS3Uri, job_name, bool(config.GenerateInferenceId), spool)

    def environment(self) -> dict[str, str]:
        """What the job's ``batchlane serve`` needs in its environment to capture."""
        return self.config.environment()

    def __enter__(self) -> JobCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.remote:
            self.publish()

    def publish(self) -> int:
        """Upload the spooled files to the destination (same relative keys), deleting each once uploaded."""
        from batchlane.storage.base import join_key, open_store

        if not self.spool.is_dir():
            return 0
        store, prefix = open_store(self.destination, field="DataCaptureConfig.DestinationS3Uri")
        count = 0
        for path in sorted(self.spool.rglob("*.jsonl")):
            key = join_key(prefix, path.relative_to(self.spool).as_posix())
            try:
                store.write_bytes(key, path.read_bytes())
            except Exception as exc:  # the job's own outputs are done; a capture upload is retried next run
                logger.error("data capture: could not upload %s to %s: %s", path, store.url_for(key), exc)
                continue
            path.unlink()
            count += 1
        return count
