"""From a queue message to a transform job: the CreateTransformJob request, the job's name per attempt, retry delays.

Pure functions shared by the queue worker (:mod:`batchlane.queue.worker`, local engine) and the Lambda handler
(:mod:`batchlane.aws.lambda_handler`, SageMaker), so both turn the same message into the same request and name.

* ``job_name_for_attempt(message, attempt)``: attempt 0 is ``job_name_for(message)`` (docs/queue.md); attempt
  ``k > 0`` (a re-queued failed job, see docs/automation.md) appends ``-r<k>``, shortening the base so the name still
  matches SageMaker's pattern. The attempt travels in the message attribute ``batchlane-attempt``.
* ``resolve_attempt(message, attempt, sent_at, lookup)``: the re-send rule (docs/queue.md, "Re-sending after a
  failure"): a message sent after its job ended ``Failed`` moves on to the next attempt's name; any other message
  (the one that made the job, a duplicate or a redelivery of it) finds its job as before.
* ``build_request(message, ...)``: the seed's four fields plus the optional ones, with ``RequestDefaults`` filling
  the fields the message leaves out. The defaults are the seed Lambda's own request (``RequestDefaults()``:
  text/plain lines in, JSON out, MultiRecord, 6 MB), each overridden by its ``BATCHLANE_DEFAULT_*`` variable.
  ``SplitType=Line`` gets ``AssembleWith=Line`` so every record's result is one line of the ``.out`` file.
* ``retry_delay_s(receive_count, ...)``: exponential backoff for transient failures, capped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from batchlane import settings
from batchlane.aws_names import BATCH_STRATEGIES, SPLIT_TYPES
from batchlane.errors import ValidationError
from batchlane.queue.message import MEDIA_TYPE_RE, TransformMessage, job_name_for

ATTEMPT_ATTRIBUTE = "batchlane-attempt"
MAX_JOB_NAME = 63

STRATEGIES = BATCH_STRATEGIES
# Attempts one message may walk past (each a Failed job it was sent after) before the re-send rule gives up.
MAX_RESEND_ATTEMPTS = 100


@dataclass(frozen=True)
class RequestDefaults:
    """Values for the optional request fields when a message leaves them out (None: leave the request's unset).

    ``RequestDefaults()`` is the seed Lambda's request: ``ContentType`` text/plain, ``SplitType`` Line (so
    ``AssembleWith`` Line), ``Accept`` application/json, ``BatchStrategy`` MultiRecord, ``MaxPayloadInMB`` 6.
    """

    content_type: str | None = "text/plain"
    split_type: str | None = "Line"
    accept: str | None = "application/json"
    strategy: str | None = "MultiRecord"
    max_payload_mb: int | None = 6

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
        if self.max_payload_mb is not None and (
            isinstance(self.max_payload_mb, bool) or not 0 <= self.max_payload_mb <= 100
        ):
            raise ValidationError(
                f"default max_payload_mb must be an integer 0-100, got {self.max_payload_mb!r}",
                field="max_payload_mb",
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RequestDefaults:
        """The seed's defaults, each replaced by ``$BATCHLANE_DEFAULT_CONTENT_TYPE``, ``…_SPLIT_TYPE``,
        ``…_ACCEPT``, ``…_STRATEGY`` or ``…_MAX_PAYLOAD_MB`` when that is set and not empty."""
        env = os.environ if env is None else env
        seed = cls()

        def get(name: str, default: str | None) -> str | None:
            return env.get(name, "").strip() or default

        payload = env.get(settings.BATCHLANE_DEFAULT_MAX_PAYLOAD_MB, "").strip()
        if payload and not payload.isdigit():
            raise ValidationError(
                f"{settings.BATCHLANE_DEFAULT_MAX_PAYLOAD_MB} must be an integer 0-100, got {payload!r}",
                field=settings.BATCHLANE_DEFAULT_MAX_PAYLOAD_MB,
            )
        return cls(
            content_type=get(settings.BATCHLANE_DEFAULT_CONTENT_TYPE, seed.content_type),
            split_type=get(settings.BATCHLANE_DEFAULT_SPLIT_TYPE, seed.split_type),
            accept=get(settings.BATCHLANE_DEFAULT_ACCEPT, seed.accept),
            strategy=get(settings.BATCHLANE_DEFAULT_STRATEGY, seed.strategy),
            max_payload_mb=int(payload) if payload else seed.max_payload_mb,
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


@dataclass(frozen=True)
class JobState:
    """What the re-send rule needs to know of an existing job: its status and when it ended (None: not yet)."""

    status: str
    ended_at: datetime | float | None = None

    def failed_before(self, sent_at: float | None) -> bool:
        """Whether the job ended Failed before a message sent at ``sent_at`` (Unix seconds; None: unknown, no)."""
        if self.status != "Failed" or sent_at is None or self.ended_at is None:
            return False
        ended = self.ended_at.timestamp() if isinstance(self.ended_at, datetime) else float(self.ended_at)
        return sent_at > ended


def resolve_attempt(
    message: TransformMessage,
    attempt: int,
    sent_at: float | None,
    lookup: Callable[[str], JobState | None],
) -> tuple[int, str]:
    """The attempt and job name a message runs as, under the re-send rule (docs/queue.md).

    Starting at ``attempt`` (the message's ``batchlane-attempt``), every attempt whose job ended ``Failed`` before
    the message was sent (``sent_at``, the queue's send time) is passed over: such a message is a re-send after a
    failure, not the delivery that made the job. The first attempt with no job, or with a job that is not such a
    failure (InProgress, Completed, Stopped, or Failed after the message was sent), is the answer; so duplicates and
    redeliveries keep finding their job, and a re-send after ``Completed`` finds the Completed job. ``lookup(name)``
    describes the job of that name (None: there is none). Deterministic for a given message and job history.
    """
    for current in range(attempt, attempt + MAX_RESEND_ATTEMPTS):
        name = job_name_for_attempt(message, current)
        state = lookup(name)
        if state is None or not state.failed_before(sent_at):
            return current, name
    raise ValidationError(
        f"job {job_name_for_attempt(message, attempt)} has failed {MAX_RESEND_ATTEMPTS} times; send the request "
        "with a new idempotency_key (or job_name) to start over",
        field="idempotency_key",
    )


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
    if defaults.max_payload_mb is not None:
        request["MaxPayloadInMB"] = defaults.max_payload_mb
    return request


def retry_delay_s(receive_count: int, base_s: float, max_s: float) -> int:
    """Seconds to hide a message after its ``receive_count``-th delivery failed transiently: ``base·2^(n-1)``,
    capped at ``max_s``; 0 (release at once) when ``base_s`` is 0. Whole seconds, as SQS takes them."""
    if base_s <= 0:
        return 0
    exponent = min(max(receive_count, 1) - 1, 30)
    return int(min(max_s, base_s * (2**exponent)))
