"""The Lambda function of the seed's design: SQS event source mapping → validate → model → SageMaker transform job.

``handler(event, context)`` takes an SQS batch (``FunctionResponseTypes=["ReportBatchItemFailures"]``, see
``template.yaml``) and, for each record, does what the queue worker does with the local engine, against the
SageMaker API instead (docs/reliability.md):

* the queue worker's own path, ``queue.launcher.prepare_launch``: ``parse_message`` (plus: both paths must be
  ``s3://`` and the instance type an ``ml.*`` one: SageMaker runs it), the attempt and job name, the model
  (``resolve_model``, with SageMaker as the ``ModelCatalog``) and the request;
* the model: the message's ``model_name`` must exist; without one, the configured default (``BATCHLANE_MODEL_NAME``)
  is created if missing (``BATCHLANE_MODEL_IMAGE``, ``BATCHLANE_MODEL_DATA_URL``, ``BATCHLANE_EXECUTION_ROLE_ARN``)
  and, if it exists, must have that image, model data and role: a drifted model is a conflict, never silently
  reused; with no ``BATCHLANE_MODEL_NAME``, a model named "default" must exist;
* the request: ``build_request`` with the seed's defaults (text/plain, Line, application/json, AssembleWith Line,
  MultiRecord, 6 MB), each overridden by its ``BATCHLANE_DEFAULT_*`` variable and by the message's own fields;
* the job, named by ``resolve_attempt`` (not from a clock; a message sent after its job ended Failed moves on to
  the next attempt, ``<name>-r<k>``, since SageMaker never frees a job name): ``DescribeTransformJob`` first (moto,
  unlike SageMaker, accepts a duplicate name and replaces the job), the input prefix checked only for a new job,
  then ``CreateTransformJob``; ``ResourceInUse`` (a concurrent duplicate) and an existing job are success when every
  field we send matches, a conflict otherwise.

Outcomes per record: started or already there → success (SQS deletes it); transient (throttling, limits, network,
SageMaker 5xx) → listed in ``batchItemFailures``, so only that record is redelivered; permanent (validation,
conflict, missing model or input) → sent to ``BATCHLANE_DLQ_URL`` with the reason in message attributes (as
``SqsQueue.dead_letter`` does, so ``batchlane queue dlq list`` shows it) and reported as success. Without a
``BATCHLANE_DLQ_URL``, or when that send fails, a permanent failure is logged and reported as a failure: the queue's
redrive policy parks it after ``maxReceiveCount`` receives, so nothing is dropped. The handler never raises (a raised
exception would fail the whole batch).

A job that fails *after* it started is re-queued by ``aws.retry_handler`` (an EventBridge rule on SageMaker's
"Transform Job State Change" to ``Failed``): every job this function creates carries its message and attempt in its
tags (``aws.job_tags``), and the tags are not part of the spec compared with an existing job.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from batchlane import aws_names, settings, spec_diff
from batchlane.aws.job_tags import launch_tags
from batchlane.aws.sagemaker_api import call, describe, sagemaker_client
from batchlane.errors import BatchlaneError, Conflict, NotFound, ValidationError
from batchlane.queue.launcher import JobState, RequestDefaults, prepare_launch
from batchlane.queue.message import (
    TransformMessage,
    check_input_exists,
    is_permanent,
    split_path,
)
from batchlane.queue.sqs import (
    ATTR_ATTEMPTS,
    ATTR_ORIGINAL_ID,
    ATTR_REASON,
    ATTR_SENT_AT,
    ATTR_SOURCE,
    MAX_REASON_CHARS,
)

log = logging.getLogger(__name__)

CONFIG_VARIABLES = (
    settings.BATCHLANE_MODEL_NAME,
    settings.BATCHLANE_MODEL_IMAGE,
    settings.BATCHLANE_MODEL_DATA_URL,
    settings.BATCHLANE_EXECUTION_ROLE_ARN,
    settings.BATCHLANE_DLQ_URL,
    settings.BATCHLANE_DEFAULT_CONTENT_TYPE,
    settings.BATCHLANE_DEFAULT_SPLIT_TYPE,
    settings.BATCHLANE_DEFAULT_ACCEPT,
    settings.BATCHLANE_DEFAULT_STRATEGY,
    settings.BATCHLANE_DEFAULT_MAX_PAYLOAD_MB,
    settings.AWS_ENDPOINT_URL_SAGEMAKER,
    settings.AWS_ENDPOINT_URL_SQS,
    settings.AWS_ENDPOINT_URL_S3,
    settings.AWS_ENDPOINT_URL,
    settings.AWS_REGION,
    settings.AWS_DEFAULT_REGION,
)


@dataclass(frozen=True)
class LambdaConfig:
    """The function's settings, from its environment (names in ``batchlane.settings``)."""

    model_name: str | None = None
    model_image: str | None = None
    model_data_url: str | None = None
    role_arn: str | None = None
    dlq_url: str | None = None
    defaults: RequestDefaults = field(default_factory=RequestDefaults)

    def __post_init__(self) -> None:
        if self.model_name is not None and aws_names.model_name_problem(self.model_name):
            raise ValidationError(
                f"{settings.BATCHLANE_MODEL_NAME}={self.model_name!r} is not a SageMaker model name",
                field=settings.BATCHLANE_MODEL_NAME,
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LambdaConfig:
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            return env.get(name, "").strip() or None

        return cls(
            model_name=get(settings.BATCHLANE_MODEL_NAME),
            model_image=get(settings.BATCHLANE_MODEL_IMAGE),
            model_data_url=get(settings.BATCHLANE_MODEL_DATA_URL),
            role_arn=get(settings.BATCHLANE_EXECUTION_ROLE_ARN),
            dlq_url=get(settings.BATCHLANE_DLQ_URL),
            defaults=RequestDefaults.from_env(env),
        )

    def wanted_model(self, *, complete: bool = True) -> dict[str, Any]:
        """The default model as configured, in CreateModel's shape (without ModelName). ``complete``: for a create,
        so image and model data must be set (ValidationError naming what is not); else only what is set."""
        missing = [
            name
            for name, value in (
                (settings.BATCHLANE_MODEL_IMAGE, self.model_image),
                (settings.BATCHLANE_MODEL_DATA_URL, self.model_data_url),
            )
            if not value
        ]
        if complete and missing:
            raise ValidationError(
                f"model {self.model_name} does not exist and the function cannot create it: set "
                + " and ".join(missing),
                field="model_name",
            )
        container = {"Image": self.model_image, "ModelDataUrl": self.model_data_url}
        wanted: dict[str, Any] = {"PrimaryContainer": {k: v for k, v in container.items() if v}}
        if self.role_arn:
            wanted["ExecutionRoleArn"] = self.role_arn
        return wanted


class SageMakerLauncher:
    """Starts one SageMaker transform job per valid message; ``handle(event)`` is the Lambda's work."""

    def __init__(
        self,
        config: LambdaConfig,
        *,
        sagemaker: Any = None,
        sqs: Any = None,
        env: Mapping[str, str] | None = None,
        check_inputs: bool = True,
    ) -> None:
        self.config = config
        self.env = os.environ if env is None else env
        self.sagemaker = sagemaker if sagemaker is not None else sagemaker_client(self.env)
        self._sqs = sqs
        self.check_inputs = check_inputs

    @property
    def sqs(self) -> Any:
        if self._sqs is None:
            from batchlane.queue.sqs import sqs_client

            self._sqs = sqs_client(self.env, queue_url=self.config.dlq_url)
        return self._sqs

    # -- the batch -------------------------------------------------------------------------------------------
    def handle(self, event: Mapping[str, Any]) -> dict[str, list[dict[str, str]]]:
        """Process every record; the response names the records SQS should deliver again."""
        failures: list[str] = []
        for record in event.get("Records") or []:
            message_id = record.get("messageId")
            if not message_id:
                log.error("record without a messageId cannot be acknowledged or reported: %r", record)
                continue
            try:
                job = self.launch(record.get("body") or "", _message_attributes(record), _sent_at(record))
            except Exception as exc:
                reason = str(exc) or type(exc).__name__
                if is_permanent(exc):
                    parked = self._park(record, reason)
                    _report(message_id, "dead_lettered" if parked else "permanent_error", reason=reason)
                    if not parked:
                        failures.append(message_id)
                else:
                    if not isinstance(exc, BatchlaneError):
                        log.exception("message %s: unexpected error", message_id)
                    _report(message_id, "retry", reason=reason)
                    failures.append(message_id)
                continue
            _report(message_id, "started", job=job)
        return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failures]}

    def launch(
        self, body: str, attributes: Mapping[str, str] | None = None, sent_at: float | None = None
    ) -> str:
        """Validate one message and make sure its job exists; returns the job name. Raises with a reason.

        ``sent_at``: when the message was sent (Unix seconds; the record's ``SentTimestamp``), for the re-send rule.
        """
        described: dict[str, dict[str, Any] | None] = {}

        def lookup(job_name: str) -> JobState | None:
            found = described[job_name] = describe(
                self.sagemaker, "describe_transform_job", TransformJobName=job_name
            )
            if found is None:
                return None
            return JobState(str(found.get("TransformJobStatus")), found.get("TransformEndTime"))

        launch = prepare_launch(
            body,
            attributes=attributes,
            sent_at=sent_at,
            lookup=lookup,
            catalog=_SageMakerModels(self),
            default_model=self.config.model_name or settings.DEFAULT_MODEL_NAME,
            defaults=self.config.defaults,
            check=self._check_for_sagemaker,
        )
        message, name, request = launch.message, launch.name, launch.request
        existing = described[name]
        if existing is None:
            if self.check_inputs:
                check_input_exists(message.input_path, self.env)
            # The tags carry the message, so the retry function can re-send it if the job fails later.
            tags = launch_tags(message.to_body(), launch.attempt)
            try:
                call(self.sagemaker, "create_transform_job", **request, Tags=tags)
                return name
            except Conflict:  # a concurrent duplicate created it first
                existing = describe(self.sagemaker, "describe_transform_job", TransformJobName=name)
                if existing is None:
                    raise
        changed = spec_diff.differences(
            existing, {k: v for k, v in request.items() if k != "TransformJobName"}
        )
        if changed:
            raise Conflict(
                f"transform job {name} already exists with a different spec: {'; '.join(changed)}",
                field="TransformJobName",
            )
        return name

    @staticmethod
    def _check_for_sagemaker(message: TransformMessage) -> None:
        for field_name in ("input_path", "output_path"):
            scheme = split_path(getattr(message, field_name), field_name)[0]
            if scheme != "s3":
                raise ValidationError(
                    f"{field_name}: SageMaker reads and writes only s3:// URIs, got {getattr(message, field_name)!r}",
                    field=field_name,
                )
        if not message.instance_type.startswith("ml."):
            raise ValidationError(
                f"instance_type: SageMaker needs an ml.* instance type, got {message.instance_type!r}",
                field="instance_type",
            )

    # -- parking permanent failures ----------------------------------------------------------------------------
    def _park(self, record: Mapping[str, Any], reason: str) -> bool:
        """Send the record to the dead-letter queue with its reason; False when that is not possible."""
        if not self.config.dlq_url:
            log.error(
                "message %s: permanent error and no %s to park it in; reporting it as failed so the queue's "
                "redrive policy parks it: %s",
                record.get("messageId"),
                settings.BATCHLANE_DLQ_URL,
                reason,
            )
            return False
        system = record.get("attributes") or {}
        attributes = {
            ATTR_REASON: reason[:MAX_REASON_CHARS],
            ATTR_ATTEMPTS: str(system.get("ApproximateReceiveCount", "1")),
            ATTR_SOURCE: str(record.get("eventSourceARN", "")).rsplit(":", 1)[-1] or "unknown",
            ATTR_SENT_AT: str(_sent_at(record) or 0),
            ATTR_ORIGINAL_ID: str(record.get("messageId")),
        }
        try:
            self.sqs.send_message(
                QueueUrl=self.config.dlq_url,
                MessageBody=record.get("body") or "(empty body)",
                MessageAttributes={
                    k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()
                },
            )
        except Exception:
            log.exception("message %s: could not send it to the dead-letter queue", record.get("messageId"))
            return False
        return True


