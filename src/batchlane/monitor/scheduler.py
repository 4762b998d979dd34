"""The scheduler loop that ``batchlane worker`` and ``batchlane server`` run on a background thread.

Every ``poll_s`` it claims the firings that are due (``ScheduleStore.claim``: one claimant per firing, however many
schedulers share the file) and runs each on a small thread pool, so one long drift check does not delay other
schedules. ``tick(wait=True)`` runs due firings to their end in the caller, for tests and ``--burst`` use.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime

from batchlane.monitor.execution import RUN_COMMAND, run_execution
from batchlane.monitor.schedule_records import Execution, ExecutionStatus, Schedule
from batchlane.monitor.schedules import ScheduleStore

log = logging.getLogger(__name__)

DEFAULT_POLL_S = 1.0
DEFAULT_CONCURRENCY = 2


class Scheduler:
    """Fires the schedules in ``store``. ``command`` is the drift check's command line (``monitor run``)."""

    def __init__(
        self,
        store: ScheduleStore,
        *,
        poll_s: float = DEFAULT_POLL_S,
        concurrency: int = DEFAULT_CONCURRENCY,
        command: Sequence[str] = RUN_COMMAND,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.store = store
        self.poll_s = poll_s
        self.command = tuple(command)
        self.env = env
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="batchlane-monitor")
        self._thread: threading.Thread | None = None

    def tick(self, now: datetime | None = None, *, wait: bool = False) -> list[Execution]:
        """Claim every due firing and start it; with ``wait``, run them to their end and return the final records
        (else the claimed, ``Pending`` ones)."""
        claimed = []
        for schedule in self.store.due(now):
            execution = self.store.claim(schedule, now=now)
            if execution is not None:
                claimed.append((schedule, execution))
        futures: list[Future[Execution]] = [
            self._pool.submit(self._run, schedule, execution) for schedule, execution in claimed
        ]
        if wait:
            return [future.result() for future in futures]
        return [execution for _, execution in claimed]

    def _run(self, schedule: Schedule, execution: Execution) -> Execution:
        try:
            return run_execution(
                self.store, schedule, execution, command=self.command, env=self.env, stop=self._stop
            )
        except Exception as exc:
            log.exception("monitoring execution %s failed unexpectedly", execution.name)
            self.store.update_execution(
                execution.name, ExecutionStatus.FAILED, failure_reason=f"internal error: {exc}"
            )
            return self.store.execution(execution.name)

    def start(self) -> None:
        """Sweep orphaned executions, then tick every ``poll_s`` on a daemon thread until ``stop()``."""
        orphans = self.store.fail_orphans()
        if orphans:
            log.warning(
                "marked %d orphaned monitoring execution(s) Failed: %s", len(orphans), ", ".join(orphans)
            )
        self._thread = threading.Thread(target=self._loop, name="batchlane-scheduler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # a busy or broken store must not end the loop: the next tick retries
                log.exception("the monitoring scheduler's tick failed")
            self._stop.wait(self.poll_s)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop ticking; running executions are ended (recorded Failed, "the scheduler stopped")."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._pool.shutdown(wait=True, cancel_futures=False)
        self.store.close()


def start_scheduler(job_store, **options) -> Scheduler:  # noqa: ANN001 - a JobStore
    """A started ``Scheduler`` over the schedules in ``job_store``'s file (what worker and server run)."""
    scheduler = Scheduler(ScheduleStore.beside(job_store), **options)
    scheduler.start()
    return scheduler
