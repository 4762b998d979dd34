"""The local engine: run transform jobs of the embedded job store on this machine.

``LocalEngine(store)`` implements ``engines.base.Engine``. ``submit`` applies the create-time rules
(``engines.submit``); ``run`` drives a job to its end in this process with a ``transform.runner.JobRunner`` (burst);
``run_in_foreground`` does the same for a terminal, turning SIGINT/SIGTERM into a graceful stop; ``start_detached``
runs it in a background process; ``reopen`` prepares a Stopped or Failed job for ``batchlane jobs resume``;
``recover`` is the orphan sweep (``jobs.lease.find_orphans``) run here. Front doors get it from ``get_engine``.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from batchlane.engines.submit import submit
from batchlane.errors import Conflict
from batchlane.jobs.describe import describe_job
from batchlane.jobs.lease import DEFAULT_LEASE_S, find_orphans, runner_alive
from batchlane.jobs.state import REOPENABLE, JobStatus
from batchlane.jobs.store import JobRecord, JobStore
from batchlane.transform.invoke import InvokerKind
from batchlane.transform.options import JobOptions
from batchlane.transform.runner import JobRunner, ProgressCallback

log = logging.getLogger(__name__)


class LocalEngine:
    """Runs the jobs of ``store`` on this machine. ``lease_s``: the runner lease (renewed every third of it);
    ``cache_dir``: where model archives are extracted (default: ``<store folder>/cache``)."""

    name = "local"

    def __init__(
        self,
        store: JobStore,
        *,
        lease_s: float = DEFAULT_LEASE_S,
        cache_dir: str | Path | None = None,
        invoker: InvokerKind = "http",
    ) -> None:
        """``invoker``: where the model runs, ``"http"`` (a ``batchlane serve`` process per job, the default) or
        ``"in_process"`` (its handler loaded into this process; docs/transform.md, "Where a file runs")."""
        self.store = store
        self.lease_s = lease_s
        self.cache_dir = cache_dir
        self.invoker = invoker

    def __repr__(self) -> str:
        return f"LocalEngine({self.store!r})"

    def submit(
        self,
        request: Mapping[str, Any],
        options: Mapping[str, Any] | JobOptions | None = None,
        *,
        if_same_spec_ok: bool = False,
    ) -> JobRecord:
        """Validate and record a new job (see ``engines.submit.submit``)."""
        return submit(self.store, request, options, if_same_spec_ok=if_same_spec_ok)

    def _runner(
        self, name: str, *, owner: str | None, lease_s: float | None, on_progress: ProgressCallback | None
    ) -> JobRunner:
        return JobRunner(
            self.store,
            name,
            lease_s=self.lease_s if lease_s is None else lease_s,
            on_progress=on_progress,
            owner=owner,
            cache_dir=self.cache_dir,
            invoker=self.invoker,
        )

    def run(
        self,
        name: str,
        *,
        owner: str | None = None,
        lease_s: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> JobRecord:
        """Run or resume job ``name`` here until it ends (burst mode); returns the final record, or the current one
        when another live runner holds the job."""
        return self._runner(name, owner=owner, lease_s=lease_s, on_progress=on_progress).run()

    def run_in_foreground(
        self,
        name: str,
        *,
        on_progress: ProgressCallback | None = None,
        on_signal: Callable[[int], None] | None = None,
    ) -> tuple[JobRecord, int | None]:
        """``run`` for a terminal: the first SIGINT or SIGTERM stops the job gracefully (the file in flight is
        abandoned, uncommitted; the job ends Stopped and ``jobs resume`` continues it), and ``on_signal(signum)`` is
        told at once. A second signal raises ``KeyboardInterrupt`` here: the job is left InProgress with no runner,
        also resumable. Returns the final record and the first signal received (None if none). Outside the main
        thread no handler is installed (Python allows them only there)."""
        runner = self._runner(name, owner=None, lease_s=None, on_progress=on_progress)
        if threading.current_thread() is not threading.main_thread():
            return runner.run(), None
        received: list[int] = []

        def handle(signum: int, frame: object) -> None:
            received.append(signum)
            if len(received) > 1:
                raise KeyboardInterrupt
            runner.interrupt()
            if on_signal is not None:
                on_signal(signum)

        previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            return runner.run(), (received[0] if received else None)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def start_detached(self, name: str, *, log_file: str | Path | None = None) -> subprocess.Popen[bytes]:
        """Run job ``name`` in a new background process (``batchlane jobs resume NAME --background``) that outlives
        this one. A signal ends that process and leaves the job InProgress for the next orphan sweep, unlike Ctrl-C
        in a terminal, which stops the job."""
        target = Path(log_file) if log_file else self.store.log_path(name).with_suffix(".runner.log")
        target.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "batchlane", "jobs", "resume", name, "--db", str(self.store.path)]
        with open(target, "ab") as sink:
            return subprocess.Popen(
                [*command, "--background"],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self, name: str, *, finish_here: bool = True) -> JobRecord:
        """StopTransformJob: InProgress → Stopping (idempotent). A live runner then ends the job Stopped within a
        second or so. ``finish_here``: a job no live runner holds (its runner died, or none picked it up yet) would
        stay Stopping forever, so it is taken over and stopped here and now."""
        record = self.store.request_stop(name)
        if finish_here and record.status is JobStatus.STOPPING and not runner_alive(record):
            record = self.run(name)
        return record

    def reopen(self, name: str) -> JobRecord:
        """Make job ``name`` runnable again for ``jobs resume``: a Stopped or Failed job goes back to InProgress (its
        committed files are kept, failed ones retried); an active job without a live runner is returned as is.
        ``Conflict`` saying why otherwise: the job Completed, or a live runner holds it."""
        record = self.store.get_job(name)
        if record.status in REOPENABLE:
            return self.store.reopen(name)
        if record.status is JobStatus.COMPLETED:
            raise Conflict(
                f"transform job {name} is already Completed; nothing to resume", field="TransformJobName"
            )
        if runner_alive(record):
            raise Conflict(
                f"transform job {name} is being run by {record.owner}; `batchlane jobs wait {name}` waits for"
                f" it, `batchlane jobs stop {name}` stops it",
                field="TransformJobName",
            )
        return record

    def describe(self, name: str) -> dict[str, Any]:
        """DescribeTransformJob's answer (plus batchlane's progress under ``Batchlane``)."""
        return describe_job(self.store.get_job(name))

    def recover(
        self, *, detach: bool = False, should_stop: Callable[[], bool] | None = None
    ) -> list[JobRecord]:
        """Resume every orphan (``find_orphans``) of this engine to its end here, oldest first; ``detach``: each in a
        background process instead (the records are then as found). Another engine's orphans are left to its own
        sweep (``jobs resume --all`` sweeps every engine)."""
        finished = []
        for record in find_orphans(self.store):
            if record.engine != self.name:
                continue
            if should_stop is not None and should_stop():
                break
            log.info("resuming job %s (status %s), whose runner is gone", record.name, record.status.value)
            if detach:
                self.start_detached(record.name)
                finished.append(record)
            else:
                finished.append(self.run(record.name))
        return finished
