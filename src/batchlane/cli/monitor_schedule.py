"""`batchlane monitor schedule|schedules|executions|start|stop|delete`: monitoring schedules (thin over
``batchlane.monitor.schedules``; docs/monitoring-schedules.md). The schedules fire inside a running
``batchlane worker`` or ``batchlane server`` that uses the same job store (--db).

``add_commands(group)`` adds the commands to the ``monitor`` group of ``cli/monitor.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from batchlane.cli.options import DbOption, open_job_store

CRON_HELP = (
    "When it runs: SageMaker's cron(M H DoM Mon DoW Y) e.g. 'cron(0 * ? * * *)' (hourly), a five-field cron "
    "e.g. '*/15 * * * *', rate(N minutes|hours|days), rate(N seconds) (tests, demos) or NOW (once)."
)


def _location(uri: str) -> str:
    """A local path made absolute (the worker that runs the schedule may have another working folder)."""
    return uri if "://" in uri else str(Path(uri).expanduser().absolute())


def _open(db: Path | None):
    from batchlane.monitor.schedules import ScheduleStore

    jobs = open_job_store(db)
    try:
        return ScheduleStore.beside(jobs)
    finally:
        jobs.close()


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


def schedule_row(schedule: Any) -> dict[str, Any]:
    target = schedule.target
    return {
        "name": schedule.name,
        "arn": schedule.arn,
        "status": schedule.status.value,
        "schedule": schedule.expression,
        "next_run": _iso(schedule.next_run_time),
        "baseline": target.baseline,
        "data": list(target.data),
        "output": target.output,
        "threshold": target.threshold,
        "webhook": target.webhook,
        "sns_topic": target.sns_topic,
        "image": target.image or None,
        "created": _iso(schedule.creation_time),
    }


def execution_row(execution: Any) -> dict[str, Any]:
    return {
        "name": execution.name,
        "status": execution.status.value,
        "scheduled": _iso(execution.scheduled_time),
        "started": _iso(execution.start_time),
        "ended": _iso(execution.end_time),
        "exit_code": execution.exit_code,
        "failure_reason": execution.failure_reason,
        "output": execution.output_uri,
        "violations": execution.violations_uri,
        "summary": execution.summary_uri,
        "alert": execution.alert,
    }


def add_commands(group: typer.Typer) -> None:
    """Add the schedule commands to ``group`` (the ``batchlane monitor`` typer group)."""

    @group.command("schedule")
    def schedule(
        name: str = typer.Argument(..., help="Schedule name: 1-63 letters, digits or hyphens."),
        cron: str = typer.Option(..., "--cron", help=CRON_HELP),
        baseline: str = typer.Option(
            ..., "--baseline", help="The baseline folder `batchlane monitor baseline` wrote."
        ),
        data: list[str] = typer.Option(
            ..., "--data", help="Data to check (a file, folder, file:// or s3:// URI); repeat for several."
        ),
        output: str = typer.Option(
            ..., "--output", help="Where reports go: <output>/<name>/<yyyy>/<mm>/<dd>/<hh>/<MMSS>/ per run."
        ),
        threshold: float | None = typer.Option(
            None,
            "--threshold",
            help="Per-record cosine threshold passed to `monitor run` (default: its own).",
        ),
        webhook: str | None = typer.Option(
            None, "--webhook", help="POST the violation report (JSON) to this URL when a run finds drift."
        ),
        sns_topic: str | None = typer.Option(
            None, "--sns-topic", help="Also publish the report to this SNS topic ARN when a run finds drift."
        ),
        max_runtime: int = typer.Option(
            3600, "--max-runtime", min=1, help="Stop a run (recorded Failed) after this many seconds."
        ),
        db: DbOption = None,
    ) -> None:
        """Create a monitoring schedule: run `batchlane monitor run` on a cron and record each run.

        A running `batchlane worker` or `batchlane server` on the same job store fires it. A run that finds drift is recorded CompletedWithViolations and alerts the webhook and SNS topic; see `batchlane monitor executions NAME`.
        """  # noqa: E501 - one line per paragraph, or --help breaks it mid-sentence
        from batchlane.monitor.job_definition import check_sns_topic, check_webhook, config_for_target
        from batchlane.monitor.schedule_records import Target

        target = Target(
            baseline=_location(baseline),
            data=tuple(_location(uri) for uri in data),
            output=_location(output),
            threshold=threshold,
            webhook=check_webhook(webhook, "--webhook"),
            sns_topic=check_sns_topic(sns_topic, "--sns-topic"),
            max_runtime_s=max_runtime,
        )
        store = _open(db)
        try:
            created = store.create(name, cron, target, config=config_for_target(cron, target, store.account))
        finally:
            store.close()
        next_run = _iso(created.next_run_time) or "never"
        typer.echo(f"{created.name}: {created.status.value} ({created.expression}); next run {next_run}")

    @group.command("schedules")
    def schedules(
        db: DbOption = None,
        as_json: bool = typer.Option(False, "--json", help="Print JSON Lines, one schedule each."),
    ) -> None:
        """List monitoring schedules, newest first."""
        store = _open(db)
        try:
            rows, token = store.list()
            while token:
                more, token = store.list(next_token=token)
                rows += more
            for row in rows:
                if as_json:
                    typer.echo(json.dumps(schedule_row(row)))
                else:
                    last = store.last_execution(row.name)
                    typer.echo(
                        f"{row.name}\t{row.status.value}\t{row.expression}\tnext {_iso(row.next_run_time) or '-'}"
                        f"\tlast {last.status.value if last else '-'}"
                    )
        finally:
            store.close()

    @group.command("executions")
    def executions(
        name: str = typer.Argument(..., help="The schedule."),
        limit: int = typer.Option(
            20, "--limit", min=1, max=100, help="Show at most this many, newest first."
        ),
        db: DbOption = None,
        as_json: bool = typer.Option(False, "--json", help="Print JSON Lines, one execution each."),
    ) -> None:
        """List a schedule's runs (newest first): status, times, failure reason and report URIs."""
        store = _open(db)
        try:
            rows, _ = store.executions(name, max_results=limit)
        finally:
            store.close()
        for row in rows:
            if as_json:
                typer.echo(json.dumps(execution_row(row)))
                continue
            detail = row.failure_reason or row.violations_uri or ""
            alert = f"\t{row.alert}" if row.alert else ""
            typer.echo(f"{row.name}\t{row.status.value}\t{_iso(row.scheduled_time)}\t{detail}{alert}")

    def _set(name: str, db: Path | None, stopped: bool) -> None:
        from batchlane.monitor.schedule_records import ScheduleStatus

        store = _open(db)
        try:
            status = ScheduleStatus.STOPPED if stopped else ScheduleStatus.SCHEDULED
            done = store.set_status(name, status)
        finally:
            store.close()
        typer.echo(f"{done.name}: {done.status.value}")

    @group.command("stop")
    def stop(name: str = typer.Argument(..., help="The schedule."), db: DbOption = None) -> None:
        """Stop a schedule: it fires no more until `batchlane monitor start` (a running execution finishes)."""
        _set(name, db, stopped=True)

    @group.command("start")
    def start(name: str = typer.Argument(..., help="The schedule."), db: DbOption = None) -> None:
        """Restart a stopped schedule; its next run is the next firing time from now."""
        _set(name, db, stopped=False)

    @group.command("delete")
    def delete(name: str = typer.Argument(..., help="The schedule."), db: DbOption = None) -> None:
        """Delete a schedule and its execution records (reports already written stay where they are)."""
        store = _open(db)
        try:
            store.delete(name)
        finally:
            store.close()
        typer.echo(f"{name}: deleted")


def register(app: typer.Typer) -> None:
    """Until the merge with cli/monitor.py: a ``monitor`` group of its own holding only these commands."""
    group = typer.Typer(help="Monitoring schedules.", no_args_is_help=True)
    add_commands(group)
    app.add_typer(group, name="monitor")
