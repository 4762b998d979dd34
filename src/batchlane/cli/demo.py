"""``batchlane demo``: the dispute classifier over the CFPB test set as a local batch transform job."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from batchlane.cli.options import DbOption, open_job_store


def demo(
    workdir: Annotated[
        Path, typer.Option("--workdir", help="Where the demo writes its input and output folders.")
    ] = Path("demo-output"),
    files: Annotated[
        int, typer.Option("--files", help="How many input files to split the test rows into.")
    ] = 4,
    limit: Annotated[
        int | None, typer.Option("--limit", help="Use only the first N test rows (default: all 3,000).")
    ] = None,
    model_dir: Annotated[
        Path | None,
        typer.Option("--model-dir", help="Use this classifier instead of building the demo model."),
    ] = None,
    db: DbOption = None,
) -> None:
    """Build the dispute classifier if needed, run a batch transform over the CFPB test set, print a summary."""
    from rich.console import Console
    from rich.table import Table

    from batchlane.cli.foreground import JobProgress, exit_code
    from batchlane.demo import run_demo
    from batchlane.jobs.state import JobStatus

    console = Console(highlight=False)
    console.print("[bold]batchlane demo[/bold]: the dispute classifier as a SageMaker-style batch transform")
    if model_dir is None:
        console.print("  model: the demo classifier (built and cached on first use: a few minutes on CPU)")
    store = open_job_store(db)
    with JobProgress(quiet=False, description="demo") as progress:
        result = run_demo(
            workdir.resolve(), store, files=files, limit=limit, model_dir=model_dir, on_progress=progress
        )
    job = result.job
    table = Table("Predicted label", "Documents", title="Predictions per label")
    for label, count in result.predicted.most_common():
        table.add_row(label, f"{count:,}")
    console.print(table)
    console.print(
        f"  job: {job.name} [{'green' if job.status is JobStatus.COMPLETED else 'red'}]{job.status.value}[/]"
    )
    if job.failure_reason:
        console.print(f"  reason: {job.failure_reason}")
    console.print(
        f"  documents: {result.records:,} in {job.files_done} files   accuracy vs true labels: "
        f"{result.accuracy:.3f}   throughput: {progress.docs_per_second:,.1f} docs/s ({result.seconds:.1f} s, "
        f"model start-up {progress.startup_s:.1f} s)"
    )
    console.print(f"  model: {result.model_dir} (metrics.json beside it)")
    console.print(f"  inputs: {workdir / 'input'}   outputs: {result.output_dir}")
    console.print(f"  more: batchlane jobs describe {job.name} | batchlane jobs logs {job.name}")
    raise typer.Exit(exit_code(job.status))


def register(app: typer.Typer) -> None:
    app.command("demo", help=demo.__doc__)(demo)
