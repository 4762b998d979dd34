"""``from_sagemaker``: a ``ModelSpec`` from a boto3 CreateModel request, with SageMaker's field names in errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batchlane.errors import ValidationError
from batchlane.models.spec import ModelSpec, check_environment, check_model_data_url, is_real_image

# CreateModel members that do not change how batchlane serves a model; accepted and not stored.
_IGNORED_CREATE_FIELDS = frozenset(
    {"ExecutionRoleArn", "Tags", "VpcConfig", "EnableNetworkIsolation", "InferenceExecutionConfig"}
)
_CONTAINER_FIELDS = frozenset(
    {"ContainerHostname", "Image", "ImageConfig", "Mode", "ModelDataUrl", "ModelDataSource", "Environment"}
)


def from_sagemaker(request: Mapping[str, Any]) -> ModelSpec:
    """A ``ModelSpec`` from a boto3 ``CreateModel`` request (``PrimaryContainer`` or a single ``Containers[0]``).

        ``ExecutionRoleArn``, ``Tags``, ``VpcConfig``, ``EnableNetworkIsolation`` and ``InferenceExecutionConfig`` are
        accepted and ignored; inference pipelines (several containers), multi-model containers and model packages are
        refused, as is a container without model data unless its ``Image`` is a real image (which then holds its model;
    docs/containers.md). Besides SageMaker's
        ``s3://``, ``ModelDataUrl`` may be a ``file://`` URI or a local path (a batchlane extension for local use); a
        server taking requests from other users should restrict those to folders it allows.
    """
    unknown = sorted(set(request) - _IGNORED_CREATE_FIELDS - {"ModelName", "PrimaryContainer", "Containers"})
    if unknown:
        raise ValidationError(f"unknown CreateModel field {unknown[0]!r}", field=unknown[0])
    name = request.get("ModelName")
    if not isinstance(name, str):
        raise ValidationError("ModelName is required", field="ModelName")
    primary, containers = request.get("PrimaryContainer"), request.get("Containers")
    if primary is not None and containers is not None:
        raise ValidationError("give PrimaryContainer or Containers, not both", field="Containers")
    field = "PrimaryContainer"
    if containers is not None:
        if not isinstance(containers, list) or len(containers) != 1:
            raise ValidationError(
                "Containers must hold exactly one container; inference pipelines are not supported",
                field="Containers",
            )
        primary, field = containers[0], "Containers[0]"
    if not isinstance(primary, Mapping):
        raise ValidationError("PrimaryContainer is required", field="PrimaryContainer")
    unknown = sorted(set(primary) - _CONTAINER_FIELDS)
    if unknown:
        raise ValidationError(
            f"{field}.{unknown[0]} is not supported by batchlane", field=f"{field}.{unknown[0]}"
        )
    if primary.get("Mode", "SingleModel") != "SingleModel":
        raise ValidationError(f"{field}.Mode must be SingleModel", field=f"{field}.Mode")
    model_data = primary.get("ModelDataUrl")
    source = primary.get("ModelDataSource")
    if source is not None:
        if model_data is not None:
            raise ValidationError(
                f"give {field}.ModelDataUrl or ModelDataSource, not both", field=f"{field}.ModelDataSource"
            )
        s3 = source.get("S3DataSource") if isinstance(source, Mapping) else None
        if not isinstance(s3, Mapping) or not isinstance(s3.get("S3Uri"), str):
            raise ValidationError(
                f"{field}.ModelDataSource.S3DataSource.S3Uri is required", field=f"{field}.ModelDataSource"
            )
        model_data = s3["S3Uri"]
        if s3.get("CompressionType", "None") == "None" and not model_data.endswith("/"):
            model_data += "/"
    if not model_data and not is_real_image(primary.get("Image")):
        raise ValidationError(
            f"{field}.ModelDataUrl is required unless {field}.Image is a container image that holds its model: "
            "batchlane's built-in server serves the model from its model data",
            field=f"{field}.ModelDataUrl",
        )
    url_field = (
        f"{field}.ModelDataSource.S3DataSource.S3Uri" if source is not None else f"{field}.ModelDataUrl"
    )
    if model_data:
        model_data = check_model_data_url(model_data, url_field)
    environment = primary.get("Environment") or {}
    if not isinstance(environment, Mapping):
        raise ValidationError(f"{field}.Environment must be a map", field=f"{field}.Environment")
    check_environment(environment, field=f"{field}.Environment")
    data = {
        "name": name,
        "model_data": model_data,
        "environment": dict(environment),
        "image": primary.get("Image"),
    }
    try:
        return ModelSpec.parse(data)
    except ValidationError as exc:
        # Name the field as the caller spelled it in the CreateModel request.
        aws = {"name": "ModelName", "model_data": f"{field}.ModelDataUrl", "image": f"{field}.Image"}
        spec_field = (exc.field or "").split(".")[0]
        if spec_field not in aws:
            raise
        message = exc.message.replace(f"model spec field {exc.field!r}", aws[spec_field])
        raise ValidationError(message, field=aws[spec_field]) from None
