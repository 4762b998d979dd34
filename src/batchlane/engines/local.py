"""The local engine: submit a CreateTransformJob request to the embedded job store and run it on this machine.

``submit`` validates the request, resolves the model (a snapshot of its spec is stored with the job, so a later
resume does not depend on the registry), refuses an output prefix that an active job is writing to (RELIABILITY §4
row 17; the store re-checks it inside the insert's transaction) or that overlaps the input prefix, and records the
job InProgress. ``run`` drives it to the end in this process (``burst``); ``start_detached``
runs it in a background process; ``resume_orphans`` picks up jobs whose runner died (called at worker/server start).
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from batchlane.errors import Conflict, NotFound
from batchlane.jobs.outputs import check_output_outside_input
from batchlane.jobs.store import JobRecord, JobStore
from batchlane.models import ModelRegistry
from batchlane.transform.options import JobOptions, validate_options
from batchlane.transform.runner import JobRunner, ProgressCallback
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
                f"{busy[0].name}; two jobs writing one prefix would overwrite each other's .out objects",
                field="TransformOutput.S3OutputPath",
            )
    stored_options = {
        "job": job_options.model_dump(mode="json"),
        "model": model.spec.model_dump(mode="json"),
    }
    return store.create_job(
        parsed.TransformJobName,
        parsed.to_dict(),
        stored_options,
        if_same_spec_ok=if_same_spec_ok,
        exclusive_output=True,
    )


def run(
    store: JobStore, name: str, *, on_progress: ProgressCallback | None = None, **kwargs: Any
) -> JobRecord:
    """Run or resume job ``name`` here until it ends (burst mode); returns the final record."""
    return JobRunner(store, name, on_progress=on_progress, **kwargs).run()


def start_detached(
    store: JobStore, name: str, *, log_file: str | Path | None = None
) -> subprocess.Popen[bytes]:
    """Run job ``name`` in a new background process (``batchlane jobs resume NAME``) that outlives this one."""
    target = Path(log_file) if log_file else store.log_path(name).with_suffix(".runner.log")
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "batchlane", "jobs", "resume", name, "--db", str(store.path), "--quiet"],
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
