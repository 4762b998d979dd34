"""The retry function: a transform job that failed after it started gets its queue message sent again, up to a limit.

An EventBridge rule (``template.yaml``, ``JobFailedRule``) delivers SageMaker's "SageMaker Transform Job State Change"
events whose ``TransformJobStatus`` is ``Failed``. ``handler(event, context)`` reads the job's tags (``ListTags``;
``aws.job_tags``: the message the launching function started it from, and the attempt ``k``) and then:

* ``k + 1 < BATCHLANE_MAX_ATTEMPTS``: sends the message to ``BATCHLANE_QUEUE_URL`` with ``batchlane-attempt`` =
  ``k + 1``; the launching function starts it as ``<job>-r<k+1>`` (``queue.launcher.job_name_for_attempt``), so a
  duplicate event (EventBridge delivers at least once) sends a duplicate message that finds that same job;
* otherwise (or when the message was too large to tag): sends it to ``BATCHLANE_DLQ_URL`` with SageMaker's
  ``FailureReason`` in the dead-letter attributes, as the launching function parks a bad message, so
  ``batchlane queue dlq list`` shows why.

Events for jobs batchlane did not start (no ``batchlane:attempt`` tag) and for other statuses are ignored. An AWS
error raises, so Lambda's asynchronous retries deliver the event again.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from batchlane import settings
from batchlane.aws.job_tags import origin_from_tags
from batchlane.aws.sagemaker_api import call, sagemaker_client
from batchlane.errors import ValidationError
from batchlane.queue.launcher import ATTEMPT_ATTRIBUTE
from batchlane.queue.sqs import (
    ATTR_ATTEMPTS,
    ATTR_ORIGINAL_ID,
    ATTR_REASON,
    ATTR_SENT_AT,
    ATTR_SOURCE,
    MAX_REASON_CHARS,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 3
# The failed job's name, on the re-sent message (for people reading the queue; the launcher does not need it).
RETRY_OF_ATTRIBUTE = "batchlane-retry-of"


@dataclass(frozen=True)
class RetryConfig:
    """The function's settings: where to re-send, where to park, how many attempts a message gets in all."""

    queue_url: str
    dlq_url: str
    max_attempts: int = DEFAULT_MAX_ATTEMPTS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RetryConfig:
        env = os.environ if env is None else env
        missing = [
            n
            for n in (settings.BATCHLANE_QUEUE_URL, settings.BATCHLANE_DLQ_URL)
            if not env.get(n, "").strip()
        ]
        if missing:
            raise ValidationError(f"the retry function needs {' and '.join(missing)}", field=missing[0])
        raw = env.get(settings.BATCHLANE_MAX_ATTEMPTS, "").strip() or str(DEFAULT_MAX_ATTEMPTS)
        if not raw.isdigit() or int(raw) < 1:
            raise ValidationError(
                f"{settings.BATCHLANE_MAX_ATTEMPTS} must be a whole number ≥ 1, got {raw!r}",
                field=settings.BATCHLANE_MAX_ATTEMPTS,
            )
        return cls(
            env[settings.BATCHLANE_QUEUE_URL].strip(), env[settings.BATCHLANE_DLQ_URL].strip(), int(raw)
        )


class Retrier:
    """Turns one "Failed" state change event into one re-sent message or one dead letter."""

    def __init__(
        self,
        config: RetryConfig,
        *,
        sagemaker: Any = None,
        sqs: Any = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if env is None else env
        self.config = config
        self.sagemaker = sagemaker if sagemaker is not None else sagemaker_client(env)
        if sqs is None:
            from batchlane.queue.sqs import sqs_client

            sqs = sqs_client(env, queue_url=config.queue_url)
        self.sqs = sqs

    def handle(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """What was done, as ``{"outcome": "retried"|"dead_lettered"|"ignored", "job": …, …}`` (also logged)."""
        detail = event.get("detail") or {}
        name = str(detail.get("TransformJobName") or "")
        if detail.get("TransformJobStatus") != "Failed" or not name:
            return _report({"outcome": "ignored", "job": name, "why": "not a Failed transform job event"})
        arn = detail.get("TransformJobArn")
        reason = detail.get("FailureReason")
        if not arn or not reason:  # the event should carry both; DescribeTransformJob always does
            described = call(self.sagemaker, "describe_transform_job", TransformJobName=name)
            arn = arn or described["TransformJobArn"]
            reason = reason or described.get("FailureReason")
        reason = str(reason or "no FailureReason given")
        origin = origin_from_tags(self._tags(arn))
        if origin is None:
            return _report({"outcome": "ignored", "job": name, "why": "not started by batchlane's function"})
        attempt = origin.attempt + 1  # 1-based, for people
        if origin.body is not None and attempt < self.config.max_attempts:
            self.sqs.send_message(
                QueueUrl=self.config.queue_url,
                MessageBody=origin.body,
                MessageAttributes=_strings(
                    {ATTEMPT_ATTRIBUTE: str(origin.attempt + 1), RETRY_OF_ATTRIBUTE: name}
                ),
            )
            return _report({"outcome": "retried", "job": name, "attempt": attempt + 1, "reason": reason})
        why = (
            f"transform job {name} failed on attempt {attempt} of {self.config.max_attempts}: {reason}"
            if origin.body is not None
            else f"transform job {name} failed: {reason}; its message was too large to keep in the job's tags, "
            "so send it again yourself"
        )
        self.sqs.send_message(
            QueueUrl=self.config.dlq_url,
            MessageBody=origin.body or json.dumps({"failed_job": name}),
            MessageAttributes=_strings(
                {
                    ATTR_REASON: why[:MAX_REASON_CHARS],
                    ATTR_ATTEMPTS: str(attempt),
                    ATTR_SOURCE: self.config.queue_url.rstrip("/").rsplit("/", 1)[-1],
                    ATTR_SENT_AT: str(time.time()),
                    ATTR_ORIGINAL_ID: name,
                }
            ),
        )
        return _report({"outcome": "dead_lettered", "job": name, "attempt": attempt, "reason": reason})

    def _tags(self, arn: str) -> list[dict[str, str]]:
        tags: list[dict[str, str]] = []
        token: str | None = None
        while True:
            page = call(
                self.sagemaker, "list_tags", ResourceArn=arn, **({"NextToken": token} if token else {})
            )
            tags.extend(page.get("Tags") or [])
            token = page.get("NextToken")
            if not token:
                return tags


def _strings(values: Mapping[str, str]) -> dict[str, dict[str, str]]:
    return {k: {"DataType": "String", "StringValue": v} for k, v in values.items()}


def _report(outcome: dict[str, Any]) -> dict[str, Any]:
    log.info(json.dumps(outcome))
    return outcome


_retriers: dict[tuple[str | None, ...], Retrier] = {}


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point (``batchlane.aws.retry_handler.handler``); clients are reused across invocations."""
    key = tuple(
        os.environ.get(n)
        for n in (
            settings.BATCHLANE_QUEUE_URL,
            settings.BATCHLANE_DLQ_URL,
            settings.BATCHLANE_MAX_ATTEMPTS,
            settings.AWS_ENDPOINT_URL,
            settings.AWS_ENDPOINT_URL_SQS,
            settings.AWS_ENDPOINT_URL_SAGEMAKER,
        )
    )
    retrier = _retriers.get(key)
    if retrier is None:
        retrier = Retrier(RetryConfig.from_env(), env=dict(os.environ))
        _retriers.clear()
        _retriers[key] = retrier
    return retrier.handle(event)
