"""From a queue message to a transform job: the CreateTransformJob request, the job's name per attempt, retry delays.

Pure functions shared by the queue worker (:mod:`batchlane.queue.worker`, local engine) and the Lambda handler
(:mod:`batchlane.aws.lambda_handler`, SageMaker), so both turn the same message into the same request and name.

* ``job_name_for_attempt(message, attempt)``: attempt 0 is ``job_name_for(message)`` (docs/queue.md); attempt
  ``k > 0`` (a re-queued failed job, see docs/automation.md) appends ``-r<k>``, shortening the base so the name still
  matches SageMaker's pattern. The attempt travels in the message attribute ``batchlane-attempt``.
* ``resolve_attempt(message, attempt, sent_at, lookup)``: the re-send rule (docs/queue.md, "Re-sending after a
  failure"): a message sent after its job ended ``Failed`` moves on to the next attempt's name; any other message
  (the one that made the job, a duplicate or a redelivery of it) finds its job as before.
* ``prepare_launch(body, ...)``: the whole path from a message body to ``Launch`` (attempt, job name, request),
  with ``resolve_model`` choosing the model through a ``ModelCatalog`` (the worker's job store, or SageMaker).
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
from typing import Any, Protocol

from batchlane import settings
from batchlane.aws_names import BATCH_STRATEGIES, SPLIT_TYPES
from batchlane.engines.request import build_request as request_from_fields
from batchlane.errors import ValidationError
from batchlane.jobs.naming import attempt_name
from batchlane.queue.message import MEDIA_TYPE_RE, TransformMessage, job_name_for, parse_message

ATTEMPT_ATTRIBUTE = "batchlane-attempt"
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
    return attempt_name(job_name_for(message), attempt)


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
    """The CreateTransformJob request (boto3 shape) for a message, through the one request builder
    (``engines.request.build_request``); paths are used as the message gives them."""
    defaults = defaults or RequestDefaults()
    split_type = message.split_type or defaults.split_type
    return request_from_fields(
        {
            "TransformJobName": job_name,
            "ModelName": model_name,
            "TransformInput.DataSource.S3DataSource.S3DataType": "S3Prefix",
            "TransformInput.DataSource.S3DataSource.S3Uri": message.input_path,
            "TransformInput.ContentType": message.content_type or defaults.content_type,
            "TransformInput.SplitType": split_type,
            "TransformOutput.S3OutputPath": message.output_path,
            "TransformOutput.Accept": message.accept or defaults.accept,
            "TransformOutput.AssembleWith": "Line" if split_type == "Line" else None,
            "TransformResources.InstanceType": message.instance_type,
            "TransformResources.InstanceCount": message.instance_count,
            "BatchStrategy": message.strategy or defaults.strategy,
            "MaxPayloadInMB": defaults.max_payload_mb,
        }
    )


class ModelCatalog(Protocol):
    """Where a launcher's models live (the job store's registry, or SageMaker), for ``resolve_model``."""

    def has_default_spec(self) -> bool:
        """Whether the default model has a configured spec, so it may be created when missing."""
        ...

    def ensure_default(self, name: str) -> None:
        """Create the default model from its spec if missing; ``Conflict`` naming the differences if it exists
        with another spec."""
        ...

    def require(self, name: str, *, defaulted: bool) -> None:
        """``NotFound`` (saying how to fix it) unless model ``name`` exists; ``defaulted``: the message named no
        model, so ``name`` is the launcher's default."""
        ...


def resolve_model(requested: str | None, default: str, catalog: ModelCatalog) -> str:
    """The model a message runs with, the same rule for the queue worker and the Lambda handler: the message's
    ``model_name``, else ``default``. The default, when it has a spec, is created if missing (the same name with
    another spec is a ``Conflict``); any other model must exist."""
    if catalog.has_default_spec() and (requested is None or requested.lower() == default.lower()):
        catalog.ensure_default(default)
        return default
    name = requested or default
    catalog.require(name, defaulted=requested is None)
    return name


@dataclass(frozen=True)
class Launch:
    """A message made ready for an engine: its attempt, job name and CreateTransformJob request."""

    message: TransformMessage
    attempt: int
    name: str
    request: dict[str, Any]


def prepare_launch(
    body: str | bytes,
    *,
    attributes: Mapping[str, str] | None,
    sent_at: float | None,
    lookup: Callable[[str], JobState | None],
    catalog: ModelCatalog,
    default_model: str,
    defaults: RequestDefaults | None = None,
    check: Callable[[TransformMessage], None] | None = None,
) -> Launch:
    """The one path from a queue message to a request, shared by the queue worker and the Lambda handler:
    ``parse_message`` (then ``check``, the engine's own limits), ``resolve_attempt`` (``lookup`` describes a job
    by name), ``resolve_model``, ``build_request``. Raises with a reason; ``is_permanent`` says whether to retry."""
    message = parse_message(body)
    if check is not None:
        check(message)
    attempt, name = resolve_attempt(message, attempt_of(attributes), sent_at, lookup)
    model_name = resolve_model(message.model_name, default_model, catalog)
    request = build_request(message, job_name=name, model_name=model_name, defaults=defaults)
    return Launch(message, attempt, name, request)


def retry_delay_s(receive_count: int, base_s: float, max_s: float) -> int:
    """Seconds to hide a message after its ``receive_count``-th delivery failed transiently: ``base·2^(n-1)``,
    capped at ``max_s``; 0 (release at once) when ``base_s`` is 0. Whole seconds, as SQS takes them."""
    if base_s <= 0:
        return 0
    exponent = min(max(receive_count, 1) - 1, 30)
    return int(min(max_s, base_s * (2**exponent)))
