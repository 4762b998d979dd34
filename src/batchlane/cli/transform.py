"""``batchlane transform``: run a batch transform job (SageMaker CreateTransformJob semantics) on this machine.

The request is SageMaker's own JSON (``--request request.json``, exactly what boto3's ``create_transform_job``
takes); flags fill or override its common fields. batchlane's own options (CSV header, per-record errors,
consolidation) are flags too; they are stored with the job, not in the request.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from batchlane.cli.engine_options import (
    EngineOption,
    ImageOption,
    InstanceTypeOption,
    RegionOption,
    RoleOption,
    UploadToOption,
    engine_for,
)
from batchlane.cli.options import DbOption, open_job_store, parse_env_pairs


def read_request(
    request_file: Path | None,
    *,
    name: str | None,
    model: str | None,
    fields: dict[str, Any],
    env: dict[str, str],
) -> dict[str, Any]:
    """The CreateTransformJob request: the file's JSON (if any) with flag values laid over it
    (``engines.request.build_request``)."""
    from batchlane.engines.request import build_request as build
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
    return build({"TransformJobName": name, "ModelName": model, **fields}, base=request, environment=env)


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
    instance_type: InstanceTypeOption = None,
    instance_count: Annotated[
        int | None, typer.Option("--instance-count", help="TransformResources.InstanceCount.")
    ] = None,
    detach: Annotated[
        bool,
        typer.Option(
            "--detach",
            help="Start the job in the background (on SageMaker with --engine sagemaker) and print its name.",
        ),
    ] = False,
    engine_name: EngineOption = "local",
    region: RegionOption = None,
    role: RoleOption = None,
    upload_to: UploadToOption = None,
    image: ImageOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    db: DbOption = None,
    max_restarts: Annotated[
        int | None,
        typer.Option(
            "--max-restarts",
            help="Restarts of a hung or dead model server per run (default 3, with backoff); only the file that "
            "hit the fault fails. 0: such a fault fails the job.",
        ),
    ] = None,
    max_runtime: Annotated[
        int | None,
        typer.Option(
            "--max-runtime",
            help="Stop the job after this many seconds (reason MaxRuntimeExceeded; committed files are kept).",
        ),
    ] = None,
    part_size: Annotated[
        int | None,
        typer.Option(
            "--part-size",
            help="Bytes per part: larger uncompressed Line/RecordIO/TFRecord inputs are cut into parts at "
            "mini-batch boundaries, each checkpointed (a resumed job redoes only unfinished parts). Default "
            "BATCHLANE_PART_SIZE, else 64 MiB (docs/parts.md).",
            min=1,
        ),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="--engine ray: the Ray cluster: auto (the one running on this machine) or ray://host:port. "
            "Default: a local Ray started for the job.",
        ),
    ] = None,
    replicas: Annotated[
        int | None,
        typer.Option(
            "--replicas",
            help="--engine ray: model replicas (actors) in the pool. Default: InstanceCount x replicas per "
            "instance (its GPUs, or 1 on CPU).",
        ),
    ] = None,
    gpus_per_replica: Annotated[
        float | None,
        typer.Option(
            "--gpus-per-replica",
            help="--engine ray: GPUs each replica gets (default 1 for a GPU instance type such as ml.g5.*, "
            "else 0). A cluster without them fails the job with the reason.",
        ),
    ] = None,
) -> None:
    """Run a batch transform job: one <input>.out per input object, SageMaker Batch Transform semantics."""
    from batchlane.cli.foreground import run_here

    store = open_job_store(db)
    engine = engine_for(
        store,
        engine_name,
        region=region,
        role=role,
        staging=upload_to,
        image=image,
        instance_type=instance_type,
    )
    if model_dir and model:
        from batchlane.errors import ValidationError

        raise ValidationError("give --model or --model-dir, not both", field="--model")
    if model_dir:
        model = _model_from_dir(store, model_dir)
    from batchlane.storage.uri import resolve_argument

    # Flags are shell arguments: a relative path means the caller's folder (a request file is taken as written).
    input, output, consolidate = (resolve_argument(value) for value in (input, output, consolidate))
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
        "TransformResources.InstanceType": instance_type,
        "TransformResources.InstanceCount": instance_count or (1 if instance_type else None),
    }
    body = read_request(request, name=name, model=model, fields=fields, env=parse_env_pairs(env))
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
            "max_restarts": max_restarts,
            "max_runtime_s": max_runtime,
            "engine": engine_name if engine_name != "local" else None,
            "part_size": part_size,
            "address": address,
            "replicas": replicas,
            "gpus_per_replica": gpus_per_replica,
        }.items()
        if value is not None
    }
    if quiet and engine_name == "sagemaker":
        engine.out = None  # no status lines, no CloudWatch lines: only the summary
    record = engine.submit(body, options)
    if detach:
        engine.start_detached(record.name)
        typer.echo(record.name)
        return
    # Exit status: 0 Completed, 1 Failed, 3 Stopped, 130 Ctrl-C (see cli.foreground). A job SageMaker runs prints
    # its status changes and log lines itself: no progress bar over them.
    raise typer.Exit(run_here(engine, record.name, quiet=quiet or engine_name == "sagemaker"))


def register(app: typer.Typer) -> None:
    app.command("transform", help=transform.__doc__)(transform)
