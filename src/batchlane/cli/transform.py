"""``batchlane transform``: run a batch transform job (SageMaker CreateTransformJob semantics) on this machine.

The request is SageMaker's own JSON (``--request request.json``, exactly what boto3's ``create_transform_job``
takes); flags fill or override its common fields. batchlane's own options (CSV header, per-record errors,
consolidation) are flags too; they are stored with the job, not in the request.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from batchlane.cli.options import DbOption, open_job_store, parse_env_pairs


def default_job_name(base: str = "batchlane") -> str:
    """``<base>-YYYY-MM-DD-HH-MM-SS-mmm`` in UTC, like the SageMaker SDK's ``name_from_base``."""
    now = datetime.now(UTC)
    stamp = now.strftime("%Y-%m-%d-%H-%M-%S-") + f"{now.microsecond // 1000:03d}"
    return f"{base[: 63 - len(stamp) - 1]}-{stamp}"


def _set(tree: dict[str, Any], path: str, value: Any) -> None:
    if value is None:
        return
    *parents, leaf = path.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def build_request(
    request_file: Path | None,
    *,
    name: str | None,
    model: str | None,
    fields: dict[str, Any],
    env: dict[str, str],
) -> dict[str, Any]:
    """The CreateTransformJob request: the file's JSON (if any) with flag values laid over it."""
    from batchlane.errors import ValidationError

    request: dict[str, Any] = {}
    if request_file is not None:
        try:
            request = json.loads(request_file.read_text())
        except FileNotFoundError:
            raise ValidationError(
                f"--request file {request_file} does not exist", field="--request"
            ) from None
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"--request file {request_file} is not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}",
                field="--request",
            ) from None
        if not isinstance(request, dict):
            raise ValidationError(f"--request file {request_file} must hold a JSON object", field="--request")
    _set(request, "TransformJobName", name)
    _set(request, "ModelName", model)
    for path, value in fields.items():
        _set(request, path, value)
    if env:
        request["Environment"] = {**request.get("Environment", {}), **env}
    if "TransformJobName" not in request:
        request["TransformJobName"] = default_job_name()
    request.setdefault("TransformResources", {"InstanceType": "local", "InstanceCount": 1})
    source = request.get("TransformInput", {}).get("DataSource", {}).get("S3DataSource")
    if source is not None:
        source.setdefault("S3DataType", "S3Prefix")
    return request


def _model_from_dir(store: Any, model_dir: str) -> str:
    """Register ``model_dir`` under a name derived from its path (idempotent) and return the name."""
    from batchlane.models import ModelRegistry, ModelSpec

    path = Path(model_dir).expanduser().resolve()
    stem = (
        "".join(c if c.isalnum() else "-" for c in path.name.removesuffix(".tar.gz")).strip("-")[:40]
        or "model"
    )
    name = f"{stem}-{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
    ModelRegistry(store).create(ModelSpec(name=name, model_data=str(path)), exist_ok=True)
    return name


