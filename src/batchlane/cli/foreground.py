"""Running a job in this terminal (``transform``, ``jobs resume``, ``demo``): the progress display, Ctrl-C, the
summary and the exit status. The exit codes are documented in docs/transform.md ("Exit codes, Ctrl-C, waiting and results"); 2, a usage
error, comes from ``cli.main``."""

from __future__ import annotations

import logging
import sys
import time
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from batchlane.jobs.state import FileState, JobStatus

if TYPE_CHECKING:
    from batchlane.engines import Engine

EXIT_COMPLETED = 0
EXIT_FAILED = 1  # the job ended Failed (also any error: unknown job, name taken, ...)
EXIT_STOPPED = 3  # the job ended Stopped by `batchlane jobs stop` (or the control plane)
EXIT_TIMEOUT = 124  # `jobs wait --timeout` ran out while the job was still running (as coreutils' timeout)
SIGNAL_BASE = 128  # stopped by a signal: 128 + its number (130 for Ctrl-C, 143 for SIGTERM)


def exit_code(status: JobStatus, signum: int | None = None) -> int:
    """The CLI's exit status for a job that ended in ``status``; ``signum`` is the signal that stopped it here."""
    if signum is not None and status is not JobStatus.COMPLETED:
        return SIGNAL_BASE + signum
    return {JobStatus.COMPLETED: EXIT_COMPLETED, JobStatus.STOPPED: EXIT_STOPPED}.get(status, EXIT_FAILED)


