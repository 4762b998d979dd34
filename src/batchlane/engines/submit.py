"""The create-time rules of a transform job, once, for every engine: ``submit`` records a validated job.

``submit`` validates the request and batchlane's options, resolves the model (a snapshot of its spec is stored
with the job, so a later resume does not depend on the registry), refuses an output prefix that overlaps the input
prefix or that an active job is writing to (the store re-checks it inside the insert's transaction;
docs/reliability.md), and records the job InProgress. ``next_step`` says what to do with an existing job, for the
errors that name one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batchlane.errors import AlreadyExists, Conflict, NotFound
from batchlane.jobs.lease import runner_alive
from batchlane.jobs.outputs import check_output_outside_input
from batchlane.jobs.state import ACTIVE, REOPENABLE
from batchlane.jobs.store import JobRecord, JobStore
from batchlane.models import ModelRegistry
from batchlane.transform.options import JobOptions, validate_options
from batchlane.transform.spec import validate_request


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
        "job": job_options.stored(),
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