class _Progress:
    """A rich progress bar over files and records (docs/s, ETA by bytes)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.records = 0
        self.failed = 0
        self.started = time.monotonic()
        self.bar: Any = None

    def __enter__(self) -> _Progress:
        if not self.quiet:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} files"),
                TextColumn("{task.fields[records]} records ({task.fields[rate]} docs/s)"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                transient=True,
            )
            self.bar.__enter__()
            self.task = self.bar.add_task("transform", total=None, records=0, rate="-")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def __call__(self, event: str, data: dict[str, Any]) -> None:
        if event == "start":
            self.started = time.monotonic()
        if event == "batch":
            self.records += data.get("records", 0)
            self.failed += data.get("failed", 0)
        if self.bar is None:
            return
        rate = self.records / max(1e-9, time.monotonic() - self.started)
        if event == "start":
            self.bar.update(self.task, total=data["files"], completed=data.get("done", 0))
        elif event == "file":
            self.bar.advance(self.task)
        self.bar.update(self.task, records=self.records, rate=f"{rate:,.0f}")


def print_summary(store: Any, name: str, seconds: float) -> None:
    """The end-of-job summary: status, counts, throughput, where the outputs are."""
    from rich.console import Console

    from batchlane.jobs.state import FileState

    record = store.get_job(name)
    console = Console(stderr=False, highlight=False)
    colour = {"Completed": "green", "Failed": "red"}.get(record.status.value, "yellow")
    console.print(f"[bold]{name}[/bold]: [{colour}]{record.status.value}[/{colour}]")
    if record.failure_reason:
        console.print(f"  reason: {record.failure_reason}")
    rate = record.records_done / seconds if seconds > 0 else 0.0
    console.print(
        f"  files: {record.files_done} done, {record.files_failed} failed, {record.files_total} total"
        f"   records: {record.records_done:,} ok, {record.records_failed:,} failed"
        f"   time: {seconds:.1f} s ({rate:,.1f} docs/s)"
    )
    console.print(f"  output: {record.request['TransformOutput']['S3OutputPath']}")
    for checkpoint in store.files(name, FileState.FAILED)[:5]:
        console.print(f"  failed: {checkpoint.input_key}: {checkpoint.error}")
    console.print(f"  logs: batchlane jobs logs {name}")


def transform(
    request: Annotated[
        Path | None,
        typer.Option(
            "--request", help="A CreateTransformJob request as JSON (the dict you would pass to boto3)."
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="TransformJobName. Default: batchlane-<UTC timestamp>.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", help="ModelName of a registered model (`batchlane models create`)."),
    ] = None,
    model_dir: Annotated[
        str | None,
        typer.Option(
            "--model-dir", help="Serve this model folder or model.tar.gz (registered automatically)."
        ),
    ] = None,
    input: Annotated[
        str | None,
        typer.Option(
            "--input", help="S3Uri: a local folder/prefix, file://… or s3://bucket/prefix (raw prefix)."
        ),
    ] = None,
    manifest: Annotated[
        bool, typer.Option("--manifest", help="--input names a ManifestFile instead of an S3Prefix.")
    ] = False,
    output: Annotated[
        str | None,
        typer.Option("--output", help="S3OutputPath: where <input>.out files go (local or s3://)."),
    ] = None,
    content_type: Annotated[
        str | None, typer.Option("--content-type", help="ContentType sent with every request, e.g. text/csv.")
    ] = None,
    compression: Annotated[
        str | None, typer.Option("--compression", help="CompressionType: None or Gzip.")
    ] = None,
    split_type: Annotated[
        str | None, typer.Option("--split-type", help="SplitType: None, Line, RecordIO or TFRecord.")
    ] = None,
    strategy: Annotated[
        str | None, typer.Option("--strategy", help="BatchStrategy: MultiRecord or SingleRecord.")
    ] = None,
    max_payload_mb: Annotated[
        int | None, typer.Option("--max-payload-mb", help="MaxPayloadInMB (0-100; 0 = unlimited, streamed).")
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", help="MaxConcurrentTransforms: requests in flight.")
    ] = None,
    accept: Annotated[
        str | None, typer.Option("--accept", help="Accept header, e.g. application/jsonlines.")
    ] = None,
    assemble_with: Annotated[
        str | None,
        typer.Option("--assemble-with", help="AssembleWith: None or Line (default Line for Line split)."),
    ] = None,
    input_filter: Annotated[
        str | None, typer.Option("--input-filter", help="DataProcessing.InputFilter (JSONPath).")
    ] = None,
    output_filter: Annotated[
        str | None, typer.Option("--output-filter", help="DataProcessing.OutputFilter (JSONPath).")
    ] = None,
    join_source: Annotated[
        str | None, typer.Option("--join-source", help="DataProcessing.JoinSource: None or Input.")
    ] = None,
    timeout: Annotated[
        int | None, typer.Option("--timeout", help="ModelClientConfig.InvocationsTimeoutInSeconds (1-3600).")
    ] = None,
    retries: Annotated[
        int | None, typer.Option("--retries", help="ModelClientConfig.InvocationsMaxRetries (0-3).")
    ] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", help="Environment KEY=VALUE for the container (repeatable).")
    ] = None,
    csv_header: Annotated[
        str | None,
        typer.Option(
            "--csv-header",
            help="none (a header is just a record), skip (not sent), repeat (sent with every batch).",
        ),
    ] = None,
    on_record_error: Annotated[
        str | None,
        typer.Option(
            "--on-record-error",
            help="fail (the file fails, as SageMaker), error-row or skip (isolate bad records).",
        ),
    ] = None,
    max_error_ratio: Annotated[
        float | None,
        typer.Option(
            "--max-error-ratio", help="With error-row/skip: fail a file above this share of bad records."
        ),
    ] = None,
    consolidate: Annotated[
        str | None,
        typer.Option(
            "--consolidate",
            help="Also write one JSON Lines file with every result tagged by input key and record index.",
        ),
    ] = None,
    source_headers: Annotated[
        bool,
        typer.Option(
            "--source-headers",
            help="Send each request with X-Batchlane-Source-Key/-Record-Index/-Record-Count headers naming its "
            "input object and first record (off: SageMaker sends none).",
        ),
    ] = False,
    record_count: Annotated[
        str | None,
        typer.Option(
            "--record-count",
            help="lenient (default, as SageMaker: a response with another number of results than records is "
            "written as returned, with a warning) or strict (such a response fails its file).",
        ),
    ] = None,
    startup_timeout: Annotated[
        float | None,
        typer.Option("--startup-timeout", help="Seconds the model container has to answer /ping."),
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", help="Start the job in the background and return at once.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    db: DbOption = None,
) -> None:
    """Run a batch transform job: one <input>.out per input object, SageMaker Batch Transform semantics."""
    from batchlane.engines import local
    from batchlane.jobs.state import JobStatus

    store = open_job_store(db)
    if model_dir and model:
        from batchlane.errors import ValidationError

        raise ValidationError("give --model or --model-dir, not both", field="--model")
    if model_dir:
        model = _model_from_dir(store, model_dir)
    fields = {
        "TransformInput.DataSource.S3DataSource.S3Uri": input,
        "TransformInput.DataSource.S3DataSource.S3DataType": "ManifestFile" if manifest else None,
        "TransformInput.ContentType": content_type,
        "TransformInput.CompressionType": compression,
        "TransformInput.SplitType": split_type,
        "TransformOutput.S3OutputPath": output,
        "TransformOutput.Accept": accept,
        "TransformOutput.AssembleWith": assemble_with,
        "BatchStrategy": strategy,
        "MaxPayloadInMB": max_payload_mb,
        "MaxConcurrentTransforms": concurrency,
        "DataProcessing.InputFilter": input_filter,
        "DataProcessing.OutputFilter": output_filter,
        "DataProcessing.JoinSource": join_source,
        "ModelClientConfig.InvocationsTimeoutInSeconds": timeout,
        "ModelClientConfig.InvocationsMaxRetries": retries,
    }
    body = build_request(request, name=name, model=model, fields=fields, env=parse_env_pairs(env))
    options = {
        key: value
        for key, value in {
            "csv_header": csv_header,
            "on_record_error": on_record_error,
            "max_error_ratio": max_error_ratio,
            "consolidate": consolidate,
            "startup_timeout_s": startup_timeout,
            "source_headers": source_headers or None,
            "record_count": record_count,
        }.items()
        if value is not None
    }
    record = local.submit(store, body, options)
    if detach:
        local.start_detached(store, record.name)
        typer.echo(record.name)
        return
    started = time.monotonic()
    with _Progress(quiet) as progress:
        final = local.run(store, record.name, on_progress=progress)
    print_summary(store, final.name, time.monotonic() - started)
    if final.status is not JobStatus.COMPLETED:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("transform", help=transform.__doc__)(transform)
