"""``batchlane jobs``: watch and control transform jobs (List/Describe/StopTransformJob, resume, wait, logs,
results)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from batchlane.cli.engine_options import EngineOption, RegionOption, engine_for
from batchlane.cli.options import DbOption, open_job_store

jobs_app = typer.Typer(
    help="List, describe, stop, resume and wait for transform jobs; read their logs and results.",
    no_args_is_help=True,
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
    list_jobs_flag: Annotated[
        bool, typer.Option("--list-jobs", hidden=True, help="The seed's check-status spelling: no effect.")
    ] = False,
    db: DbOption = None,
    engine: EngineOption = "local",
    region: RegionOption = None,
) -> None:
    """List jobs, newest first (--engine sagemaker: SageMaker's ListTransformJobs)."""
    from batchlane.jobs.describe import summarize_job

    store = open_job_store(db)
    if engine == "sagemaker":
        _list_remote(engine_for(store, engine, region=region), status, name_contains, max_results, as_json)
        return
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


def _list_remote(
    engine: object, status: str | None, name_contains: str | None, max_results: int, as_json: bool
) -> None:
    """``jobs list`` for an engine whose service keeps the jobs (sagemaker): its summaries, newest first."""
    summaries = engine.list_jobs(  # type: ignore[attr-defined]
        status=status, name_contains=name_contains, max_results=max_results
    )
    if as_json:
        typer.echo(json.dumps({"TransformJobSummaries": summaries}, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("Name", "Status", "Created", "Ended", "Failure reason")
    for summary in summaries:
        ended = summary.get("TransformEndTime")
        table.add_row(
            summary["TransformJobName"],
            summary.get("TransformJobStatus", ""),
            summary["CreationTime"].isoformat(timespec="seconds") if summary.get("CreationTime") else "",
            ended.isoformat(timespec="seconds") if ended else "",
            (summary.get("FailureReason") or "")[:80],
        )
    Console(width=200).print(table)


@jobs_app.command("describe")
def describe(
    name: Annotated[str, typer.Argument(help="TransformJobName.")],
    db: DbOption = None,
    engine: EngineOption = "local",
    region: RegionOption = None,
) -> None:
    """Print the job as DescribeTransformJob would (plus batchlane's progress under "Batchlane")."""
    answer = engine_for(open_job_store(db), engine, region=region).describe(name)
    typer.echo(json.dumps(answer, indent=2, default=str))


@jobs_app.command("stop")
def stop(
    name: Annotated[str, typer.Argument(help="TransformJobName.")],
    db: DbOption = None,
    engine: EngineOption = "local",
    region: RegionOption = None,
) -> None:
    """Ask a running job to stop (InProgress → Stopping → Stopped). Files already committed are kept."""
    # A job whose runner died (or that no runner picked up yet) would stay Stopping forever: the engine takes it
    # over and finishes the stop here. A live runner keeps its lease and stops the job itself.
    record = engine_for(open_job_store(db), engine, region=region).stop(name)
    typer.echo(f"{record.name}: {record.status.value}")


@jobs_app.command("resume")
def resume(
    name: Annotated[str | None, typer.Argument(help="TransformJobName; omit with --all.")] = None,
    all_jobs: Annotated[bool, typer.Option("--all", help="Resume every job whose runner is gone.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the final status.")] = False,
    background: Annotated[
        bool,
        typer.Option(
            "--background",
            hidden=True,
            help="Run as a background runner (`transform --detach`, the worker): a signal ends the process and "
            "leaves the job InProgress, so the next orphan sweep resumes it, instead of stopping the job.",
        ),
    ] = False,
    db: DbOption = None,
) -> None:
    """Continue a job here: one whose runner died, or one that was Stopped or Failed (its failed files are
    retried). Committed files are kept. Exits like `batchlane transform`."""
    from batchlane.cli.foreground import run_here
    from batchlane.engines import get_engine
    from batchlane.errors import ValidationError
    from batchlane.jobs.state import JobStatus

    store = open_job_store(db)
    if all_jobs == (name is not None):
        raise ValidationError("give a job name or --all", field="name")
    if all_jobs:
        from batchlane.jobs.lease import find_orphans

        # Each orphan runs on its own engine again: one sweep per engine that has orphans, local first.
        engines = sorted({record.engine for record in find_orphans(store)}, key=lambda e: (e != "local", e))
        for engine_name in engines:
            for record in get_engine(engine_name, store).recover():
                typer.echo(f"{record.name}: {record.status.value}")
        return
    before = store.get_job(name)  # type: ignore[arg-type]
    # The job runs on its own engine again (the job option `engine`, `transform --engine`).
    engine = get_engine(before.engine, store)
    if before.status is JobStatus.COMPLETED:
        typer.echo(f"{before.name}: Completed; nothing to resume (`batchlane jobs results {before.name}`)")
        return
    record = engine.reopen(before.name)
    if background:
        # A shutdown's SIGTERM is not the user's "stop": the process just ends, the job stays InProgress with a
        # dead owner, and whoever sweeps orphans (the worker, the control plane, `jobs resume --all`) goes on.
        import signal

        from batchlane.cli.foreground import exit_code

        def shutdown(signum: int, frame: object) -> None:
            raise SystemExit(
                128 + signum
            )  # unwinds: the file in flight is abandoned and its temp file removed

        signal.signal(signal.SIGTERM, shutdown)
        final = engine.run(record.name)
        typer.echo(f"{final.name}: {final.status.value}")
        raise typer.Exit(exit_code(final.status, None))
    if before.status is not record.status and not quiet:
        typer.echo(
            f"resuming {record.name} (was {before.status.value}): {record.files_done} of {record.files_total} "
            "files already done",
            err=True,
        )
    raise typer.Exit(run_here(engine, record.name, quiet=quiet, brief=quiet))


@jobs_app.command("wait")
def wait(
    name: Annotated[str, typer.Argument(help="TransformJobName.")],
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", help="Give up after this many seconds (exit 124). Default: wait for ever."),
    ] = None,
    poll: Annotated[float, typer.Option("--poll", help="Seconds between status checks.")] = 2.0,
    db: DbOption = None,
    engine: EngineOption = "local",
    region: RegionOption = None,
) -> None:
    """Wait until the job ends; exit 0 only if it Completed (1 Failed, 3 Stopped, 124 timed out)."""
    from batchlane.cli.foreground import EXIT_TIMEOUT, exit_code
    from batchlane.jobs.state import JobStatus

    store = open_job_store(db)
    if engine == "sagemaker":
        answer = engine_for(store, engine, region=region).wait(name, timeout_s=timeout, poll_s=poll)
        status = JobStatus.parse(answer["TransformJobStatus"], field="TransformJobStatus")
        if not status.is_terminal:
            typer.echo(f"{answer['TransformJobName']}: still {status.value} after {timeout:g} s", err=True)
            raise typer.Exit(EXIT_TIMEOUT)
        typer.echo(f"{answer['TransformJobName']}: {status.value}")
        if answer.get("FailureReason"):
            typer.echo(f"  reason: {answer['FailureReason']}")
        raise typer.Exit(exit_code(status))
    deadline = None if timeout is None else time.monotonic() + timeout
    record = store.get_job(name)
    while not record.is_terminal:
        if deadline is not None and time.monotonic() >= deadline:
            typer.echo(f"{record.name}: still {record.status.value} after {timeout:g} s", err=True)
            raise typer.Exit(EXIT_TIMEOUT)
        time.sleep(max(0.05, poll if deadline is None else min(poll, deadline - time.monotonic())))
        record = store.get_job(name)
    typer.echo(f"{record.name}: {record.status.value}")
    if record.failure_reason:
        typer.echo(f"  reason: {record.failure_reason}")
    raise typer.Exit(exit_code(record.status))


@jobs_app.command("results")
def results(
    name: Annotated[str, typer.Argument(help="TransformJobName.")],
    head: Annotated[int, typer.Option("--head", help="How many rows to print as a table.")] = 10,
    to: Annotated[
        Path | None,
        typer.Option(
            "--to",
            help="Export every row to this file (.parquet, .csv or .jsonl) instead of printing a table.",
        ),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="parquet, csv or jsonl (default: from the --to file's suffix)."),
    ] = None,
    db: DbOption = None,
) -> None:
    """Print or export a job's outputs, joined with their input records when SplitType=Line (docs/howto-pandas.md)."""
    from batchlane.errors import ValidationError
    from batchlane.jobs.results import COLUMNS, export, format_for, iter_results

    store = open_job_store(db)
    if fmt is not None and to is None:
        raise ValidationError("--format needs --to FILE", field="--format")
    if to is not None:
        kind = format_for(to, fmt)
        count = export(iter_results(store, name), to, kind)
        typer.echo(f"wrote {count:,} rows to {to} ({kind})")
        return
    if head < 1:
        raise ValidationError("--head must be at least 1", field="--head")
    from itertools import islice

    from rich.console import Console
    from rich.table import Table

    table = Table(*COLUMNS)
    for row in islice(iter_results(store, name), head):
        table.add_row(
            row.input_key,
            "" if row.record_index is None else str(row.record_index),
            _cell(row.input),
            _cell(row.output),
        )
    Console().print(table)


def _cell(text: str | None, limit: int = 200) -> str:
    """A table cell: at most ``limit`` characters, shown literally (no rich markup)."""
    from rich.markup import escape

    if text is None:
        return ""
    return escape(text if len(text) <= limit else text[: limit - 1] + "…")


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
    engine: EngineOption = "local",
    region: RegionOption = None,
) -> None:
    """Print the job's log (the platform's data log, like a CloudWatch stream; --engine sagemaker: the job's
    CloudWatch Logs streams in /aws/sagemaker/TransformJobs)."""
    import sys

    store = open_job_store(db)
    if engine == "sagemaker":
        remote = engine_for(store, engine, region=region)
        remote.out = sys.stdout
        remote.logs(name, follow_job=follow)
        return
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