class _SageMakerModels:
    """SageMaker's models as the Lambda's ``ModelCatalog`` (``queue.launcher.resolve_model``, the worker's rule)."""

    def __init__(self, launcher: SageMakerLauncher) -> None:
        self.launcher = launcher

    def has_default_spec(self) -> bool:
        return self.launcher.config.model_name is not None

    def ensure_default(self, name: str) -> None:
        config = self.launcher.config
        existing = describe(self.launcher.sagemaker, "describe_model", ModelName=name)
        if existing is None:
            try:
                call(self.launcher.sagemaker, "create_model", ModelName=name, **config.wanted_model())
                return
            except Conflict:  # another invocation created it first: compare with that one
                existing = describe(self.launcher.sagemaker, "describe_model", ModelName=name)
                if existing is None:
                    raise
        changed = spec_diff.differences(existing, config.wanted_model(complete=False))
        if changed:
            raise Conflict(
                f"model {name} already exists with a different spec: {'; '.join(changed)}",
                field="model_name",
            )

    def require(self, name: str, *, defaulted: bool) -> None:
        if describe(self.launcher.sagemaker, "describe_model", ModelName=name) is not None:
            return
        if defaulted:
            raise NotFound(
                f"the message has no model_name, {settings.BATCHLANE_MODEL_NAME} is not set, and the default "
                f"model {name} does not exist in SageMaker",
                field="model_name",
            )
        raise NotFound(f"model {name} does not exist in SageMaker", field="model_name")


