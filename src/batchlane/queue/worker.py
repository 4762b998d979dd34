"""The queue worker: receive transform requests, start (and by default run) their jobs, acknowledge, dead-letter.

One message at a time (docs/automation.md has the whole contract and every crash point):

1. receive under a lease (the visibility timeout), renewed by a heartbeat thread while the message is handled; a
   refused renewal (``StaleReceipt``) means the lease is lost and the message is not touched again;
2. ``parse_message``; a bad message is dead-lettered at once with the reason;
3. the model: the message's ``model_name``, or the worker's default (``model``; when None, the model named
   ``settings.DEFAULT_MODEL_NAME``, "default"); a ``ModelSpec`` default is registered if missing (the same name with
   another spec is a ``Conflict``: dead-lettered with the differences);
4. the job, named by ``resolve_attempt`` (not from a clock; a message sent after its job ended Failed moves on to
   the next attempt, see docs/queue.md): the engine's ``submit(…, if_same_spec_ok=True)``, so a duplicate or
   redelivered message finds the job it already made; the input prefix is checked first (only when the job does not
   exist yet), so an empty or missing prefix is a permanent error rather than a Failed job;
5. ``run_jobs=True``: run the job here to its end (waiting for another runner if one holds it); else start it in a
   background process;
6. a Failed job with ``requeue_failed`` attempts left is re-sent as attempt ``k+1`` (a new job name); then delete.

Transient errors (anything ``is_permanent`` does not call permanent) release the message with a backoff
(``change_visibility(message, delay, reason=…)``); the queue dead-letters it after ``max_receive_count`` receives,
quoting the last reason. Jobs whose runner died (the orphan sweep, ``jobs.lease.find_orphans``) are resumed when a
worker starts (``recover=True``) and every ``recover_interval_s`` while it runs. A runner that crashes goes through
``jobs.lifecycle.record_crash``, as in the control plane: its lease is given back, and after a few crashes the job
is marked Failed instead of being resumed forever.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from batchlane import aws_names, settings
from batchlane.engines import EngineName, get_engine
from batchlane.errors import NotFound, ValidationError
from batchlane.jobs.lease import find_orphans, runner_id
from batchlane.jobs.lifecycle import record_crash
from batchlane.jobs.state import JobStatus
from batchlane.jobs.store import JobRecord, JobStore
from batchlane.models import ModelRegistry, ModelSpec
from batchlane.queue.base import MAX_VISIBILITY_TIMEOUT_S, MAX_WAIT_S, Message, Queue
from batchlane.queue.endings import MessageEndings
from batchlane.queue.heartbeat import Heartbeat
from batchlane.queue.launcher import (
    ATTEMPT_ATTRIBUTE,
    JobState,
    RequestDefaults,
    job_name_for_attempt,
    prepare_launch,
)
from batchlane.queue.message import check_input_exists
from batchlane.queue.outcome import Action, Outcome, WorkerStats

log = logging.getLogger(__name__)

DEFAULT_JOB_LEASE_S = 30.0
DEFAULT_WAIT_S = 5.0


class Worker(MessageEndings):
    """Consumes transform requests from ``queue`` and runs their jobs with ``engine`` (default local) over ``store``.

    ``model``: the default model for messages without ``model_name``: a registered model's name, or a ``ModelSpec``
    registered if missing (``exist_ok``; another spec under that name is a Conflict, dead-lettered); None means the
    model named ``settings.DEFAULT_MODEL_NAME`` ("default"). ``defaults`` fill optional request fields a message
    leaves out (default: the seed's, ``RequestDefaults()``); ``job_options`` are batchlane's ``JobOptions``.
    ``run_jobs``: run each job here to its end before deleting the message (False: start it in a background process
    and delete at once). ``requeue_failed``: re-send a message whose job ended Failed, up to this many more times
    (needs ``run_jobs``). ``visibility_timeout_s``: the lease per receive (default: the queue's); ``heartbeat_s``:
    how often to renew it (default a third of it). ``wait_s``: long-polling wait (also how long ``stop`` may take
    while idle). ``retry_backoff_s``/``max_retry_backoff_s``: release delay after a transient error, doubling per
    receive. ``recover``: resume jobs whose runner died at start and every ``recover_interval_s``. ``poll_s``: how
    often to look at a job another runner holds. ``check_inputs``: list the input prefix before creating a job.
    ``env``: for storage clients (default ``os.environ``). ``clock``/``sleep``: time sources for tests (``sleep``
    defaults to a wait that ``stop`` interrupts). ``engine``: the name of the engine that runs the jobs
    (``engines.get_engine``; a ``ValidationError`` names what is missing for one that cannot run here).
    """

    def __init__(
        self,
        queue: Queue,
        store: JobStore,
        *,
        model: str | ModelSpec | None = None,
        defaults: RequestDefaults | None = None,
        job_options: Mapping[str, Any] | None = None,
        run_jobs: bool = True,
        requeue_failed: int = 0,
        visibility_timeout_s: int | None = None,
        heartbeat_s: float | None = None,
        wait_s: float = DEFAULT_WAIT_S,
        retry_backoff_s: float = 10.0,
        max_retry_backoff_s: float = 300.0,
        recover: bool = True,
        recover_interval_s: float | None = 60.0,
        poll_s: float = 1.0,
        job_lease_s: float = DEFAULT_JOB_LEASE_S,
        check_inputs: bool = True,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        engine: EngineName = "local",
    ) -> None:
        if isinstance(model, str) and aws_names.model_name_problem(model):
            raise ValidationError(
                f"model {model!r} is not a model name (1-63 letters, digits, hyphens)", field="model"
            )
        if isinstance(model, ModelSpec):
            model.check_local_paths()  # a missing model folder is this worker's problem, not each message's
        if isinstance(requeue_failed, bool) or not isinstance(requeue_failed, int) or requeue_failed < 0:
            raise ValidationError(
                f"requeue_failed must be an integer >= 0, got {requeue_failed!r}", field="requeue_failed"
            )
        if requeue_failed and not run_jobs:
            raise ValidationError(
                "requeue_failed needs run_jobs=True: a worker that only starts jobs never sees them fail "
                "(drop --detach-jobs, or re-run failed jobs yourself)",
                field="requeue_failed",
            )
        if visibility_timeout_s is not None and not 0 <= visibility_timeout_s <= MAX_VISIBILITY_TIMEOUT_S:
            raise ValidationError(
                f"visibility_timeout_s must be 0-{MAX_VISIBILITY_TIMEOUT_S}, got {visibility_timeout_s}",
                field="visibility_timeout_s",
            )
        if heartbeat_s is not None and heartbeat_s <= 0:
            raise ValidationError(f"heartbeat_s must be > 0, got {heartbeat_s}", field="heartbeat_s")
        if not 0 <= wait_s <= MAX_WAIT_S:
            raise ValidationError(f"wait_s must be 0-{MAX_WAIT_S}, got {wait_s}", field="wait_s")
        if retry_backoff_s < 0 or max_retry_backoff_s < retry_backoff_s:
            raise ValidationError(
                "retry_backoff_s must be >= 0 and max_retry_backoff_s at least as large",
                field="retry_backoff_s",
            )
        self.queue = queue
        self.store = store
        self.engine = get_engine(engine, store)
        self.model: str | ModelSpec = settings.DEFAULT_MODEL_NAME if model is None else model
        self.defaults = defaults or RequestDefaults()
        self.job_options = dict(job_options or {})
        self.run_jobs = run_jobs
        self.requeue_failed = requeue_failed
        self.visibility_timeout_s = visibility_timeout_s
        self.heartbeat_s = heartbeat_s
        self.wait_s = wait_s
        self.retry_backoff_s = retry_backoff_s
        self.max_retry_backoff_s = max_retry_backoff_s
        self.recover = recover
        self.recover_interval_s = recover_interval_s
        self.poll_s = poll_s
        self.job_lease_s = job_lease_s
        self.check_inputs = check_inputs
        self.env = env
        self._clock = clock
        self._stop = threading.Event()
        self._abandon = threading.Event()
        self._sleep = sleep or self._stop.wait
        self._lock = threading.Lock()
        self._current_job: tuple[str, str] | None = None  # (job name, runner owner) while running one here
        self._lease_s: int | None = None
        self._children: list[Any] = []

    # -- control ---------------------------------------------------------------------------------------------
    def stop(self, *, abandon: bool = False) -> None:
        """Ask ``work`` to return after the current message (thread-safe; idempotent).

        ``abandon=True`` also gives up the message in hand: the job this worker runs is released (its runner stops
        at the next heartbeat without committing; the job stays InProgress, resumable at once by any worker) and
        the message is released for redelivery. Call it from a thread, not a signal handler (it writes to the job
        store); the CLI does that on a second Ctrl-C.
        """
        self._stop.set()
        if not abandon:
            return
        self._abandon.set()
        with self._lock:
            current = self._current_job
        if current is not None:
            try:
                self.store.release(*current)
            except Exception:
                log.exception("could not release job %s", current[0])

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- the loop --------------------------------------------------------------------------------------------
    def work(self, burst: bool = False, max_messages: int | None = None) -> WorkerStats:
        """Process messages until ``stop()``; ``burst``: until the queue has no visible message; ``max_messages``:
        at most that many. Returns what was done. Queue outages are retried with backoff (burst: raised)."""
        stats = WorkerStats()
        started = self._clock()
        if self.recover:
            stats.recovered = self.recover_orphans()
        last_recovery = self._clock()
        if isinstance(self.model, str):
            try:
                self.store.get_model(self.model)
            except NotFound:
                log.warning(
                    "worker: the default model %s is not registered, so messages without model_name will be "
                    "dead-lettered until it is (batchlane models create %s --model-data DIR)",
                    self.model,
                    self.model,
                )
        log.info(
            "worker: waiting for messages on %s (jobs in %s; %s)",
            self.queue.url,
            self.store.path,
            "running jobs here" if self.run_jobs else "starting jobs in the background",
        )
        failures = 0
        while not self._stop.is_set():
            if max_messages is not None and stats.received >= max_messages:
                break
            self._reap_children()
            if (
                self.recover
                and not burst
                and self.recover_interval_s
                and self._clock() - last_recovery >= self.recover_interval_s
            ):
                stats.recovered += self.recover_orphans()
                last_recovery = self._clock()
            try:
                messages = self.queue.receive(
                    max_messages=1,
                    wait_s=min(self.wait_s, 1.0) if burst else self.wait_s,
                    visibility_timeout_s=self.visibility_timeout_s,
                )
                failures = 0
            except Exception as exc:
                if burst:
                    raise
                failures += 1
                log.warning("worker: receive from %s failed (%s); retrying", self.queue.url, exc)
                self._sleep(min(30.0, 2.0**failures))
                continue
            if not messages:
                if burst:
                    break
                continue
            for message in messages:
                stats.received += 1
                if self._stop.is_set():
                    stats.add(self._release(message, "worker stopping"))
                else:
                    stats.add(self.process(message))
        stats.elapsed_s = self._clock() - started
        log.info("worker: stopped after %d message(s): %s", stats.received, dict(stats.actions))
        return stats

    def process(self, message: Message) -> Outcome:
        """Handle one received message to its end (see the module docstring); never raises for a message error."""
        try:
            lease_s = self._lease_seconds()
        except Exception as exc:  # the queue is unreachable: the message returns when its lease ends
            log.warning("message %s: cannot read the queue's visibility timeout: %s", message.message_id, exc)
            return Outcome(message.message_id, Action.RETRY, reason=f"queue unavailable: {exc}")
        interval = self.heartbeat_s if self.heartbeat_s is not None else lease_s / 3
        with Heartbeat(self.queue, message, lease_s, interval) as lease:
            try:
                return self._handle(message, lease)
            except Exception as exc:
                lease.stop()
                return self._failed(message, lease, exc)
            except BaseException:
                # KeyboardInterrupt/SystemExit: hand the message back so another worker need not wait out the lease
                lease.stop()
                if not lease.lost.is_set():
                    self._quietly(lambda: self.queue.nack(message, "worker interrupted"))
                raise

    # -- one message -----------------------------------------------------------------------------------------
    def _handle(self, message: Message, lease: Heartbeat) -> Outcome:
        launch = prepare_launch(
            message.body,
            attributes=message.attributes,
            sent_at=message.sent_at,
            lookup=self._job_state,
            catalog=_StoreModels(self.store, self.model),
            default_model=self.model if isinstance(self.model, str) else self.model.name,
            defaults=self.defaults,
        )
        request, attempt, name = launch.message, launch.attempt, launch.name
        if self.check_inputs and self._find_job(name) is None:
            check_input_exists(request.input_path, self.env)
        record = self.engine.submit(launch.request, self.job_options, if_same_spec_ok=True)
        if self.run_jobs:
            record = self._run_to_end(name, lease)
        else:
            self._start_detached(record)
        if lease.lost.is_set():
            return self._outcome(message, Action.LEASE_LOST, record, "the lease ran out while the job ran")
        if self._abandon.is_set() and not record.is_terminal:
            lease.stop()
            return self._release(message, "worker stopping", record)
        if record.status is JobStatus.FAILED and attempt < self.requeue_failed:
            lease.stop()
            # The next attempt's job name deduplicates the re-send if this worker dies before the delete below
            # (the embedded queue drops a repeat within 5 minutes; anywhere, the job name stops a second job).
            self.queue.send(
                message.body,
                dedup_id=job_name_for_attempt(request, attempt + 1),
                attributes={ATTEMPT_ATTRIBUTE: str(attempt + 1)},
            )
            log.info(
                "job %s failed (%s); re-queued as attempt %d of %d",
                name,
                record.failure_reason,
                attempt + 1,
                self.requeue_failed,
            )
            return self._delete(message, Action.REQUEUED, record, record.failure_reason)
        lease.stop()
        return self._delete(message, Action.DONE, record, record.failure_reason)

    def _find_job(self, name: str) -> JobRecord | None:
        # An engine that keeps its jobs elsewhere (sagemaker: SageMaker itself) finds them there.
        return getattr(self.engine, "find_job", self.store.find_job)(name)

    def _job_state(self, name: str) -> JobState | None:
        record = self._find_job(name)
        return None if record is None else JobState(record.status.value, record.end_time)

    def _run_to_end(self, name: str, lease: Heartbeat) -> JobRecord:
        """Run the job here until it ends; while another live runner holds it, look again every ``poll_s``."""
        while True:
            record, _ = self._run_here(name)
            if record.is_terminal or lease.lost.is_set() or self._abandon.is_set():
                return record
            log.info("job %s is held by runner %s; waiting for it", name, record.owner)
            self._sleep(self.poll_s)

    def _run_here(self, name: str) -> tuple[JobRecord, str]:
        """Run job ``name`` here with a new runner id (returned with the record); a crash is recorded
        (``record_crash``: the lease is given back at once, the job Failed after a few) and raised."""
        owner = runner_id()
        with self._lock:
            self._current_job = (name, owner)
        try:
            return self.engine.run(name, owner=owner, lease_s=self.job_lease_s), owner
        except BaseException as exc:
            if self.store.find_job(name) is not None:  # not for a job another service keeps
                record_crash(self.store, name, owner, exc)
            raise
        finally:
            with self._lock:
                self._current_job = None

    def _start_detached(self, record: JobRecord) -> None:
        if record.is_terminal or record.lease_active():
            return  # finished, or a live runner has it
        child = self.engine.start_detached(record.name)
        if child is not None:  # None: the engine's service runs the job (sagemaker)
            self._children.append(child)

    def _reap_children(self) -> None:
        self._children = [child for child in self._children if child.poll() is None]

    # -- helpers ---------------------------------------------------------------------------------------------
    def _lease_seconds(self) -> int:
        if self.visibility_timeout_s is not None:
            return int(self.visibility_timeout_s)
        if self._lease_s is None:
            configured = self.queue.attributes().get("visibility_timeout_s")
            self._lease_s = int(configured) if configured is not None else 900
        return self._lease_s

    def recover_orphans(self) -> list[str]:
        """Resume every job whose runner is gone (the orphan sweep, ``jobs.lease.find_orphans``); with ``run_jobs``
        here and now, else in background processes. Returns their names."""
        resumed = []
        for record in find_orphans(self.store):
            if record.engine != self.engine.name:
                continue  # another engine's job: its own sweep resumes it
            name = record.name
            if self._stop.is_set():
                break
            log.info("worker: resuming job %s, whose runner is gone", name)
            if not self.run_jobs:
                self._children.append(self.engine.start_detached(name))
                resumed.append(name)
                continue
            try:
                final, owner = self._run_here(name)
            except Exception:
                log.exception("worker: resuming job %s failed", name)
                continue
            if final.is_terminal or final.owner == owner:
                resumed.append(name)
        return resumed


class _StoreModels:
    """The job store's model registry as the worker's ``ModelCatalog`` (``queue.launcher.resolve_model``)."""

    def __init__(self, store: JobStore, default: str | ModelSpec) -> None:
        self.store = store
        self.default = default

    def has_default_spec(self) -> bool:
        return isinstance(self.default, ModelSpec)

    def ensure_default(self, name: str) -> None:
        assert isinstance(self.default, ModelSpec)
        ModelRegistry(self.store).create(self.default, exist_ok=True, check_paths=False)

    def require(self, name: str, *, defaulted: bool) -> None:
        if not defaulted:
            return  # the engine's submit says NotFound (permanent), with how to create it
        try:
            self.store.get_model(name)
        except NotFound:
            raise NotFound(
                f"the message has no model_name and the worker's default model {name} does not exist: create it"
                f" (batchlane models create {name} --model-data DIR), or start the worker with --model NAME",
                field="model_name",
            ) from None