class JobProgress:
    """The live display of a job run here: "starting model (N s)" while the container starts, then a bar over files
    with this run's records and docs/s (the start-up time is left out of the rate). While the bar is live, log
    records are printed through rich's console, above the bar, instead of into it. ``quiet``: no display;
    ``console``: where the bar goes (default: stderr)."""

    def __init__(
        self, quiet: bool, description: str = "transform", *, console: Console | None = None
    ) -> None:
        self.quiet = quiet
        self.console = console
        self.description = description
        self.records = 0
        self.failed = 0
        self.phase = "planning"
        self.phase_started = time.monotonic()
        self.startup_s = 0.0
        self.ready_at: float | None = None
        self.ended_at: float | None = None
        self.stopping = False
        self.bar: Any = None
        self._saved_handlers: list[logging.Handler] | None = None

    @property
    def processing_s(self) -> float:
        """Seconds since the model answered /ping (0 before): the denominator of docs/s."""
        if self.ready_at is None:
            return 0.0
        return (self.ended_at or time.monotonic()) - self.ready_at

    @property
    def docs_per_second(self) -> float:
        seconds = self.processing_s
        return self.records / seconds if seconds > 0 else 0.0

    def __enter__(self) -> JobProgress:
        if self.quiet:
            return self
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            _StatusColumn(self),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console or Console(stderr=True),
            transient=True,
        )
        self.bar.__enter__()
        self.task = self.bar.add_task(self.description, total=None)
        if not self.bar.console.is_terminal:  # no live bar is drawn: leave logging as it is
            return self
        root = logging.getLogger()
        self._saved_handlers = root.handlers[:]
        handler = RichHandler(console=self.bar.console, show_path=False, rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        root.handlers = [handler]
        return self

    def __exit__(self, *exc: object) -> None:
        self.ended_at = self.ended_at or time.monotonic()
        if self.bar is not None:
            if self._saved_handlers is not None:
                logging.getLogger().handlers = self._saved_handlers
                self._saved_handlers = None
            self.bar.__exit__(*exc)
            self.bar = None

    def __call__(self, event: str, data: dict[str, Any]) -> None:
        now = time.monotonic()
        if event == "starting":
            self.phase, self.phase_started = "starting", now
        elif event == "ready":
            self.phase, self.ready_at = "running", now
            self.startup_s = float(data.get("startup_s", 0.0))
        elif event == "batch":
            self.records += data.get("records", 0)
            self.failed += data.get("failed", 0)
        if self.bar is None:
            return
        if event == "start":
            self.bar.update(self.task, total=data["files"], completed=data.get("done", 0))
        elif event == "file":
            self.bar.advance(self.task)

    def on_signal(self, signum: int) -> None:
        """Told by the signal handler: show that the job is stopping (it only sets a flag while the bar is live)."""
        self.stopping = True
        if self.bar is None or not self.bar.console.is_terminal:
            sys.stderr.write(
                "stopping: abandoning the file in flight (press Ctrl-C again to abort at once)\n"
            )


class _StatusColumn(ProgressColumn):
    """The phase, then files and this run's records and docs/s (re-rendered on every refresh)."""

    def __init__(self, progress: JobProgress) -> None:
        super().__init__()
        self.progress = progress

    def render(self, task: Task) -> Text:
        progress = self.progress
        if progress.stopping:
            return Text("stopping: abandoning the file in flight (Ctrl-C again aborts at once)")
        if progress.phase == "starting":
            return Text(f"starting model ({time.monotonic() - progress.phase_started:.0f} s)")
        files = f"{task.completed:.0f}/{task.total:.0f} files" if task.total is not None else "preparing"
        if progress.phase != "running":
            return Text(files)
        return Text(f"{files}  {progress.records:,} records ({progress.docs_per_second:,.0f} docs/s)")


def print_summary(store: Any, name: str, progress: JobProgress, *, seconds: float) -> None:
    """The end-of-run summary: status, counts (this run's when it resumed a job), docs/s without the model's start-up,
    where the outputs are, and how to resume a job that did not complete."""
    record = store.get_job(name)
    console = Console(highlight=False, soft_wrap=True)
    colour = {"Completed": "green", "Failed": "red"}.get(record.status.value, "yellow")
    console.print(f"[bold]{name}[/bold]: [{colour}]{record.status.value}[/{colour}]")
    if record.failure_reason:
        console.print(f"  reason: {record.failure_reason}")
    this_run = f" ({progress.records:,} this run)" if progress.records != record.records_done else ""
    rate = f"{progress.docs_per_second:,.1f} docs/s"
    startup = f", model start-up {progress.startup_s:.1f} s" if progress.ready_at is not None else ""
    console.print(
        f"  files: {record.files_done} done, {record.files_failed} failed, {record.files_total} total"
        f"   records: {record.records_done:,} ok, {record.records_failed:,} failed{this_run}"
        f"   time: {seconds:.1f} s ({rate}{startup})"
    )
    console.print(f"  output: {record.request['TransformOutput']['S3OutputPath']}")
    for checkpoint in store.files(name, FileState.FAILED)[:5]:
        console.print(f"  failed: {checkpoint.input_key}: {checkpoint.error}")
    console.print(f"  logs: batchlane jobs logs {name}")
    if record.status is JobStatus.STOPPED:
        console.print(f"  resume with: batchlane jobs resume {name}")
    elif record.status is JobStatus.FAILED:
        console.print(f"  retry the failed files: batchlane jobs resume {name}")


def run_here(
    engine: Engine, name: str, *, quiet: bool, brief: bool = False, description: str = "transform"
) -> int:
    """Run (or resume) job ``name`` in this process with the progress display (none if ``quiet``) and Ctrl-C
    handling; print the summary (or, ``brief``, just ``NAME: Status``) and return the exit code."""
    started = time.monotonic()
    try:
        with JobProgress(quiet, description) as progress:
            final, signum = engine.run_in_foreground(name, on_progress=progress, on_signal=progress.on_signal)
    except KeyboardInterrupt:
        if engine.store.find_job(name) is None:  # another service (sagemaker) runs it: it goes on there
            sys.stderr.write(
                f"detached: job {name} goes on running; batchlane jobs wait {name} --engine {engine.name}\n"
            )
            return SIGNAL_BASE + 2
        sys.stderr.write(
            f"aborted: job {name} was left InProgress; resume with: batchlane jobs resume {name}\n"
        )
        return SIGNAL_BASE + 2
    if not final.is_terminal:
        sys.stderr.write(f"error: job {name} is held by another runner ({final.owner}); not run here\n")
        return EXIT_FAILED
    if engine.store.find_job(final.name) is None:  # a job another service keeps (sagemaker): no local counts
        print(f"{final.name}: {final.status.value}")
        if final.failure_reason:
            print(f"  reason: {final.failure_reason}")
        output = final.request.get("TransformOutput", {}).get("S3OutputPath")
        if output and final.status is JobStatus.COMPLETED:
            print(f"  output: {output}")
        print(f"  logs: batchlane jobs logs {final.name} --engine {engine.name}")
    elif brief:
        print(f"{final.name}: {final.status.value}")
        if final.status is JobStatus.STOPPED:
            print(f"resume with: batchlane jobs resume {name}")
    else:
        print_summary(engine.store, final.name, progress, seconds=time.monotonic() - started)
    return exit_code(final.status, signum)
