"""``JobExecutor``: the server's own workers, which run the transform jobs created through the API.

Design: a fixed pool of ``workers`` long-lived threads, each running one job at a time in-process with the engine
from ``get_engine`` (local: the job's runner claims a lease in the job store, starts a ``batchlane serve`` model
container as a child process, and drives the job to a terminal state). Threads rather than detached processes
because the pool bounds how many model servers run at once, a stop request reaches the runner through the store's
status within a third of ``lease_s``, and the threads are long-lived, which matters because a model container is
tied to the *thread* that started it (``PR_SET_PDEATHSIG``): it dies with the server instead of leaking.

A scanner thread keeps the pool honest: at start it queues every job that no live runner holds (the one orphan
sweep, ``jobs.lease.find_orphans``: never claimed, released, lease expired, or its runner a dead process of this
host: the orphans of a crashed server, or jobs created by another process), then rescans every ``scan_interval_s``. A job that was never claimed is left alone for ``unclaimed_grace_s`` after
its creation, so a CLI or queue worker that creates a job and runs it itself is not raced for it. A runner that
crashes (an exception, not a job failure) goes through ``jobs.lifecycle.record_crash``: it gives its lease back and
the job is retried on the next scan; after ``max_attempts`` claims it is marked Failed with the error, so a
deterministic crash cannot loop forever.

Server shutdown does not wait for running jobs: the threads are daemons, the model containers get SIGTERM with the
process, and the jobs' leases expire; the next server start (or ``batchlane jobs resume``) resumes them from their
last committed file.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from batchlane.aws_names import canonical_job_name
from batchlane.errors import NotFound
from batchlane.jobs.lease import find_orphans, runner_id
from batchlane.jobs.lifecycle import MAX_ATTEMPTS, record_crash
from batchlane.jobs.store import JobRecord, JobStore

log = logging.getLogger(__name__)

RunJob = Callable[..., JobRecord]


def _run_with_local_engine(store: JobStore, name: str, **kwargs: Any) -> JobRecord:
    from batchlane.engines import get_engine

    return get_engine("local", store).run(name, **kwargs)


class JobExecutor:
    """Runs InProgress jobs of ``store`` on ``workers`` threads; ``submit(name)`` queues one (idempotent)."""

    def __init__(
        self,
        store: JobStore,
        *,
        workers: int = 2,
        lease_s: float = 30.0,
        scan_interval_s: float = 10.0,
        unclaimed_grace_s: float = 30.0,
        max_attempts: int = MAX_ATTEMPTS,
        run_job: RunJob = _run_with_local_engine,
    ) -> None:
        self.store = store
        self.workers = workers
        self.lease_s = lease_s
        self.scan_interval_s = scan_interval_s
        self.unclaimed_grace_s = unclaimed_grace_s
        self.max_attempts = max_attempts
        self._run_job = run_job
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._busy: set[str] = set()  # lower-cased names queued or running
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def __repr__(self) -> str:
        return f"JobExecutor(workers={self.workers}, running={sorted(self._running)})"

    @property
    def running(self) -> list[str]:
        with self._lock:
            return sorted(self._running)

    def start(self) -> None:
        """Start the worker threads and the scanner (which queues orphaned jobs at once)."""
        if self.workers == 0 or self._threads:
            return
        for index in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"batchlane-job-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        scanner = threading.Thread(target=self._scan_loop, name="batchlane-job-scanner", daemon=True)
        scanner.start()
        self._threads.append(scanner)

    def stop(self, timeout_s: float = 1.0) -> None:
        """Stop taking jobs. Running jobs are not waited for (see the module docstring)."""
        self._stopping.set()
        for _ in range(self.workers):
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=timeout_s / max(1, len(self._threads)))

    def submit(self, name: str) -> bool:
        """Queue job ``name`` unless it is already queued or running here; True if queued now."""
        if self.workers == 0 or self._stopping.is_set():
            return False
        key = canonical_job_name(name)
        with self._lock:
            if key in self._busy:
                return False
            self._busy.add(key)
        self._queue.put(name)
        return True

    def scan(self, *, grace: bool = True) -> list[str]:
        """Queue every job no runner holds; returns the names queued now."""
        queued = []
        grace_s = self.unclaimed_grace_s if grace else 0.0
        for record in find_orphans(self.store, unclaimed_grace_s=grace_s):
            if record.engine != "local":
                continue  # a job of another engine (`transform --engine ray` on this store): its own sweep resumes it
            if self.submit(record.name):
                queued.append(record.name)
        if queued:
            log.info("queued %d job(s) no runner holds: %s", len(queued), ", ".join(queued))
        return queued

    def _scan_loop(self) -> None:
        grace = False  # at start, every unheld job is an orphan of a previous run
        while not self._stopping.is_set():
            try:
                self.scan(grace=grace)
            except Exception:  # a busy or broken store must not end the scanner; the next pass retries
                log.exception("scanning for jobs to run failed")
            grace = True
            self._stopping.wait(self.scan_interval_s)

    def _work(self) -> None:
        while True:
            name = self._queue.get()
            if name is None or self._stopping.is_set():
                return
            with self._lock:
                self._running.add(canonical_job_name(name))
            try:
                self._run(name)
            finally:
                with self._lock:
                    self._running.discard(canonical_job_name(name))
                    self._busy.discard(canonical_job_name(name))

    def _run(self, name: str) -> None:
        owner = runner_id()
        try:
            record = self._run_job(self.store, name, lease_s=self.lease_s, owner=owner)
            log.info("job %s: %s", name, record.status.value)
        except NotFound:
            log.warning("job %s vanished before it could run", name)
        except Exception as exc:
            log.exception("job %s: the runner crashed", name)
            self._after_crash(name, owner, exc)

    def _after_crash(self, name: str, owner: str, exc: Exception) -> None:
        record_crash(self.store, name, owner, exc, max_attempts=self.max_attempts)
