"""Amazon SQS (or any endpoint that speaks its API, such as moto's server) behind the Queue protocol.

The endpoint is ``$AWS_ENDPOINT_URL_SQS``, else ``$AWS_ENDPOINT_URL``, else the origin of a non-AWS queue URL (a
moto or LocalStack URL names its server), else AWS itself. boto3 is imported only when a client is built.

Where SQS differs from the embedded queue (docs/queue.md has the full table):

* **No fencing.** A stale receipt may still delete or extend the message, even one another consumer now holds
  (SQS: "the request will succeed, but the message might not be deleted"; moto deletes it).
* SQS moves a message to the dead-letter queue itself after ``maxReceiveCount`` receives and records no reason;
  ``nack(reason=…)`` cannot be stored (messages are immutable), so such dead letters say only that the limit was
  exceeded. ``dead_letter(message, reason)`` sends a copy with the reason as a message attribute and deletes the
  original, so those carry the reason, the attempts and the source queue.
* Retention expiry deletes silently (SQS gives no hook); ``ensure_queue`` gives the dead-letter queue the maximum
  retention (14 days) and ``attributes()['oldest_age_s']`` is None (SQS publishes it only as a CloudWatch metric).
* Redrive receives from the dead-letter queue, sends the body back and deletes the dead letter (moto has no
  ``StartMessageMoveTask``): redriven messages are new messages with new ids, so their receive count starts at 0.
* Listing dead letters has to receive them (SQS cannot peek): it hides them briefly and releases them again, and
  each listing adds one to their approximate receive count.
* ``dedup_id`` is SQS's MessageDeduplicationId on FIFO queues; on standard queues it is only recorded as the
  ``batchlane-dedup-id`` attribute (duplicates are then stopped by the deterministic job name).

Dead-lettering, listing and redrive are :mod:`batchlane.queue.sqs_deadletter`; the batch actions
:mod:`~batchlane.queue.sqs_batch`; the attributes batchlane sets :mod:`~batchlane.queue.sqs_attributes`; how SQS's
errors become batchlane's :mod:`~batchlane.queue.sqs_errors`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from batchlane import settings
from batchlane.errors import NotFound, ValidationError
from batchlane.queue.base import (
    DEFAULT_MAX_RECEIVE_COUNT,
    DEFAULT_RETENTION_S,
    DEFAULT_VISIBILITY_TIMEOUT_S,
    MAX_DELAY_S,
    MAX_MESSAGES_PER_RECEIVE,
    MAX_VISIBILITY_TIMEOUT_S,
    MAX_WAIT_S,
    Message,
    Receipt,
    SendEntry,
    check_range,
    dead_letter_name,
    receipt_of,
    validate_body,
    validate_queue_name,
)
from batchlane.queue.sqs_attributes import (
    ATTR_ATTEMPTS,
    ATTR_DEDUP_ID,
    ATTR_ORIGINAL_ID,
    ATTR_REASON,
    ATTR_REDRIVE_COUNT,
    ATTR_REDRIVEN_FROM,
    ATTR_SENT_AT,
    ATTR_SOURCE,
    DEAD_LETTER_ATTRS,
    MAX_ATTRIBUTES,
    MAX_REASON_CHARS,
    string_attributes,
)
from batchlane.queue.sqs_batch import SqsBatchActions
from batchlane.queue.sqs_deadletter import (
    DEAD_LETTER_RETENTION_S,
    MAX_REDRIVE,
    PEEK_VISIBILITY_S,
    REDRIVE_VISIBILITY_S,
    SqsDeadLetters,
)
from batchlane.queue.sqs_errors import NOT_FOUND_CODES, translate_errors

__all__ = [
    "ATTR_ATTEMPTS",
    "ATTR_DEDUP_ID",
    "ATTR_ORIGINAL_ID",
    "ATTR_REASON",
    "ATTR_REDRIVEN_FROM",
    "ATTR_REDRIVE_COUNT",
    "ATTR_SENT_AT",
    "ATTR_SOURCE",
    "DEAD_LETTER_ATTRS",
    "DEAD_LETTER_RETENTION_S",
    "MAX_ATTRIBUTES",
    "MAX_REASON_CHARS",
    "MAX_REDRIVE",
    "PEEK_VISIBILITY_S",
    "REDRIVE_VISIBILITY_S",
    "SqsQueue",
    "ensure_queue",
    "sqs_client",
]

log = logging.getLogger(__name__)

_RECEIPT_CACHE = 10_000  # received messages remembered so dead_letter(receipt_string) can find the body
_AWS_HOST = re.compile(r"^sqs[.-]([a-z0-9-]+)\.amazonaws\.com(\.cn)?$|^([a-z0-9-]+)\.queue\.amazonaws\.com$")


def sqs_client(env: Mapping[str, str] | None = None, *, queue_url: str | None = None) -> Any:
    """A boto3 SQS client for the configured endpoint (see the module docstring), with a read timeout above 20 s."""
    import boto3
    from botocore.config import Config

    env = os.environ if env is None else env
    endpoint = env.get(settings.AWS_ENDPOINT_URL_SQS) or env.get(settings.AWS_ENDPOINT_URL) or None
    region = env.get(settings.AWS_REGION) or env.get(settings.AWS_DEFAULT_REGION) or None
    if queue_url:
        parts = urlsplit(queue_url)
        aws = _AWS_HOST.match(parts.hostname or "")
        if aws:
            region = region or aws.group(1) or aws.group(3)
        elif endpoint is None and parts.scheme in ("http", "https"):
            endpoint = f"{parts.scheme}://{parts.netloc}"
    config = Config(
        connect_timeout=10,
        read_timeout=MAX_WAIT_S + 10,  # long polls hold the request up to 20 s
        retries={"mode": "standard", "max_attempts": 3},
    )
    credentials = {
        "aws_access_key_id": env.get(settings.AWS_ACCESS_KEY_ID) or None,
        "aws_secret_access_key": env.get(settings.AWS_SECRET_ACCESS_KEY) or None,
        "aws_session_token": env.get(settings.AWS_SESSION_TOKEN) or None,
    }
    session = boto3.session.Session(
        region_name=region or "us-east-1", **{k: v for k, v in credentials.items() if v}
    )
    return session.client("sqs", endpoint_url=endpoint, config=config)


class SqsQueue(SqsBatchActions, SqsDeadLetters):
    """One SQS queue, by URL. Build it with :meth:`from_name`, :func:`ensure_queue` or ``open_queue``."""

    def __init__(self, url: str, *, client: Any = None, env: Mapping[str, str] | None = None) -> None:
        self.url = url
        self.name = url.rstrip("/").rsplit("/", 1)[-1]
        self._env = env
        self._client = client if client is not None else sqs_client(env, queue_url=url)
        self._dlq: SqsQueue | None = None
        self._dlq_resolved = False
        self._received: OrderedDict[str, Message] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_name(cls, name: str, *, env: Mapping[str, str] | None = None, client: Any = None) -> SqsQueue:
        """The existing queue ``name`` (NotFound, with how to create it, if there is none)."""
        validate_queue_name(name)
        client = client if client is not None else sqs_client(env)
        try:
            with translate_errors(f"SQS queue {name}"):
                url = client.get_queue_url(QueueName=name)["QueueUrl"]
        except NotFound:
            raise NotFound(
                f"SQS queue {name!r} does not exist; create it with `batchlane queue create --queue sqs://{name}`",
                field="queue",
            ) from None
        return cls(url, client=client, env=env)

    def __repr__(self) -> str:
        return f"SqsQueue({self.url!r})"

    def close(self) -> None:
        self._client.close()

    @property
    def fifo(self) -> bool:
        return self.name.endswith(".fifo")

    # -- sending and receiving -------------------------------------------------------------------------------------

    def send(
        self,
        body: str,
        *,
        dedup_id: str | None = None,
        delay_s: int = 0,
        attributes: Mapping[str, str] | None = None,
    ) -> str:
        """SendMessage; ``dedup_id`` is the MessageDeduplicationId on FIFO queues, an attribute otherwise."""
        params = self._send_params(SendEntry(body, dedup_id, delay_s, attributes))
        with translate_errors(f"send to {self.name}"):
            return self._client.send_message(QueueUrl=self.url, **params)["MessageId"]

    def _send_params(self, entry: SendEntry) -> dict[str, Any]:
        """SendMessage's parameters (without QueueUrl) for ``entry``, checked as SQS would check them."""
        validate_body(entry.body)
        check_range(entry.delay_s, 0, MAX_DELAY_S, "delay_s")
        attrs = dict(entry.attributes or {})
        params: dict[str, Any] = {"MessageBody": entry.body}
        if entry.delay_s:
            params["DelaySeconds"] = int(entry.delay_s)
        if self.fifo:
            params["MessageGroupId"] = "batchlane"
            if entry.dedup_id is not None:
                params["MessageDeduplicationId"] = entry.dedup_id
        elif entry.dedup_id is not None:
            attrs[ATTR_DEDUP_ID] = entry.dedup_id
        if len(attrs) > MAX_ATTRIBUTES:
            raise ValidationError(f"SQS allows at most {MAX_ATTRIBUTES} message attributes, got {len(attrs)}")
        if attrs:
            params["MessageAttributes"] = {
                k: {"DataType": "String", "StringValue": v} for k, v in attrs.items()
            }
        return params

    def receive(
        self, max_messages: int = 1, wait_s: float = 0, visibility_timeout_s: int | None = None
    ) -> list[Message]:
        """ReceiveMessage with long polling; ``receive_count`` is SQS's ApproximateReceiveCount."""
        check_range(max_messages, 1, MAX_MESSAGES_PER_RECEIVE, "max_messages")
        check_range(wait_s, 0, MAX_WAIT_S, "wait_s")
        params: dict[str, Any] = {
            "QueueUrl": self.url,
            "MaxNumberOfMessages": int(max_messages),
            "WaitTimeSeconds": math.ceil(wait_s),
            "MessageSystemAttributeNames": ["All"],
            "MessageAttributeNames": ["All"],
        }
        if visibility_timeout_s is not None:
            check_range(visibility_timeout_s, 0, MAX_VISIBILITY_TIMEOUT_S, "visibility_timeout_s")
            params["VisibilityTimeout"] = int(visibility_timeout_s)
        with translate_errors(f"receive from {self.name}"):
            raw = self._client.receive_message(**params).get("Messages", [])
        out = []
        for item in raw:
            system = item.get("Attributes", {})
            first = system.get("ApproximateFirstReceiveTimestamp")
            message = Message(
                message_id=item["MessageId"],
                receipt=item["ReceiptHandle"],
                body=item["Body"],
                receive_count=int(system.get("ApproximateReceiveCount", "1")),
                sent_at=int(system.get("SentTimestamp", "0")) / 1000,
                first_received_at=int(first) / 1000 if first else None,
                attributes=string_attributes(item),
            )
            out.append(message)
            with self._lock:
                self._received[message.receipt] = message
                while len(self._received) > _RECEIPT_CACHE:
                    self._received.popitem(last=False)
        return out

    def delete(self, receipt: Receipt) -> None:
        """DeleteMessage. Not fenced: SQS may accept a stale receipt (see the module docstring)."""
        handle = receipt_of(receipt)
        with translate_errors(f"delete from {self.name}"):
            self._client.delete_message(QueueUrl=self.url, ReceiptHandle=handle)
        with self._lock:
            self._received.pop(handle, None)

    def change_visibility(self, receipt: Receipt, timeout_s: int, *, reason: str | None = None) -> None:
        """ChangeMessageVisibility; ``reason`` is only logged (SQS messages cannot carry it)."""
        check_range(timeout_s, 0, MAX_VISIBILITY_TIMEOUT_S, "timeout_s")
        if reason:
            log.info("queue %s: message released or delayed %ss: %s", self.name, timeout_s, reason)
        with translate_errors(f"change visibility on {self.name}"):
            self._client.change_message_visibility(
                QueueUrl=self.url, ReceiptHandle=receipt_of(receipt), VisibilityTimeout=int(timeout_s)
            )

    def nack(self, receipt: Receipt, reason: str | None = None) -> None:
        """Release the message for redelivery now."""
        self.change_visibility(receipt, 0, reason=reason)

    # -- inspection ------------------------------------------------------------------------------------------------

    def _attributes(self, names: list[str]) -> dict[str, str]:
        with translate_errors(f"attributes of {self.name}"):
            return self._client.get_queue_attributes(QueueUrl=self.url, AttributeNames=names).get(
                "Attributes", {}
            )

    def _redrive_policy(self, attrs: Mapping[str, str]) -> dict[str, Any] | None:
        raw = attrs.get("RedrivePolicy")
        return json.loads(raw) if raw else None

    @property
    def dead_letter_queue(self) -> SqsQueue | None:
        """The queue named by this queue's RedrivePolicy, or None."""
        if not self._dlq_resolved:
            policy = self._redrive_policy(self._attributes(["RedrivePolicy"]))
            if policy:
                name = str(policy["deadLetterTargetArn"]).rsplit(":", 1)[-1]
                with translate_errors(f"dead-letter queue {name}"):
                    url = self._client.get_queue_url(QueueName=name)["QueueUrl"]
                self._dlq = SqsQueue(url, client=self._client, env=self._env)
            self._dlq_resolved = True
        return self._dlq

    def attributes(self) -> dict[str, Any]:
        """GetQueueAttributes as the common keys; ``oldest_age_s`` is None (a CloudWatch metric on SQS)."""
        attrs = self._attributes(["All"])
        policy = self._redrive_policy(attrs)
        dlq = self.dead_letter_queue
        dead = None
        if dlq is not None:
            dlq_attrs = dlq._attributes(
                ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
            )
            dead = int(dlq_attrs.get("ApproximateNumberOfMessages", 0)) + int(
                dlq_attrs.get("ApproximateNumberOfMessagesNotVisible", 0)
            )
        return {
            "name": self.name,
            "url": self.url,
            "visible": int(attrs.get("ApproximateNumberOfMessages", 0)),
            "in_flight": int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
            "delayed": int(attrs.get("ApproximateNumberOfMessagesDelayed", 0)),
            "dead_letters": dead,
            "oldest_age_s": None,
            "visibility_timeout_s": int(attrs.get("VisibilityTimeout", DEFAULT_VISIBILITY_TIMEOUT_S)),
            "max_receive_count": int(policy["maxReceiveCount"]) if policy else None,
            "retention_s": int(attrs.get("MessageRetentionPeriod", DEFAULT_RETENTION_S)),
            "dead_letter_queue": dlq.name if dlq else None,
        }

    def purge(self) -> None:
        """PurgeQueue (SQS allows one per 60 s and may take that long); the count is unknown."""
        with translate_errors(f"purge {self.name}"):
            self._client.purge_queue(QueueUrl=self.url)


