"""SageMaker's ``MonitoringJobDefinition`` ↔ batchlane's ``Target`` (docs/monitoring-schedules.md, "The control
plane").

``target_from_config`` maps a ``CreateMonitoringSchedule`` request onto ``batchlane monitor run``:

* ``--data``: each ``MonitoringInputs[].BatchTransformInput.DataCapturedDestinationS3Uri``; for an
  ``EndpointInput`` (batchlane has no endpoints) the capture folder ``$BATCHLANE_MONITOR_CAPTURE_ROOT/<EndpointName>``
  of the server; ``Environment["BATCHLANE_MONITOR_DATA"]`` (comma-separated URIs) overrides both;
* ``--baseline``: the folder of ``BaselineConfig.ConstraintsResource.S3Uri`` (or of ``StatisticsResource``), where
  ``batchlane monitor baseline`` wrote ``constraints.json`` beside ``statistics.json`` and ``embeddings.npy``;
  ``Environment["BATCHLANE_MONITOR_BASELINE"]`` overrides it;
* ``--output``: ``MonitoringOutputConfig.MonitoringOutputs[0].S3Output.S3Uri``;
* ``--threshold``: ``Environment["THRESHOLD"]`` (the seed's variable), if set;
* alerts: ``Environment["BATCHLANE_ALERT_WEBHOOK"]`` and ``Environment["BATCHLANE_ALERT_SNS_TOPIC"]``;
* the run time limit: ``StoppingCondition.MaxRuntimeInSeconds`` (default 3600).

``config_for_target`` writes the same shape for a schedule made with ``batchlane monitor schedule``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from batchlane import settings
from batchlane.errors import ValidationError
from batchlane.monitor.execution import is_batchlane_image
from batchlane.monitor.schedule_records import Target

ENV_DATA = "BATCHLANE_MONITOR_DATA"
ENV_BASELINE = "BATCHLANE_MONITOR_BASELINE"
ENV_THRESHOLD = "THRESHOLD"
ENV_WEBHOOK = "BATCHLANE_ALERT_WEBHOOK"
ENV_SNS_TOPIC = "BATCHLANE_ALERT_SNS_TOPIC"
DEFAULT_MAX_RUNTIME_S = 3600
BATCHLANE_IMAGE = "batchlane:latest"
SNS_ARN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?")
_JD = "MonitoringScheduleConfig.MonitoringJobDefinition"


def _dict(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError(f"{field} must be a structure", field=field)
    return value


def _folder_of(uri: str) -> str:
    return uri.rsplit("/", 1)[0] if uri.lower().endswith(".json") else uri.rstrip("/")


def check_webhook(url: str | None, field: str) -> str | None:
    if url is not None and not re.match(r"https?://[^/\s]+", url):
        raise ValidationError(f"{field} {url!r} must be an http:// or https:// URL", field=field)
    return url


def check_sns_topic(arn: str | None, field: str) -> str | None:
    if arn is not None and not SNS_ARN.fullmatch(arn):
        raise ValidationError(
            f"{field} {arn!r} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)", field=field
        )
    return arn


def target_from_config(config: Mapping[str, Any], env: Mapping[str, str]) -> tuple[Target, str | None]:
    """The ``Target`` and endpoint name (if any) of a ``MonitoringScheduleConfig``; ``ValidationError`` naming the
    field when a batchlane image lacks what ``monitor run`` needs. ``env`` is the server's environment."""
    definition = _dict(config.get("MonitoringJobDefinition"), _JD)
    if not definition:
        if config.get("MonitoringJobDefinitionName"):
            raise ValidationError(
                "MonitoringJobDefinitionName: batchlane has no separate job definitions; give the definition "
                "inline as MonitoringScheduleConfig.MonitoringJobDefinition",
                field="MonitoringJobDefinitionName",
            )
        raise ValidationError(f"{_JD} is required", field=_JD)
    app = _dict(definition.get("MonitoringAppSpecification"), f"{_JD}.MonitoringAppSpecification")
    image = app.get("ImageUri") or ""
    environment = {
        str(k): str(v) for k, v in _dict(definition.get("Environment"), f"{_JD}.Environment").items()
    }
    stopping = _dict(definition.get("StoppingCondition"), f"{_JD}.StoppingCondition")
    max_runtime = stopping.get("MaxRuntimeInSeconds", DEFAULT_MAX_RUNTIME_S)
    if isinstance(max_runtime, bool) or not isinstance(max_runtime, int) or max_runtime < 1:
        raise ValidationError(
            f"{_JD}.StoppingCondition.MaxRuntimeInSeconds must be a positive integer",
            field="MaxRuntimeInSeconds",
        )

    data: list[str] = []
    endpoint = None
    inputs = definition.get("MonitoringInputs") or []
    if not isinstance(inputs, list):
        raise ValidationError(f"{_JD}.MonitoringInputs must be a list", field="MonitoringInputs")
    capture_root = env.get(settings.BATCHLANE_MONITOR_CAPTURE_ROOT)
    for i, item in enumerate(inputs):
        field = f"{_JD}.MonitoringInputs[{i}]"
        item = _dict(item, field)
        batch = _dict(item.get("BatchTransformInput"), f"{field}.BatchTransformInput")
        if batch.get("DataCapturedDestinationS3Uri"):
            data.append(batch["DataCapturedDestinationS3Uri"])
        if endpoint_input := _dict(item.get("EndpointInput"), f"{field}.EndpointInput"):
            endpoint = endpoint_input.get("EndpointName")
            if endpoint and capture_root:
                data.append(f"{capture_root.rstrip('/')}/{endpoint}")
    if environment.get(ENV_DATA):
        data = [uri.strip() for uri in environment[ENV_DATA].split(",") if uri.strip()]

    baseline_config = _dict(definition.get("BaselineConfig"), f"{_JD}.BaselineConfig")
    baseline = environment.get(ENV_BASELINE) or ""
    for resource in ("ConstraintsResource", "StatisticsResource"):
        uri = _dict(baseline_config.get(resource), f"{_JD}.BaselineConfig.{resource}").get("S3Uri")
        if not baseline and uri:
            baseline = _folder_of(uri)

    outputs = _dict(definition.get("MonitoringOutputConfig"), f"{_JD}.MonitoringOutputConfig").get(
        "MonitoringOutputs"
    )
    output = ""
    if isinstance(outputs, list) and outputs:
        output = (
            _dict(_dict(outputs[0], "MonitoringOutputs[0]").get("S3Output"), "S3Output").get("S3Uri") or ""
        )

    threshold = None
    if environment.get(ENV_THRESHOLD):
        try:
            threshold = float(environment[ENV_THRESHOLD])
        except ValueError:
            raise ValidationError(
                f"{_JD}.Environment.THRESHOLD {environment[ENV_THRESHOLD]!r} is not a number",
                field="THRESHOLD",
            ) from None

    if is_batchlane_image(image):
        if not data:
            raise ValidationError(
                f"{_JD}.MonitoringInputs: no data to check: give a BatchTransformInput's "
                f"DataCapturedDestinationS3Uri, set Environment {ENV_DATA}, or start the server with "
                f"{settings.BATCHLANE_MONITOR_CAPTURE_ROOT} for an EndpointInput",
                field="MonitoringInputs",
            )
        if not baseline:
            raise ValidationError(
                f"{_JD}.BaselineConfig: batchlane's drift check needs a baseline: ConstraintsResource.S3Uri in "
                f"the folder `batchlane monitor baseline` wrote, or Environment {ENV_BASELINE}",
                field="BaselineConfig",
            )
        if not output:
            raise ValidationError(
                f"{_JD}.MonitoringOutputConfig.MonitoringOutputs[0].S3Output.S3Uri is required",
                field="MonitoringOutputConfig",
            )
    target = Target(
        baseline=baseline,
        data=tuple(data),
        output=output,
        threshold=threshold,
        webhook=check_webhook(environment.get(ENV_WEBHOOK), ENV_WEBHOOK),
        sns_topic=check_sns_topic(environment.get(ENV_SNS_TOPIC), ENV_SNS_TOPIC),
        image=image,
        max_runtime_s=max_runtime,
        environment=environment,
    )
    return target, endpoint


