"""``batchlane jobs``: watch and control transform jobs (List/Describe/StopTransformJob, resume, logs)."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

from batchlane.cli.options import DbOption, open_job_store

jobs_app = typer.Typer(
    help="List, describe, stop and resume transform jobs; read their logs.", no_args_is_help=True
)


@jobs_app.command("list")
def list_jobs(
    status: Annotated[
        str | None,
        typer.Option("--status", help="Only jobs in this state (InProgress, Completed, Failed, ...)."),
    ] = None,
    name_contains: Annotated[
        str | None, typer.Option(help="Only jobs whose name contains this text.")
    ] = None,
    max_results: Annotated[int, typer.Option(help="How many jobs to show (1-100).")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print ListTransformJobs-shaped JSON.")] = False,
    db: DbOption = None,
) -> None:
    """List jobs, newest first."""
    from batchlane.jobs.describe import summarize_job

    store = open_job_store(db)
    records, token = store.list_jobs(
        status_equals=status, name_contains=name_contains, max_results=max_results
    )
    if as_json:
        answer = {"TransformJobSummaries": [summarize_job(r) for r in records]}
        if token:
            answer["NextToken"] = token
        typer.echo(json.dumps(answer, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("Name", "Status", "Created", "Files", "Records", "Failure reason")
    for r in records:
        table.add_row(
            r.name,
            r.status.value,
            r.creation_time.isoformat(timespec="seconds"),
            f"{r.files_done}/{r.files_total}" + (f" ({r.files_failed} failed)" if r.files_failed else ""),
            f"{r.records_done:,}" + (f" (+{r.records_failed:,} bad)" if r.records_failed else ""),
            (r.failure_reason or "")[:80],
        )
    Console().print(table)


@jobs_app.command("describe")
def describe(name: Annotated[str, typer.Argument(help="TransformJobName.")], db: DbOption = None) -> None:
    """Print the job as DescribeTransformJob would (plus batchlane's progress under "Batchlane")."""
    from batchlane.jobs.describe import describe_job

    typer.echo(json.dumps(describe_job(open_job_store(db).get_job(name)), indent=2, default=str))


@jobs_app.command("stop")
def stop(name: Annotated[str, typer.Argument(help="TransformJobName.")], db: DbOption = None) -> None:
    """Ask a running job to stop (InProgress → Stopping → Stopped). Files already committed are kept."""
    from batchlane.engines import local
    from batchlane.jobs.state import JobStatus

    store = open_job_store(db)
    record = store.request_stop(name)
    if record.status is JobStatus.STOPPING:
        # A job whose runner died (or that no runner picked up yet) would stay Stopping forever: take it over and
        # finish the stop here. A live runner keeps its lease, so this returns at once and that runner stops it.
        record = local.run(store, name)
    typer.echo(f"{record.name}: {record.status.value}")


@jobs_app.command("resume")
def resume(
    name: Annotated[str | None, typer.Argument(help="TransformJobName; omit with --all.")] = None,
    all_jobs: Annotated[bool, typer.Option("--all", help="Resume every job whose runner is gone.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the final status.")] = False,
    db: DbOption = None,
) -> None:
    """Resume a job whose runner died: committed files are kept, the rest is done now, in this process."""
    from batchlane.cli.transform import _Progress, print_summary
    from batchlane.engines import local
    from batchlane.errors import ValidationError
    from batchlane.jobs.state import JobStatus

    store = open_job_store(db)
    if all_jobs == (name is not None):
        raise ValidationError("give a job name or --all", field="name")
    if all_jobs:
        for record in local.resume_orphans(store):
            typer.echo(f"{record.name}: {record.status.value}")
        return
    started = time.monotonic()
    with _Progress(quiet) as progress:
        final = local.run(store, name, on_progress=progress)  # type: ignore[arg-type]
    if quiet:
        typer.echo(f"{final.name}: {final.status.value}")
    else:
        print_summary(store, final.name, time.monotonic() - started)
    if final.status not in (JobStatus.COMPLETED, JobStatus.IN_PROGRESS, JobStatus.STOPPED):
        raise typer.Exit(1)


@jobs_app.command("logs")
def logs(
    name: Annotated[str, typer.Argument(help="TransformJobName.")],
    container: Annotated[
        bool, typer.Option("--container", help="Show the model container's log instead.")
    ] = False,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines until the job ends.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Print the job's log (the platform's data log, like a CloudWatch stream)."""
    store = open_job_store(db)
    store.get_job(name)
    path = store.log_path(name)
    if container:
        path = path.with_suffix(".container.log")
    position = 0
    while True:
        if path.exists():
            with open(path, "rb") as handle:
                handle.seek(position)
                chunk = handle.read()
                position += len(chunk)
            if chunk:
                typer.echo(chunk.decode("utf-8", "replace"), nl=False)
        if not follow or store.get_job(name).is_terminal:
            break
        time.sleep(0.5)


def register(app: typer.Typer) -> None:
    app.add_typer(jobs_app, name="jobs")
