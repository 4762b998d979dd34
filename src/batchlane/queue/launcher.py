"""From a queue message to a transform job: the CreateTransformJob request, the job's name per attempt, retry delays.

Pure functions shared by the queue worker (:mod:`batchlane.queue.worker`, local engine) and the Lambda handler
(:mod:`batchlane.aws.lambda_handler`, SageMaker), so both turn the same message into the same request and name.

* ``job_name_for_attempt(message, attempt)``: attempt 0 is ``job_name_for(message)`` (docs/queue.md); attempt
  ``k > 0`` (a re-queued failed job, see docs/automation.md) appends ``-r<k>``, shortening the base so the name still
  matches SageMaker's pattern. The attempt travels in the message attribute ``batchlane-attempt``.
* ``build_request(message, ...)``: the seed's four fields plus the optional ones, with ``RequestDefaults`` (the
  function's or worker's configured defaults, ``BATCHLANE_DEFAULT_*``) filling fields the message leaves out.
  ``SplitType=Line`` gets ``AssembleWith=Line`` so every record's result is one line of the ``.out`` file.
* ``retry_delay_s(receive_count, ...)``: exponential backoff for transient failures, capped.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from batchlane import settings
from batchlane.errors import ValidationError
from batchlane.queue.message import MEDIA_TYPE_RE, TransformMessage, job_name_for

ATTEMPT_ATTRIBUTE = "batchlane-attempt"
MAX_JOB_NAME = 63
SPLIT_TYPES = ("None", "Line", "RecordIO", "TFRecord")
STRATEGIES = ("MultiRecord", "SingleRecord")


@dataclass(frozen=True)
class RequestDefaults:
    """Values for the optional message fields when a message leaves them out (None: leave the request's unset)."""

    content_type: str | None = None
    split_type: str | None = None
    accept: str | None = None
    strategy: str | None = None

    def __post_init__(self) -> None:
        for field, value in (("content_type", self.content_type), ("accept", self.accept)):
            if value is not None and not MEDIA_TYPE_RE.match(value):
                raise ValidationError(
                    f"default {field} {value!r} is not a media type such as text/csv", field=field
                )
        if self.split_type is not None and self.split_type not in SPLIT_TYPES:
            raise ValidationError(
                f"default split_type {self.split_type!r} must be one of {', '.join(SPLIT_TYPES)}",
                field="split_type",
            )
        if self.strategy is not None and self.strategy not in STRATEGIES:
            raise ValidationError(
                f"default strategy {self.strategy!r} must be one of {', '.join(STRATEGIES)}", field="strategy"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RequestDefaults:
        """``$BATCHLANE_DEFAULT_CONTENT_TYPE``, ``…_SPLIT_TYPE``, ``…_ACCEPT`` and ``…_STRATEGY`` (unset: none)."""
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            return env.get(name, "").strip() or None

        return cls(
            content_type=get(settings.BATCHLANE_DEFAULT_CONTENT_TYPE),
            split_type=get(settings.BATCHLANE_DEFAULT_SPLIT_TYPE),
            accept=get(settings.BATCHLANE_DEFAULT_ACCEPT),
            strategy=get(settings.BATCHLANE_DEFAULT_STRATEGY),
        )


def attempt_of(attributes: Mapping[str, str] | None) -> int:
    """The attempt number a message carries (``batchlane-attempt``); 0 when absent or not a small integer."""
    raw = (attributes or {}).get(ATTEMPT_ATTRIBUTE, "")
    return int(raw) if raw.isdigit() and len(raw) <= 4 else 0


def job_name_for_attempt(message: TransformMessage, attempt: int = 0) -> str:
    """The job name for ``attempt`` of a message: ``job_name_for(message)``, plus ``-r<attempt>`` after the first.

    Deterministic (no clock): redelivering or re-sending attempt ``k`` always names the same job.
    """
    base = job_name_for(message)
    if attempt <= 0:
        return base
    suffix = f"-r{attempt}"
    return base[: MAX_JOB_NAME - len(suffix)].rstrip("-") + suffix


def build_request(
    message: TransformMessage,
    *,
    job_name: str,
    model_name: str,
    defaults: RequestDefaults | None = None,
) -> dict[str, Any]:
    """The CreateTransformJob request (boto3 shape) for a message; paths are used as the message gives them."""
    defaults = defaults or RequestDefaults()
    content_type = message.content_type or defaults.content_type
    split_type = message.split_type or defaults.split_type
    accept = message.accept or defaults.accept
    strategy = message.strategy or defaults.strategy
    transform_input: dict[str, Any] = {
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": message.input_path}}
    }
    if content_type:
        transform_input["ContentType"] = content_type
    if split_type:
        transform_input["SplitType"] = split_type
    transform_output: dict[str, Any] = {"S3OutputPath": message.output_path}
    if accept:
        transform_output["Accept"] = accept
    if split_type == "Line":
        transform_output["AssembleWith"] = "Line"
    request: dict[str, Any] = {
        "TransformJobName": job_name,
        "ModelName": model_name,
        "TransformInput": transform_input,
        "TransformOutput": transform_output,
        "TransformResources": {
            "InstanceType": message.instance_type,
            "InstanceCount": message.instance_count,
        },
    }
    if strategy:
        request["BatchStrategy"] = strategy
    return request


def retry_delay_s(receive_count: int, base_s: float, max_s: float) -> int:
    """Seconds to hide a message after its ``receive_count``-th delivery failed transiently: ``base·2^(n-1)``,
    capped at ``max_s``; 0 (release at once) when ``base_s`` is 0. Whole seconds, as SQS takes them."""
    if base_s <= 0:
        return 0
    exponent = min(max(receive_count, 1) - 1, 30)
    return int(min(max_s, base_s * (2**exponent)))