def _sent_at(record: Mapping[str, Any]) -> float | None:
    """When SQS accepted the record's message (``attributes.SentTimestamp``, epoch milliseconds), in seconds."""
    sent_ms = str((record.get("attributes") or {}).get("SentTimestamp") or "")
    return int(sent_ms) / 1000 if sent_ms.isdigit() else None


def _message_attributes(record: Mapping[str, Any]) -> dict[str, str]:
    """String message attributes of an SQS event record (``messageAttributes.NAME.stringValue``)."""
    raw = record.get("messageAttributes") or {}
    return {k: v["stringValue"] for k, v in raw.items() if isinstance(v, Mapping) and "stringValue" in v}


def _report(message_id: str, outcome: str, **fields: Any) -> None:
    """One JSON line per record (CloudWatch Logs Insights can filter on ``outcome``)."""
    log.info(json.dumps({"messageId": message_id, "outcome": outcome, **fields}))


_launchers: dict[tuple[str | None, ...], SageMakerLauncher] = {}
_launchers_lock = threading.Lock()


def handler(event: Mapping[str, Any], context: Any) -> dict[str, list[dict[str, str]]]:
    """The Lambda entry point (``batchlane.aws.lambda_handler.handler``); clients are reused across invocations."""
    key = tuple(os.environ.get(name) for name in CONFIG_VARIABLES)
    try:
        with _launchers_lock:
            launcher = _launchers.get(key)
            if launcher is None:
                launcher = SageMakerLauncher(LambdaConfig.from_env(), env=dict(os.environ))
                _launchers.clear()
                _launchers[key] = launcher
    except Exception:
        # A misconfigured function: every record is retried (and parked by the redrive policy) until it is fixed.
        log.exception("the function is misconfigured; failing the whole batch")
        ids = [r.get("messageId") for r in event.get("Records") or [] if r.get("messageId")]
        return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in ids]}
    return launcher.handle(event)