def config_for_target(expression: str, target: Target, account: str) -> dict[str, Any]:
    """The ``MonitoringScheduleConfig`` that ``DescribeMonitoringSchedule`` shows for a CLI-made schedule."""
    environment = dict(target.environment)
    if target.threshold is not None:
        environment[ENV_THRESHOLD] = repr(target.threshold)
    if target.webhook:
        environment[ENV_WEBHOOK] = target.webhook
    if target.sns_topic:
        environment[ENV_SNS_TOPIC] = target.sns_topic
    definition: dict[str, Any] = {
        "BaselineConfig": {
            "ConstraintsResource": {"S3Uri": f"{target.baseline.rstrip('/')}/constraints.json"}
        },
        "MonitoringInputs": [
            {
                "BatchTransformInput": {
                    "DataCapturedDestinationS3Uri": uri,
                    "DatasetFormat": {"Json": {"Line": True}},
                    "LocalPath": "/opt/ml/processing/input",
                }
            }
            for uri in target.data
        ],
        "MonitoringOutputConfig": {
            "MonitoringOutputs": [
                {"S3Output": {"S3Uri": target.output, "LocalPath": "/opt/ml/processing/output"}}
            ]
        },
        "MonitoringResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "local", "VolumeSizeInGB": 1}
        },
        "MonitoringAppSpecification": {"ImageUri": target.image or BATCHLANE_IMAGE},
        "StoppingCondition": {"MaxRuntimeInSeconds": target.max_runtime_s},
        "RoleArn": f"arn:aws:iam::{account}:role/batchlane",
    }
    if environment:
        definition["Environment"] = environment
    return {"ScheduleConfig": {"ScheduleExpression": expression}, "MonitoringJobDefinition": definition}