def _create_or_update(client: Any, name: str, attributes: dict[str, str], create_only: dict[str, str]) -> str:
    from botocore.exceptions import ClientError

    try:
        url = client.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in NOT_FOUND_CODES:
            with translate_errors(f"SQS queue {name}"):
                raise
        with translate_errors(f"create SQS queue {name}"):
            return client.create_queue(QueueName=name, Attributes={**attributes, **create_only})["QueueUrl"]
    with translate_errors(f"configure SQS queue {name}"):
        client.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    return url


def ensure_queue(
    name: str,
    *,
    visibility_timeout: int = DEFAULT_VISIBILITY_TIMEOUT_S,
    max_receive_count: int = DEFAULT_MAX_RECEIVE_COUNT,
    retention_s: int = DEFAULT_RETENTION_S,
    dead_letter_retention_s: int = DEAD_LETTER_RETENTION_S,
    env: Mapping[str, str] | None = None,
    client: Any = None,
) -> SqsQueue:
    """Create (or reconfigure) ``name`` and its dead-letter queue ``<name>-dlq`` with a RedrivePolicy.

    Defaults are the seed's: visibility 900 s, 5 receives, 4 days' retention; the dead-letter queue keeps 14 days.
    """
    validate_queue_name(name)
    check_range(visibility_timeout, 0, MAX_VISIBILITY_TIMEOUT_S, "visibility_timeout")
    check_range(max_receive_count, 1, 1000, "max_receive_count")
    # SQS's floor is 60 s; the endpoint enforces it, and moto's lower values let tests show expiry.
    check_range(retention_s, 1, 14 * 86_400, "retention_s")
    check_range(dead_letter_retention_s, 1, 14 * 86_400, "dead_letter_retention_s")
    client = client if client is not None else sqs_client(env)
    fifo = {"FifoQueue": "true"} if name.endswith(".fifo") else {}
    dlq_name = validate_queue_name(dead_letter_name(name))
    dlq_url = _create_or_update(
        client, dlq_name, {"MessageRetentionPeriod": str(dead_letter_retention_s)}, fifo
    )
    with translate_errors(f"attributes of {dlq_name}"):
        arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
    policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": str(max_receive_count)})
    attributes = {
        "VisibilityTimeout": str(visibility_timeout),
        "MessageRetentionPeriod": str(retention_s),
        "RedrivePolicy": policy,
    }
    url = _create_or_update(client, name, attributes, fifo)
    return SqsQueue(url, client=client, env=env)
