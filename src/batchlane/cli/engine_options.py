"""Options that choose where a job runs (``--engine``) and, for ``--engine sagemaker``, where on AWS; shared by
``transform``, ``jobs`` and ``worker`` (one definition, one help text; docs/sagemaker-engine.md)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from batchlane.engines.base import ENGINE_NAMES

EngineOption = Annotated[
    str,
    typer.Option(
        "--engine",
        help=f"Where the job runs, one of {', '.join(ENGINE_NAMES)}: local is this machine, ray a Ray cluster "
        "(docs/ray.md), sagemaker Amazon SageMaker Batch Transform (docs/sagemaker-engine.md). `jobs resume` uses "
        "the job's own engine.",
    ),
]
RegionOption = Annotated[
    str | None,
    typer.Option(
        "--region", help="--engine sagemaker: the AWS region. Default: $AWS_REGION or $AWS_DEFAULT_REGION."
    ),
]
RoleOption = Annotated[
    str | None,
    typer.Option(
        "--role",
        help="--engine sagemaker: ExecutionRoleArn of a model batchlane creates. Default: $BATCHLANE_SAGEMAKER_ROLE.",
    ),
]
UploadToOption = Annotated[
    str | None,
    typer.Option(
        "--upload-to",
        help="--engine sagemaker: s3://BUCKET/PREFIX that local models and inputs are uploaded under. Default: "
        "$BATCHLANE_SAGEMAKER_STAGING.",
    ),
]
ImageOption = Annotated[
    str | None,
    typer.Option(
        "--image",
        help="--engine sagemaker: the inference image of a model batchlane creates (from `batchlane container "
        "push`, or yours). Default: $BATCHLANE_SAGEMAKER_IMAGE, else the registered model's image.",
    ),
]
InstanceTypeOption = Annotated[
    str | None,
    typer.Option(
        "--instance-type",
        help="TransformResources.InstanceType. --engine sagemaker: an ml.* type (default ml.m5.large).",
    ),
]


def engine_for(store: Any, engine: str, **aws: Any) -> Any:
    """``get_engine(engine, store)``; the AWS settings (None: from the environment) go only to sagemaker."""
    from batchlane.engines import get_engine

    if engine != "sagemaker":
        return get_engine(engine, store)
    return get_engine(engine, store, **{k: v for k, v in aws.items() if v is not None})
