"""Runs one transform job to its end: the files of a job, one after another, each committed atomically.

A runner holds the job's lease in the job store (renewed by a heartbeat thread) and records a checkpoint per input
file. Killed at any point, the job is resumed by another runner (``batchlane jobs resume``): committed files are
not redone, the file in progress is redone from its start, and its half-written output never becomes visible
(the object store's atomic writer). A runner that lost its lease stops before committing anything.

Each file is transformed by ``file_transform.FileTransform``; a file that fails (``FileFailed``) is recorded and
the job goes on with the next one, ending Failed. When the fault was the model server's (it hung, died or stopped
answering /ping), ``supervisor.ServerSupervisor`` restarts it first, within the job's ``max_restarts``
(docs/transform.md, "Recovery"). A job with ``max_runtime_s`` is stopped at that deadline with the reason
``MaxRuntimeExceeded``; the file in flight is abandoned at once, even while a request is waiting for its answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from pathlib import Path
from typing import Any

from batchlane.aws_names import canonical_job_name
from batchlane.errors import BatchlaneError, Conflict, ValidationError
from batchlane.jobs.lease import DEFAULT_LEASE_S, claim, runner_id
from batchlane.jobs.lifecycle import finish
from batchlane.jobs.state import FileState, JobStatus
from batchlane.jobs.store import FileCheckpoint, JobRecord, JobStore
from batchlane.models import ModelSpec
from batchlane.serving.capture import JobCapture
from batchlane.storage.base import ObjectStore, open_store
from batchlane.transform.container import ModelContainer
from batchlane.transform.context import Interrupted, ProgressCallback, StoreContext, consolidate_part
from batchlane.transform.docker_server import docker_image, docker_model_container
from batchlane.transform.file_loop import STOP_POLL_S, FileLoop
from batchlane.transform.inputs import list_inputs
from batchlane.transform.invoke import InvokerKind, ModelServer
from batchlane.transform.model_data import materialize_model
from batchlane.transform.options import JobOptions
from batchlane.transform.params import EffectiveParams, container_environment, resolve
from batchlane.transform.part_assembly import remove_staged
from batchlane.transform.plan import plan_job, prefix_overlap
from batchlane.transform.spec import CreateTransformJobRequest, canonical_uri, validate_request

log = logging.getLogger(__name__)


def max_runtime_reason(seconds: int) -> str:
    """The reason a job stopped at its ``max_runtime_s`` deadline carries (``FailureReason`` of a Stopped job)."""
    return f"MaxRuntimeExceeded: the job ran longer than {seconds} s (max_runtime_s)"


def job_context(record: JobRecord) -> tuple[CreateTransformJobRequest, JobOptions, ModelSpec]:
    """The validated request, options and model snapshot stored with a job (see ``engines.submit``)."""
    request = validate_request(record.request)
    options = JobOptions.model_validate(record.options.get("job") or {})
    model = ModelSpec.parse(record.options["model"])
    return request, options, model


class JobRunner:
    """Runs job ``name`` from ``store`` to a terminal state. ``run()`` returns the final record.

    ``on_progress(event, data)`` receives ``"start"`` (files, bytes, done), ``"starting"`` (the model container is
    being started), ``"ready"`` (startup_s: it answers /ping), ``"batch"`` (records, failed, bytes), ``"part"``
    (key, number: a part of a large file is committed, docs/parts.md) and ``"file"`` (key, state) events for
    progress displays, and ``"restart"`` (number, total) when the model server is restarted;
    records are this run's only. ``lease_s`` is how long the lease lasts without renewal. ``interrupt()`` stops the
    job gracefully (signal handlers call it). ``invoker`` says how the model is reached: ``"http"`` (a model server
    is started, or a model's ``serve_url`` used) or ``"in_process"`` (``in_process.InProcessModel``: the model is
    loaded into this process; for models with ``model_data``).
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
        invoker: InvokerKind = "http",
    ) -> None:
        self.store = store
        self.name = name
        self.lease_s = lease_s
        self.on_progress = on_progress or (lambda event, data: None)
        self.owner = owner or runner_id()
        self.cache_dir = Path(cache_dir) if cache_dir else store.folder / "cache"
        self.invoker = invoker
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._done = threading.Event()
        self._interrupted = threading.Event()
        self._timed_out = threading.Event()
        self._deadline: float | None = None  # time.monotonic() at which max_runtime_s runs out
        self.job_log = logging.getLogger(f"batchlane.job.{name}")

    # -- lease and stop signal -------------------------------------------------------------------------------
    def _claim(self) -> bool:
        return claim(self.store, self.name, self.owner, self.lease_s)

    def _heartbeat(self) -> None:
        # The lease is renewed every third of its length; a stop request is looked for more often (a read), so
        # `batchlane jobs stop` takes effect within about a second whatever the lease length.
        renew_every = max(0.2, self.lease_s / 3)
        next_renew = time.monotonic() + renew_every
        while not self._done.wait(min(STOP_POLL_S, renew_every)):
            if self._deadline is not None and time.monotonic() >= self._deadline:
                self._timed_out.set()
                self._stop.set()
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

    def interrupt(self) -> None:
        """Stop the job as ``batchlane jobs stop`` would: the file in flight is abandoned at once (its
        output is never committed) and the job ends Stopped. Only sets flags, so a signal handler may call it."""
        self._interrupted.set()
        self._stop.set()

    @property
    def halted(self) -> bool:
        """Whether the job was asked to stop, ran past its deadline or lost its lease (``check_interrupt`` raises)."""
        return self._stop.is_set() or self._lost.is_set()

    def check_interrupt(self) -> None:
        if self._lost.is_set():
            raise Interrupted("lost the job lease to another runner")
        if self._timed_out.is_set():
            raise Interrupted("the job's max_runtime_s ran out")
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
        ended_by_signal = False
        try:
            return self._run_claimed()
        except Conflict:
            # A fenced write was refused: the lease went to another runner (or was released) before the heartbeat
            # noticed. That is a lost lease, as the heartbeat would have said, not a crash of this runner.
            current = self.store.get_job(self.name)
            if current.owner == self.owner:
                raise
            self._lost.set()
            log.info("job %s: lost the lease to %s; stopping here", self.name, current.owner or "nobody")
            return current
        except (KeyboardInterrupt, SystemExit):
            ended_by_signal = True
            raise
        finally:
            self._done.set()
            beat.join(timeout=5)
            if ended_by_signal:
                # A second Ctrl-C or a background runner's SIGTERM: the job stays InProgress and its lease is given
                # up, so `jobs resume` or the next orphan sweep can continue it at once.
                self.store.release(self.name, self.owner)
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
        record = finish(self.store, self.name, status, reason, owner=self.owner)
        self.job_log.info("[batchlane]: job %s%s", record.status.value, f": {reason}" if reason else "")
        return record

    def _run_claimed(self) -> JobRecord:
        record = self.store.get_job(self.name)
        if record.status is JobStatus.STOPPING:
            # Taken over to finish a stop (`batchlane jobs stop` after the runner died): its temp file goes too.
            if self.store.files(self.name):
                with contextlib.suppress(BatchlaneError):
                    output = validate_request(record.request).TransformOutput.S3OutputPath
                    self._clean_temps(
                        *open_store(canonical_uri(output), field="TransformOutput.S3OutputPath")
                    )
            return self._finish(JobStatus.STOPPED)
        try:
            request, options, model = job_context(record)
            in_store, out_store, files = self._plan(record, request)
        except BatchlaneError as exc:
            return self._finish(JobStatus.FAILED, f"ClientError: {exc}")
        if options.max_runtime_s is not None:
            # Counted per run: a resumed job gets its whole max_runtime_s again (docs/transform.md, "Recovery").
            self._deadline = time.monotonic() + options.max_runtime_s
        pending = [f for f in files if f.state is FileState.PENDING]
        self.on_progress(
            "start",
            {"files": len(files), "bytes": sum(f.size for f in files), "done": len(files) - len(pending)},
        )
        if pending:
            try:
                self.check_interrupt()
                self.on_progress("starting", {})
                starting = time.monotonic()
                capture = self._capture(request)
                # The capture context exits after the model server: the server has flushed its capture files.
                with (
                    capture or contextlib.nullcontext(),
                    self._model_server(request, options, model, capture) as server,
                ):
                    self.on_progress("ready", {"startup_s": time.monotonic() - starting})
                    params = resolve(request, self._execution_parameters(request, server))
                    self.job_log.info("[sagemaker logs]: %s", params.log_line())
                    self._run_files(params, options, server, in_store, out_store, pending)
            except Interrupted as exc:
                self.job_log.info("[batchlane]: interrupted: %s", exc)
                if self._lost.is_set():
                    return self.store.get_job(self.name)
                if self._timed_out.is_set() and options.max_runtime_s is not None:
                    # Stopped, as SageMaker ends a training job at its MaxRuntimeInSeconds, with the reason.
                    reason = max_runtime_reason(options.max_runtime_s)
                    self.job_log.info("[batchlane]: %s; stopping the job", reason)
                    self.store.request_stop(self.name)
                    return self._finish(JobStatus.STOPPED, reason)
                if self._interrupted.is_set():
                    # InProgress → Stopping → Stopped, the same path as `batchlane jobs stop`.
                    self.store.request_stop(self.name)
                return self._finish(JobStatus.STOPPED)
            except BatchlaneError as exc:
                self.job_log.info("[batchlane]: %s", exc)
                return self._finish(JobStatus.FAILED, f"AlgorithmError: {exc}")
        failed = self.store.files(self.name, FileState.FAILED)
        if options.consolidate and (not self._stop.is_set() or self._timed_out.is_set()):
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

    def _run_files(
        self,
        params: EffectiveParams,
        options: JobOptions,
        server: ModelServer,
        in_store: ObjectStore,
        out_store: ObjectStore,
        pending: list[FileCheckpoint],
    ) -> None:
        """Transform the pending files with ``server``, here, one after another; ``Interrupted`` on a stop. An
        engine that sends them elsewhere (``engines.ray``) overrides this and ``_model_server``."""
        loop = FileLoop(self._file_context(), params, options, server)
        asyncio.run(loop.run(in_store, out_store, pending))

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
            self._clean_parts(out_store, files)
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

    def _clean_parts(self, store: ObjectStore, files: list[FileCheckpoint]) -> None:
        """Remove the staged parts a dead runner left of files it had already committed (docs/parts.md)."""
        done = {f.input_key: f.output_key for f in files if f.state is FileState.DONE}
        counts: dict[str, int] = {}
        for part in self.store.parts(self.name):
            if part.input_key in done and part.count > 1:
                counts[part.input_key] = part.count
        for key, count in counts.items():
            remove_staged(store, done[key], self.name, count)

    def _capture(self, request: CreateTransformJobRequest) -> JobCapture | None:
        """The job's data capture (``DataCaptureConfig``; docs/data-capture.md), or None."""
        spool = self.store.log_path(self.name).with_suffix(".capture")
        return JobCapture.of(request.DataCaptureConfig, self.name, spool)

    def _file_context(self) -> StoreContext:
        return StoreContext(
            store=self.store,
            name=self.name,
            owner=self.owner,
            log=self.job_log,
            consolidated_folder=self._consolidated_folder(),
            check_interrupt=self.check_interrupt,
            is_halted=lambda: self.halted,
            on_progress=self.on_progress,
        )

    def _model_server(
        self,
        request: CreateTransformJobRequest,
        options: JobOptions,
        model: ModelSpec,
        capture: JobCapture | None = None,
    ) -> ModelServer:
        env = container_environment(request, model.environment)
        if self.invoker == "in_process":
            from batchlane.transform.in_process import InProcessModel

            if not model.model_data:
                raise ValidationError(
                    f"model {model.name} has no model_data (it is served by a command or a URL): "
                    "the in-process invoker loads model_data into the runner",
                    field="ModelName",
                )
            if docker_image(model):
                raise ValidationError(
                    f"model {model.name} runs in the container image {model.image}: the in-process invoker "
                    "cannot run it (use the http invoker)",
                    field="ModelName",
                )
            return InProcessModel(
                materialize_model(model.model_data, self.cache_dir),
                env=env,
                startup_timeout_s=options.startup_timeout_s,
                on_wait=self.check_interrupt,
            )
        log_file = self.store.log_path(self.name).with_suffix(".container.log")
        if capture is not None:
            env.update(capture.environment())
        common = {
            "env": env,
            "startup_timeout_s": options.startup_timeout_s,
            "log_file": log_file,
            "on_wait": self.check_interrupt,
        }
        if model.serve_url:
            return ModelContainer(url=model.serve_url, **common)
        if model.serve_command:
            return ModelContainer(serve_command=model.serve_command, **common)
        image = docker_image(model)
        model_dir = (
            materialize_model(model.model_data or "", self.cache_dir)
            if model.model_data or not image
            else None
        )
        if image is not None:
            return docker_model_container(
                image, model_dir, self.cache_dir, job=self.name, runner=self.owner, **common
            )
        return ModelContainer(model_dir=model_dir, **common)

    def _execution_parameters(
        self, request: CreateTransformJobRequest, server: ModelServer
    ) -> dict[str, Any] | None:
        unset = (
            not request.MaxConcurrentTransforms
            or request.MaxPayloadInMB is None
            or request.BatchStrategy is None
        )
        return server.execution_parameters() if unset else None

    # -- consolidation -----------------------------------------------------------------------------------------
    def _consolidated_folder(self) -> Path:
        return self.store.log_path(self.name).parent / f"{canonical_job_name(self.name)}.consolidate"

    def _write_consolidated(self, uri: str, files: list[FileCheckpoint]) -> None:
        store, key = open_store(uri, field="consolidate")
        with store.writer(key) as out:
            for checkpoint in files:
                part = consolidate_part(self._consolidated_folder(), checkpoint.input_key)
                if checkpoint.state is FileState.DONE and part.exists():
                    out.write(part.read_bytes())
        self.job_log.info("[batchlane]: consolidated results written to %s", store.url_for(key))
