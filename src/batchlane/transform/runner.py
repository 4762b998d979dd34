"""Runs one transform job to its end: the files of a job, one after another, each committed atomically.

A runner holds the job's lease in the job store (renewed by a heartbeat thread) and records a checkpoint per input
file. Killed at any point, the job is resumed by another runner (``batchlane jobs resume``): committed files are
not redone, the file in progress is redone from its start, and its half-written output never becomes visible
(the object store's atomic writer). A runner that lost its lease stops before committing anything.

Per file: stream → decompress → split into records → (CSV header) → InputFilter → pack mini-batches → up to
``MaxConcurrentTransforms`` requests in flight → split/join/OutputFilter per response → assemble in input order.
With ``on_record_error`` = ``error-row``/``skip`` a failing multi-record batch is bisected until the poison
records are isolated; they become error rows (or are left out) and the file still completes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from batchlane.errors import BadInput, BatchlaneError, ModelLoadError, NotFound, PayloadTooLarge
from batchlane.jobs.state import FileState, JobStatus
from batchlane.jobs.store import FileCheckpoint, JobRecord, JobStore
from batchlane.models import ModelSpec
from batchlane.storage.base import ObjectStore, open_store
from batchlane.transform import assemble
from batchlane.transform.assemble import Assembler
from batchlane.transform.container import ModelContainer
from batchlane.transform.dataprocessing import DataProcessor, split_response
from batchlane.transform.inputs import list_inputs
from batchlane.transform.invoke import InvocationFailed, Invoker, source_headers
from batchlane.transform.model_data import materialize_model
from batchlane.transform.options import JobOptions
from batchlane.transform.params import EffectiveParams, container_environment, resolve
from batchlane.transform.plan import MiniBatch, pack, plan_job, prefix_overlap
from batchlane.transform.spec import CreateTransformJobRequest, canonical_uri, validate_request
from batchlane.transform.split import Record, iter_records, open_decompressed

log = logging.getLogger(__name__)

DEFAULT_LEASE_S = 30.0
PROGRESS_FLUSH_S = 0.5
STOP_POLL_S = 0.5
# With max_error_ratio, a file is failed early only once this many of its records have been answered (the first
# bad record of a file would otherwise be "100% failed"); the whole file's ratio is always checked at its end.
MIN_RATIO_SAMPLE = 100
ProgressCallback = Callable[[str, dict[str, Any]], None]


class FileFailed(BatchlaneError):
    """One input file cannot be transformed; the job goes on with the next file and ends Failed. ``kind`` is the
    ``InvocationFailed.kind`` when a request failed (``"connection"``, ``"timeout"``, ...), else None."""

    def __init__(self, message: str, *, kind: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind


class Interrupted(Exception):
    """The job was asked to stop, or this runner lost its lease: abandon the file without committing."""


def runner_id() -> str:
    """``host:pid:random``: unique per runner, and tells a later runner on the same host whether we are alive."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_is_dead(owner: str | None) -> bool:
    """True when ``owner`` is a runner of this host whose process no longer exists (e.g. it was SIGKILLed)."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def job_context(record: JobRecord) -> tuple[CreateTransformJobRequest, JobOptions, ModelSpec]:
    """The validated request, options and model snapshot stored with a job (see ``engines.local.submit``)."""
    request = validate_request(record.request)
    options = JobOptions.model_validate(record.options.get("job") or {})
    model = ModelSpec.parse(record.options["model"])
    return request, options, model


@dataclass
class _FileOutcome:
    records: int = 0
    failed: int = 0
    bytes_read: int = 0
    first_error: str | None = None


@dataclass
class _BatchResult:
    chunks: list[bytes]
    ok: int
    failed: int
    consolidated: list[bytes] = field(default_factory=list)
    error: str | None = None


class JobRunner:
    """Runs job ``name`` from ``store`` to a terminal state. ``run()`` returns the final record.

    ``on_progress(event, data)`` receives ``"start"`` (files, bytes), ``"batch"`` (records, failed, bytes) and
    ``"file"`` (key, state) events for progress displays. ``lease_s`` is how long the lease lasts without renewal.
    """

    def __init__(
        self,
        store: JobStore,
        name: str,
        *,
        lease_s: float = DEFAULT_LEASE_S,
        on_progress: ProgressCallback | None = None,
        owner: str | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        self.store = store
        self.name = name
        self.lease_s = lease_s
        self.on_progress = on_progress or (lambda event, data: None)
        self.owner = owner or runner_id()
        self.cache_dir = Path(cache_dir) if cache_dir else store.folder / "cache"
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._done = threading.Event()
        self.job_log = logging.getLogger(f"batchlane.job.{name}")

    # -- lease and stop signal -------------------------------------------------------------------------------
    def _claim(self) -> bool:
        if self.store.claim(self.name, self.owner, self.lease_s):
            return True
        record = self.store.get_job(self.name)
        if owner_is_dead(record.owner) and self.store.release(self.name, record.owner or ""):
            log.info("job %s: runner %s is gone; taking the job over", self.name, record.owner)
            return self.store.claim(self.name, self.owner, self.lease_s)
        return False

    def _heartbeat(self) -> None:
        # The lease is renewed every third of its length; a stop request is looked for more often (a read), so
        # `batchlane jobs stop` takes effect within about a second whatever the lease length.
        renew_every = max(0.2, self.lease_s / 3)
        next_renew = time.monotonic() + renew_every
        while not self._done.wait(min(STOP_POLL_S, renew_every)):
            try:
                if time.monotonic() >= next_renew:
                    if not self.store.renew(self.name, self.owner, self.lease_s):
                        self._lost.set()
                        return
                    next_renew = time.monotonic() + renew_every
                if self.store.get_job(self.name).status is JobStatus.STOPPING:
                    self._stop.set()
            except Exception:  # a busy database must not kill the heartbeat; the next beat retries
                log.exception("job %s: heartbeat failed", self.name)

    def _check_interrupt(self) -> None:
        if self._lost.is_set():
            raise Interrupted("lost the job lease to another runner")
        if self._stop.is_set():
            raise Interrupted("stop requested")

    # -- the job -----------------------------------------------------------------------------------------------
    def run(self) -> JobRecord:
        """Run (or resume) the job; returns its final record, or the current one if another runner holds it."""
        record = self.store.get_job(self.name)
        if record.is_terminal:
            return record
        if not self._claim():
            log.info("job %s is held by %s; not running it here", self.name, record.owner)
            return self.store.get_job(self.name)
        handler = self._attach_log()
        beat = threading.Thread(target=self._heartbeat, name=f"lease-{self.name}", daemon=True)
        beat.start()
        try:
            return self._run_claimed()
        finally:
            self._done.set()
            beat.join(timeout=5)
            self.job_log.removeHandler(handler)
            handler.close()

    def _attach_log(self) -> logging.Handler:
        path = self.store.log_path(self.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        self.job_log.addHandler(handler)
        self.job_log.setLevel(logging.INFO)
        # The job's lines belong to its log (`batchlane jobs logs`), not the console.
        self.job_log.propagate = False
        return handler

    def _finish(self, status: JobStatus, reason: str | None = None) -> JobRecord:
        current = self.store.get_job(self.name)
        if current.is_terminal:
            return current
        if current.status is JobStatus.STOPPING and status is not JobStatus.FAILED:
            status = JobStatus.STOPPED
        record = self.store.transition(self.name, status, failure_reason=reason, owner=self.owner)
        self.job_log.info("[batchlane]: job %s%s", status.value, f": {reason}" if reason else "")
        return record

    def _run_claimed(self) -> JobRecord:
        record = self.store.get_job(self.name)
        if record.status is JobStatus.STOPPING:
            return self._finish(JobStatus.STOPPED)
        try:
            request, options, model = job_context(record)
            in_store, out_store, files = self._plan(record, request)
        except BatchlaneError as exc:
            return self._finish(JobStatus.FAILED, f"ClientError: {exc}")
        pending = [f for f in files if f.state is FileState.PENDING]
        self.on_progress(
            "start",
            {"files": len(files), "bytes": sum(f.size for f in files), "done": len(files) - len(pending)},
        )
        if pending:
            try:
                with self._container(request, options, model) as container:
                    params = resolve(request, self._execution_parameters(request, container))
                    self.job_log.info("[sagemaker logs]: %s", params.log_line())
                    asyncio.run(
                        self._run_files(
                            container.url or "", params, options, in_store, out_store, pending, container
                        )
                    )
            except Interrupted as exc:
                self.job_log.info("[batchlane]: interrupted: %s", exc)
                if self._lost.is_set():
                    return self.store.get_job(self.name)
                return self._finish(JobStatus.STOPPED)
            except BatchlaneError as exc:
                self.job_log.info("[batchlane]: %s", exc)
                return self._finish(JobStatus.FAILED, f"AlgorithmError: {exc}")
        failed = self.store.files(self.name, FileState.FAILED)
        if options.consolidate and not self._stop.is_set():
            self._write_consolidated(options.consolidate, self.store.files(self.name))
        if failed:
            first = failed[0]
            more = f" ({len(failed) - 1} more files failed)" if len(failed) > 1 else ""
            reason = f"{in_store.url_for(first.input_key)}: {first.error}{more}; see `batchlane jobs logs {self.name}`"
            return self._finish(JobStatus.FAILED, reason)
        final = self.store.get_job(self.name)
        if final.records_done == 0 and final.files_total > 0:
            self.job_log.info("[batchlane]: warning: the job processed no records")
        return self._finish(JobStatus.COMPLETED)

    def _plan(
        self, record: JobRecord, request: CreateTransformJobRequest
    ) -> tuple[ObjectStore, ObjectStore, list[FileCheckpoint]]:
        source = request.TransformInput.DataSource.S3DataSource
        output_uri = canonical_uri(request.TransformOutput.S3OutputPath)
        out_store, out_prefix = open_store(output_uri, field="TransformOutput.S3OutputPath")
        files = self.store.files(self.name)
        if files:
            # Resume: reuse the stored plan (re-listing could pick up this job's own outputs as inputs).
            in_store, _, _ = list_inputs(source.S3DataType, canonical_uri(source.S3Uri))
            self._clean_temps(out_store, out_prefix)
            return in_store, out_store, files
        in_store, objects, in_prefix = list_inputs(source.S3DataType, canonical_uri(source.S3Uri))
        warning = prefix_overlap(source.S3Uri, output_uri)
        if warning:
            self.job_log.info("[batchlane]: warning: %s", warning)
            log.warning("job %s: %s", self.name, warning)
        plans = plan_job(in_prefix, objects, out_prefix)
        self.store.add_files(self.name, plans, owner=self.owner)
        return in_store, out_store, self.store.files(self.name)

    @staticmethod
    def _clean_temps(store: ObjectStore, prefix: str) -> None:
        """Remove what a dead runner of this job left half-written. Only under the output *folder*: every output key
        is ``<prefix>/...`` (``plan.output_key_for``), and a raw prefix such as ``out`` would also reach the in-flight
        temp files (or multipart uploads) of another job writing to ``out2/`` or to a sibling folder."""
        remove = getattr(store, "remove_stale_temps", None)
        if remove is None:
            return
        folder = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        with contextlib.suppress(Exception):
            remove(folder, older_than_s=0)

    def _container(
        self, request: CreateTransformJobRequest, options: JobOptions, model: ModelSpec
    ) -> ModelContainer:
        env = container_environment(request, model.environment)
        log_file = self.store.log_path(self.name).with_suffix(".container.log")
        common = {"env": env, "startup_timeout_s": options.startup_timeout_s, "log_file": log_file}
        if model.serve_url:
            return ModelContainer(url=model.serve_url, **common)
        if model.serve_command:
            return ModelContainer(serve_command=model.serve_command, **common)
        model_dir = materialize_model(model.model_data or "", self.cache_dir)
        return ModelContainer(model_dir=model_dir, **common)

    def _execution_parameters(
        self, request: CreateTransformJobRequest, container: ModelContainer
    ) -> dict[str, Any] | None:
        unset = (
            not request.MaxConcurrentTransforms
            or request.MaxPayloadInMB is None
            or request.BatchStrategy is None
        )
        return container.execution_parameters() if unset else None

    # -- files -------------------------------------------------------------------------------------------------
    async def _run_files(
        self,
        url: str,
        params: EffectiveParams,
        options: JobOptions,
        in_store: ObjectStore,
        out_store: ObjectStore,
        files: list[FileCheckpoint],
        container: ModelContainer | None = None,
    ) -> None:
        processor = DataProcessor.from_params(params)
        assembler = Assembler(params.assemble_with, params.result_type)
        invoker = Invoker(
            url,
            timeout_s=params.invocations_timeout_s,
            max_retries=params.invocations_max_retries,
            max_in_flight=params.max_concurrent_transforms,
            chunked=params.max_payload_bytes is None,
        )
        try:
            for checkpoint in files:
                self._check_interrupt()
                context = _FileContext(self, checkpoint, params, options, processor, assembler, invoker)
                try:
                    outcome = await context.run(in_store, out_store)
                except (FileFailed, BadInput, PayloadTooLarge, InvocationFailed, NotFound) as exc:
                    # NotFound: the object vanished after the job was planned (e.g. before a resume).
                    self.job_log.info("%s: %s", in_store.url_for(checkpoint.input_key), exc)
                    self.store.mark_file(
                        self.name, checkpoint.input_key, FileState.FAILED, error=str(exc), owner=self.owner
                    )
                    self.on_progress("file", {"key": checkpoint.input_key, "state": "failed"})
                    if getattr(exc, "kind", None) == "connection":
                        _fail_if_exited(container, in_store.url_for(checkpoint.input_key), self.name)
                    continue
                self.store.mark_file(
                    self.name,
                    checkpoint.input_key,
                    FileState.DONE,
                    records=outcome.records,
                    records_failed=outcome.failed,
                    owner=self.owner,
                )
                self.job_log.info(
                    "%s: done: %d records, %d failed",
                    in_store.url_for(checkpoint.input_key),
                    outcome.records,
                    outcome.failed,
                )
                self.on_progress("file", {"key": checkpoint.input_key, "state": "done"})
        finally:
            await invoker.aclose()

    def _consolidate_part(self, checkpoint: FileCheckpoint) -> Path:
        # A stable digest (not hash(), which differs per process): a resumed job must find the parts of the files
        # an earlier runner committed.
        folder = self.store.log_path(self.name).parent / f"{self.name}.consolidate"
        digest = hashlib.sha256(checkpoint.input_key.encode("utf-8", "surrogatepass")).hexdigest()[:24]
        return folder / f"{digest}.jsonl"

    def _write_consolidated(self, uri: str, files: list[FileCheckpoint]) -> None:
        store, key = open_store(uri, field="consolidate")
        with store.writer(key) as out:
            for checkpoint in files:
                part = self._consolidate_part(checkpoint)
                if checkpoint.state is FileState.DONE and part.exists():
                    out.write(part.read_bytes())
        self.job_log.info("[batchlane]: consolidated results written to %s", store.url_for(key))


class _FileContext:
    """Transforms one input file into its ``.out`` object."""

    def __init__(
        self,
        runner: JobRunner,
        checkpoint: FileCheckpoint,
        params: EffectiveParams,
        options: JobOptions,
        processor: DataProcessor,
        assembler: Assembler,
        invoker: Invoker,
    ) -> None:
        self.runner = runner
        self.checkpoint = checkpoint
        self.params = params
        self.options = options
        self.processor = processor
        self.assembler = assembler
        self.invoker = invoker
        self.isolate = options.on_record_error != "fail"
        self.outcome = _FileOutcome()
        self.consolidate = bool(options.consolidate)
        self._unflushed = {"records": 0, "failed": 0, "bytes": 0}
        self._last_flush = 0.0
        self._last_error: str | None = None

    async def run(self, in_store: ObjectStore, out_store: ObjectStore) -> _FileOutcome:
        key = self.checkpoint.input_key
        part_path = self.runner._consolidate_part(self.checkpoint)
        part: BinaryIO | None = None
        if self.consolidate:
            part_path.parent.mkdir(parents=True, exist_ok=True)
            part = tempfile.NamedTemporaryFile(dir=part_path.parent, delete=False, suffix=".tmp")  # noqa: SIM115
        try:
            with in_store.open(key) as raw, out_store.writer(self.checkpoint.output_key) as out:
                stream = open_decompressed(raw, self.params.compression_type)
                await self._transform(stream, out, part)
            if part is not None:
                part.close()
                os.replace(part.name, part_path)
                part = None
        finally:
            if part is not None:
                part.close()
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(part.name)
        self._flush_progress(force=True)
        return self.outcome

    def _batches(self, records: Iterator[Record], header: bytes | None) -> Iterator[MiniBatch]:
        """Mini-batches in order; with error isolation a record whose InputFilter fails becomes an error batch."""
        params = self.params
        failed_filter: list[tuple[Record, BadInput]] = []

        def filtered() -> Iterator[Record]:
            for record in records:
                try:
                    yield self.processor.filter_record(record)
                except BadInput as exc:
                    if not self.isolate:
                        raise
                    failed_filter.append((record, exc))
                    return

        while True:
            yield from pack(
                filtered(),
                split_type=params.split_type,
                strategy=params.batch_strategy,
                max_payload_bytes=params.max_payload_bytes,
                header=header,
                oversize="isolate" if self.isolate else "raise",
            )
            if not failed_filter:
                return
            record, exc = failed_filter.pop()
            yield MiniBatch((record,), b"", exc)  # type: ignore[arg-type]  # an error batch: never sent

    async def _transform(self, stream: BinaryIO, out: BinaryIO, part: BinaryIO | None) -> None:
        params = self.params
        records = iter_records(
            stream,
            params.split_type,
            max_record_bytes=None if self.isolate else params.max_payload_bytes,
        )
        header: bytes | None = None
        if self.options.csv_header != "none":
            first = next(records, None)
            if first is not None and self.options.csv_header == "repeat":
                header = self.processor.filter_header(first.data)
            elif first is not None:
                out_header = self.processor.output_header(first.data)
                if out_header is not None:
                    out.write(self.assembler.add(out_header))
        in_flight: deque[asyncio.Task[_BatchResult]] = deque()
        limit = max(1, params.max_concurrent_transforms)
        try:
            for batch in self._batches(records, header):
                self.runner._check_interrupt()
                in_flight.append(asyncio.ensure_future(self._batch(batch)))
                while len(in_flight) >= limit:
                    self._write(await in_flight.popleft(), out, part)
            while in_flight:
                self._write(await in_flight.popleft(), out, part)
            self._check_error_ratio(final=True)
        finally:
            for task in in_flight:
                task.cancel()

    def _write(self, result: _BatchResult, out: BinaryIO, part: BinaryIO | None) -> None:
        for chunk in result.chunks:
            out.write(chunk)
        if part is not None:
            part.writelines(result.consolidated)
        self.outcome.records += result.ok
        self.outcome.failed += result.failed
        self._unflushed["records"] += result.ok
        self._unflushed["failed"] += result.failed
        self._last_error = result.error or self._last_error
        self._check_error_ratio(final=False)
        self._flush_progress()

    def _check_error_ratio(self, *, final: bool) -> None:
        """``FileFailed`` when more than ``max_error_ratio`` of the file's records failed: at the end of the file,
        or earlier once ``MIN_RATIO_SAMPLE`` records have been answered."""
        ratio = self.options.max_error_ratio
        total = self.outcome.records + self.outcome.failed
        if ratio is None or not total or (not final and total < MIN_RATIO_SAMPLE):
            return
        if self.outcome.failed / total > ratio:
            raise FileFailed(
                f"{self.outcome.failed} of {total} records failed, more than max_error_ratio={ratio:g}"
                + (f"; last error: {self._last_error}" if self._last_error else "")
            )

    def _flush_progress(self, force: bool = False) -> None:
        loop_time = asyncio.get_event_loop().time() if not force else float("inf")
        if not force and loop_time - self._last_flush < PROGRESS_FLUSH_S:
            return
        self._last_flush = loop_time if not force else 0.0
        data, self._unflushed = self._unflushed, {"records": 0, "failed": 0, "bytes": 0}
        if any(data.values()):
            self.runner.store.add_progress(
                self.runner.name,
                self.checkpoint.input_key,
                records=data["records"],
                records_failed=data["failed"],
                bytes_read=data["bytes"],
                owner=self.runner.owner,
            )
        self.runner.on_progress("batch", {"records": data["records"], "failed": data["failed"], **data})

    async def _batch(self, batch: MiniBatch) -> _BatchResult:
        """One mini-batch → output chunks; isolates poison records by bisection when errors are not fatal."""
        self._unflushed["bytes"] += len(batch.body)
        if batch.error is not None:
            return self._record_error(batch.records[0], str(batch.error))
        try:
            headers = (
                source_headers(self.checkpoint.input_key, batch.records[0].index, len(batch.records))
                if self.options.source_headers
                else None
            )
            answer = await self.invoker.invoke(
                batch.body, content_type=self.params.content_type, accept=self.params.accept, headers=headers
            )
            outputs = self.processor.handle(batch.records, answer.body)
            chunks = [self.assembler.add(chunk) for chunk in outputs]
            consolidated = self._consolidated(batch.records, outputs, answer.body) if self.consolidate else []
            return _BatchResult(chunks, len(batch.records), 0, consolidated)
        except (InvocationFailed, BadInput) as exc:
            if not self.isolate or (isinstance(exc, InvocationFailed) and exc.kind == "connection"):
                kind = exc.kind if isinstance(exc, InvocationFailed) else None
                raise FileFailed(f"{exc} ({batch.where()})", kind=kind) from None
            if len(batch.records) == 1:
                return self._record_error(batch.records[0], str(exc))
            middle = len(batch.records) // 2
            merged = _BatchResult([], 0, 0)
            for half in (batch.records[:middle], batch.records[middle:]):
                for sub in pack(
                    half,
                    split_type=self.params.split_type,
                    strategy=self.params.batch_strategy,
                    max_payload_bytes=None,
                ):
                    result = await self._batch(sub)
                    merged.chunks += result.chunks
                    merged.consolidated += result.consolidated
                    merged.ok += result.ok
                    merged.failed += result.failed
                    merged.error = result.error or merged.error
            return merged

    def _record_error(self, record: Record, message: str) -> _BatchResult:
        self.runner.job_log.info("%s: %s: %s", self.checkpoint.input_key, record.where(), message)
        consolidated = (
            [assemble.consolidated_line(self.checkpoint.input_key, record, error=message)]
            if self.consolidate
            else []
        )
        chunks = (
            [self.assembler.error(record, message)] if self.options.on_record_error == "error-row" else []
        )
        return _BatchResult(chunks, 0, 1, consolidated, error=f"{record.where()}: {message}")

    def _consolidated(self, records: tuple[Record, ...], chunks: list[bytes], body: bytes) -> list[bytes]:
        if len(chunks) == len(records):
            outputs = chunks
        else:
            try:
                outputs = split_response(body, self.params.result_type, len(records))
            except BadInput:
                outputs = [body] + [b""] * (len(records) - 1)
        return [
            assemble.consolidated_line(
                self.checkpoint.input_key, record, output=output, content_type=self.params.result_type
            )
            for record, output in zip(records, outputs, strict=False)
        ]


def _fail_if_exited(container: ModelContainer | None, url: str, name: str) -> None:
    """After a connection failure, end the job if the model server we started has died: every later request would
    fail to connect, and each file would fail only after its retries. The file in progress is already marked failed."""
    process = container.process if container is not None else None
    if process is None:
        return
    try:
        # The connection can drop a moment before the process is reaped.
        code = process.wait(timeout=0.5)
    except subprocess.TimeoutExpired:
        return
    if code is not None:
        raise ModelLoadError(
            f"the model container exited with code {code} while transforming {url}; "
            f"see `batchlane jobs logs {name} --container`"
        )


def run_job(store: JobStore, name: str, **kwargs: Any) -> JobRecord:
    """Run or resume job ``name`` in this process until it ends; returns the final record."""
    return JobRunner(store, name, **kwargs).run()
