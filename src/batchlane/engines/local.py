"""The local engine: submit a CreateTransformJob request to the embedded job store and run it on this machine.

``submit`` validates the request, resolves the model (a snapshot of its spec is stored with the job, so a later
resume does not depend on the registry), refuses an output prefix that an active job is writing to (the store
re-checks it inside the insert's transaction; docs/reliability.md) or that overlaps the input prefix, and records the
job InProgress. ``run`` drives it to the end in this process (``burst``);
``run_in_foreground`` does the same for a terminal, turning SIGINT/SIGTERM into a graceful stop; ``reopen`` prepares
a Stopped or Failed job for ``batchlane jobs resume``; ``start_detached`` runs it in a background process;
``resume_orphans`` picks up jobs whose runner died (called at worker/server start).
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

from batchlane.errors import AlreadyExists, Conflict, NotFound
from batchlane.jobs.outputs import check_output_outside_input
from batchlane.jobs.state import ACTIVE, REOPENABLE, JobStatus
from batchlane.jobs.store import JobRecord, JobStore
from batchlane.models import ModelRegistry
from batchlane.transform.options import JobOptions, validate_options
from batchlane.transform.runner import JobRunner, ProgressCallback, owner_is_dead
from batchlane.transform.spec import validate_request

log = logging.getLogger(__name__)


def submit(
    store: JobStore,
    request: Mapping[str, Any],
    options: Mapping[str, Any] | JobOptions | None = None,
    *,
    if_same_spec_ok: bool = False,
) -> JobRecord:
    """Validate and record a new job (InProgress, not yet running). Errors name the offending field.

    ``if_same_spec_ok``: a job of that name with an identical request and options is returned instead of a
    ``ResourceInUse`` error (idempotent automation).
    """
    parsed = validate_request(request)
    job_options = validate_options(options, parsed)
    check_output_outside_input(parsed.to_dict())
    try:
        model = ModelRegistry(store).get(parsed.ModelName)
    except NotFound:
        raise NotFound(
            f"model {parsed.ModelName} does not exist; create it first "
            f"(batchlane models create {parsed.ModelName} --model-data DIR)",
            field="ModelName",
        ) from None
    existing = store.find_job(parsed.TransformJobName)
    if existing is None:
        busy = store.active_jobs_writing_to(
            parsed.TransformOutput.S3OutputPath, exclude=parsed.TransformJobName
        )
        if busy:
            raise Conflict(
                f"output path {parsed.TransformOutput.S3OutputPath} overlaps the output of active job "
                f"{busy[0].name}; two jobs writing one prefix would overwrite each other's .out objects"
                f" ({next_step(busy[0])})",
                field="TransformOutput.S3OutputPath",
            )
    stored_options = {
        "job": job_options.model_dump(mode="json"),
        "model": model.spec.model_dump(mode="json"),
    }
    try:
        return store.create_job(
            parsed.TransformJobName,
            parsed.to_dict(),
            stored_options,
            if_same_spec_ok=if_same_spec_ok,
            exclusive_output=True,
        )
    except AlreadyExists as exc:
        if not isinstance(exc.existing, JobRecord):
            raise
        raise AlreadyExists(
            f"{exc.message} ({next_step(exc.existing)})", existing=exc.existing, field=exc.field
        ) from None


def runner_alive(record: JobRecord) -> bool:
    """Whether a live runner holds the job (an unexpired lease whose owner is not a dead process of this host)."""
    return record.status in ACTIVE and record.lease_active() and not owner_is_dead(record.owner)


def next_step(record: JobRecord) -> str:
    """What to do with an existing job, for errors that name it: resume it when ``jobs resume`` can (Stopped, Failed,
    or active without a live runner), wait for it while a runner has it, read its results once Completed."""
    name = record.name
    if record.status in REOPENABLE or (record.status in ACTIVE and not runner_alive(record)):
        state = (
            record.status.value
            if record.status in REOPENABLE
            else f"{record.status.value} with no live runner"
        )
        return f"it is {state}: resume it with `batchlane jobs resume {name}`"
    if record.status in ACTIVE:
        return (
            f"it is running: `batchlane jobs wait {name}` waits for it, `batchlane jobs stop {name}` stops it"
        )
    return f"it is Completed: `batchlane jobs results {name}` shows its outputs; choose another name for a new job"


def reopen(store: JobStore, name: str) -> JobRecord:
    """Make job ``name`` runnable again for ``jobs resume``: a Stopped or Failed job goes back to InProgress (its
    committed files are kept, failed ones retried); an active job without a live runner is returned as is.
    ``Conflict`` saying why otherwise: the job Completed, or a live runner holds it."""
    record = store.get_job(name)
    if record.status in REOPENABLE:
        return store.reopen(name)
    if record.status is JobStatus.COMPLETED:
        raise Conflict(
            f"transform job {name} is already Completed; nothing to resume", field="TransformJobName"
        )
    if runner_alive(record):
        raise Conflict(
            f"transform job {name} is being run by {record.owner}; `batchlane jobs wait {name}` waits for it,"
            f" `batchlane jobs stop {name}` stops it",
            field="TransformJobName",
        )
    return record


def run(
    store: JobStore, name: str, *, on_progress: ProgressCallback | None = None, **kwargs: Any
) -> JobRecord:
    """Run or resume job ``name`` here until it ends (burst mode); returns the final record."""
    return JobRunner(store, name, on_progress=on_progress, **kwargs).run()


def run_in_foreground(
    store: JobStore,
    name: str,
    *,
    on_progress: ProgressCallback | None = None,
    on_signal: Callable[[int], None] | None = None,
    **kwargs: Any,
) -> tuple[JobRecord, int | None]:
    """``run`` for a terminal: the first SIGINT or SIGTERM stops the job gracefully (the file in flight is abandoned,
    uncommitted; the job ends Stopped and ``jobs resume`` continues it), and ``on_signal(signum)`` is told at once.
    A second signal raises ``KeyboardInterrupt`` here: the job is left InProgress with no runner, also resumable.
    Returns the final record and the first signal received (None if none). Outside the main thread no handler is
    installed (Python allows them only there)."""
    runner = JobRunner(store, name, on_progress=on_progress, **kwargs)
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


def start_detached(
    store: JobStore, name: str, *, log_file: str | Path | None = None
) -> subprocess.Popen[bytes]:
    """Run job ``name`` in a new background process (``batchlane jobs resume NAME --background``) that outlives this
    one. A signal ends that process and leaves the job InProgress for the next orphan sweep, unlike Ctrl-C in a
    terminal, which stops the job."""
    target = Path(log_file) if log_file else store.log_path(name).with_suffix(".runner.log")
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "ab") as sink:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "batchlane",
                "jobs",
                "resume",
                name,
                "--db",
                str(store.path),
                "--background",
            ],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def resume_orphans(store: JobStore, **kwargs: Any) -> list[JobRecord]:
    """Run every job whose runner is gone (lease expired or never claimed) to its end, oldest first."""
    finished = []
    for record in store.resumable_jobs():
        log.info("resuming job %s (status %s)", record.name, record.status.value)
        finished.append(run(store, record.name, **kwargs))
    return finished
