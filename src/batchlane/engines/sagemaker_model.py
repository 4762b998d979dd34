"""The SageMaker model a job runs: created from batchlane's registry if SageMaker lacks it, compared if it exists.

``ensure_model`` makes ``ModelName`` exist in SageMaker. A model registered with batchlane (``--model-dir`` or
``batchlane models create``) becomes a CreateModel request: its image (``--image`` first), its model data staged to
S3 (``sagemaker_staging.stage_model``), its environment, and the execution role. If SageMaker already has the
model, the same spec is success and a different one a ``Conflict`` naming each differing field (``spec_diff``).
A model only SageMaker knows is used as it is (an ``--image`` that differs from its image is a conflict too).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batchlane import spec_diff
from batchlane.engines.sagemaker_aws import AwsSettings, call, describe
from batchlane.engines.sagemaker_staging import stage_model
from batchlane.errors import Conflict, NotFound, ValidationError
from batchlane.jobs.store import JobStore
from batchlane.models import ModelRegistry, ModelSpec


def wanted_model(spec: ModelSpec, aws: AwsSettings, env: Mapping[str, str]) -> dict[str, Any]:
    """CreateModel's request (without ModelName) for a registered model; stages local model data."""
    if spec.model_data is None:
        raise ValidationError(
            f"model {spec.name} is served by a command or URL of this machine; SageMaker needs model data and an "
            "image (batchlane models create NAME --model-data DIR --image URI)",
            field="ModelName",
        )
    image = aws.image or spec.image
    if not image:
        raise ValidationError(
            f"model {spec.name} has no container image for SageMaker: give --image URI (the image "
            "`batchlane container push` printed, or your own) or set BATCHLANE_SAGEMAKER_IMAGE",
            field="--image",
        )
    if not aws.role:
        raise ValidationError(
            f"creating model {spec.name} in SageMaker needs an execution role: give --role ARN or set "
            "BATCHLANE_SAGEMAKER_ROLE",
            field="--role",
        )
    container: dict[str, Any] = {
        "Image": image,
        "ModelDataUrl": stage_model(spec.model_data, aws.staging, env),
    }
    if spec.environment:
        container["Environment"] = dict(spec.environment)
    return {"PrimaryContainer": container, "ExecutionRoleArn": aws.role}


def ensure_model(api: Any, store: JobStore, name: str, aws: AwsSettings, env: Mapping[str, str]) -> None:
    """Make model ``name`` exist in SageMaker (module docstring); errors say what to do."""
    existing = describe(api, "describe_model", ModelName=name)
    try:
        spec: ModelSpec | None = ModelRegistry(store).get(name).spec
    except NotFound:
        spec = None
    if spec is None:
        if existing is None:
            raise NotFound(
                f"model {name} exists neither in SageMaker nor in batchlane's registry: give --model-dir DIR, or "
                f"create it (batchlane models create {name} --model-data DIR --image URI)",
                field="ModelName",
            )
        if aws.image:
            _check_same(name, existing, {"PrimaryContainer": {"Image": aws.image}})
        return
    wanted = wanted_model(spec, aws, env)
    if existing is None:
        try:
            call(api, "create_model", ModelName=name, **wanted)
            return
        except Conflict:  # created meanwhile by someone else: compare with theirs
            existing = describe(api, "describe_model", ModelName=name)
            if existing is None:
                raise
    _check_same(name, existing, wanted)


def _check_same(name: str, existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> None:
    changed = spec_diff.differences(existing, wanted, keys_only=("Environment",))
    if changed:
        raise Conflict(
            f"model {name} already exists in SageMaker with a different spec: {'; '.join(changed)}; delete it "
            f"(aws sagemaker delete-model --model-name {name}) or register this one under another name",
            field="ModelName",
        )
