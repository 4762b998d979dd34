"""The SQS actions of the control plane over the embedded queue file (``batchlane.queue.sqlite``).

``CreateQueue``, ``GetQueueUrl``, ``ListQueues``, ``SendMessage``, ``ReceiveMessage`` (long polling),
``DeleteMessage``, ``ChangeMessageVisibility`` and ``GetQueueAttributes`` (the batch actions and ``PurgeQueue`` are
``sqs_batch``), in both protocols botocore has used for SQS: AWS JSON 1.0 (``X-Amz-Target: AmazonSQS.<Action>``,
botocore ≥ 1.31.64) and the older query protocol (form-encoded ``Action=…``, XML answers). ``sqs_query`` turns query
parameters into the JSON shapes and renders results as XML, so each action is written once.

Queue URLs are ``<endpoint>/<account>/<name>``, the endpoint being the one the client called (its ``Host``
header, which the app has checked). Every queue in the server's embedded queue file is served; a name the file does
not hold is ``QueueDoesNotExist`` (``CreateQueue`` makes it, with its ``<name>-dlq``).

Differences from SQS: message attributes are strings (``String``/``Number`` data types are accepted and come back as
``String``; ``Binary`` is refused); receipts are fenced (a stale receipt is refused with ``ReceiptHandleIsInvalid``
instead of acting on someone else's lease, see docs/queue.md); queues cannot be deleted through this API.
Errors are SQS's (``sqs_errors``), so boto3 raises ``sqs.exceptions.QueueDoesNotExist`` as it does against AWS.
"""

from __future__ import annotations

import hashlib
import json
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from batchlane.api.sqs_batch import SqsBatchActions
from batchlane.api.sqs_errors import error_of, invalid_parameter, sqs_error
from batchlane.queue.base import (
    MAX_BODY_BYTES,
    MAX_DELAY_S,
    MAX_MESSAGES_PER_RECEIVE,
    MAX_VISIBILITY_TIMEOUT_S,
    MAX_WAIT_S,
    QUEUE_NAME_RE,
    SendEntry,
    dead_letter_name,
)
from batchlane.queue.sqlite import SqliteQueue
from batchlane.queue.sqlite_db import QueueDatabase

SERVICE = "sqs"
TARGET_PREFIX = "AmazonSQS"
MAX_RETENTION_S = 14 * 86_400

_SYSTEM_ATTRIBUTES = ("ApproximateFirstReceiveTimestamp", "ApproximateReceiveCount", "SentTimestamp")
_QUEUE_ATTRIBUTES = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesDelayed",
    "ApproximateNumberOfMessagesNotVisible",
    "CreatedTimestamp",
    "DelaySeconds",
    "LastModifiedTimestamp",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "QueueArn",
    "ReceiveMessageWaitTimeSeconds",
    "RedrivePolicy",
    "VisibilityTimeout",
)
# Queue attributes the embedded queue cannot change: CreateQueue accepts them only with these values.
_FIXED_ATTRIBUTES = {
    "DelaySeconds": "0",
    "ReceiveMessageWaitTimeSeconds": "0",
    "MaximumMessageSize": str(MAX_BODY_BYTES),
}


def md5_of_attributes(attributes: Mapping[str, Mapping[str, Any]]) -> str:
    """SQS's MD5OfMessageAttributes: length-prefixed name, data type, transport type and value, sorted by name."""
    digest = hashlib.md5(usedforsecurity=False)

    def put(data: bytes) -> None:
        digest.update(struct.pack(">I", len(data)) + data)

    for name in sorted(attributes):
        value = attributes[name]
        put(name.encode("utf-8"))
        put(str(value["DataType"]).encode("utf-8"))
        digest.update(b"\x01")
        put(str(value["StringValue"]).encode("utf-8"))
    return digest.hexdigest()


def _wanted(names: Iterable[str], available: Iterable[str]) -> list[str]:
    """Which of ``available`` a name list asks for: ``All``, ``.*``, ``prefix.*`` or exact names."""
    names = list(names)
    chosen = []
    for candidate in available:
        for name in names:
            if name in ("All", ".*") or name == candidate:
                chosen.append(candidate)
                break
            if name.endswith(".*") and candidate.startswith(name[:-1]):
                chosen.append(candidate)
                break
    return chosen


class SqsApi:
    """SQS actions over the embedded queue file ``path``; ARNs use ``region`` and ``account``."""

    def __init__(
        self, path: str | Path, *, region: str, account: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """``clock`` (seconds) times the one-purge-per-60-s rule; tests pass their own."""
        self.path = Path(path)
        self.region = region
        self.account = account
        self._db = QueueDatabase(self.path)
        self._queues: dict[str, SqliteQueue] = {}
        self._lock = threading.Lock()
        self.actions: dict[str, Callable[[dict[str, Any], str], dict[str, Any]]] = {
            "CreateQueue": self.create_queue,
            "GetQueueUrl": self.get_queue_url,
            "ListQueues": self.list_queues,
            "SendMessage": self.send_message,
            "ReceiveMessage": self.receive_message,
            "DeleteMessage": self.delete_message,
            "ChangeMessageVisibility": self.change_message_visibility,
            "GetQueueAttributes": self.get_queue_attributes,
            **SqsBatchActions(self, clock=clock).actions(),
        }

    def close(self) -> None:
        with self._lock:
            for queue in self._queues.values():
                queue.close()
            self._queues.clear()
        self._db.close()

    def handle(self, action: str, params: dict[str, Any], endpoint: str) -> dict[str, Any]:
        """Run ``action``; ``endpoint`` (``http://host:port``) is the base of the queue URLs it answers."""
        handler = self.actions.get(action)
        if handler is None:
            raise sqs_error(
                "UnsupportedOperation",
                f"batchlane serves SQS {', '.join(sorted(self.actions))}; not {action or 'an empty action'!r}",
            )
        try:
            return handler(params, endpoint)
        except Exception as exc:
            raise error_of(exc, action) from None

    # -- queues ------------------------------------------------------------------------------------------------
    def queue_url(self, endpoint: str, name: str) -> str:
        return f"{endpoint}/{self.account}/{name}"

    def queue_arn(self, name: str) -> str:
        return f"arn:aws:sqs:{self.region}:{self.account}:{name}"

    def _exists(self, name: str) -> bool:
        row = self._db.connection().execute("SELECT 1 FROM queues WHERE name = ?", (name,)).fetchone()
        return row is not None

    def _open(self, name: str) -> SqliteQueue:
        with self._lock:
            queue = self._queues.get(name)
            if queue is None:
                queue = self._queues[name] = SqliteQueue(self.path, name)
            return queue

    def queue_of(self, params: Mapping[str, Any]) -> SqliteQueue:
        url = params.get("QueueUrl")
        if not isinstance(url, str) or not url:
            raise sqs_error("MissingParameter", "The request must contain the parameter QueueUrl.")
        segments = [part for part in urlsplit(url).path.split("/") if part]
        if len(segments) != 2 or segments[0] != self.account or not self._exists(segments[1]):
            raise sqs_error("QueueDoesNotExist", "The specified queue does not exist.")
        return self._open(segments[1])

    @staticmethod
    def _name(params: Mapping[str, Any]) -> str:
        name = params.get("QueueName")
        if not isinstance(name, str) or not name:
            raise sqs_error("MissingParameter", "The request must contain the parameter QueueName.")
        if not QUEUE_NAME_RE.fullmatch(name):
            raise invalid_parameter(
                "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length"
            )
        return name

    def create_queue(self, params: dict[str, Any], endpoint: str) -> dict[str, Any]:
        name = self._name(params)
        wanted = self._queue_settings(name, params.get("Attributes") or {})
        if self._exists(name):
            config = self._open(name).config()
            current = {
                "visibility_timeout_s": config.visibility_timeout_s,
                "max_receive_count": config.max_receive_count,
                "retention_s": config.retention_s,
            }
            for key, value in wanted.items():
                if current[key] != value:
                    raise sqs_error(
                        "QueueNameExists",
                        f"A queue already exists with the same name and a different value for {key} "
                        f"({current[key]!r}, not {value!r})",
                    )
        else:
            with self._lock:
                self._queues[name] = SqliteQueue(self.path, name, **wanted)
        return {"QueueUrl": self.queue_url(endpoint, name)}

    def _queue_settings(self, name: str, attributes: Mapping[str, Any]) -> dict[str, Any]:
        """SqliteQueue settings from CreateQueue attributes; attributes it cannot honour are refused, not ignored."""
        settings: dict[str, Any] = {}
        for key, raw in attributes.items():
            value = str(raw)
            if key == "VisibilityTimeout":
                settings["visibility_timeout_s"] = self._attr_int(key, value, 0, MAX_VISIBILITY_TIMEOUT_S)
            elif key == "MessageRetentionPeriod":
                settings["retention_s"] = self._attr_int(key, value, 60, MAX_RETENTION_S)
            elif key == "RedrivePolicy":
                settings["max_receive_count"] = self._redrive_policy(name, value)
            elif _FIXED_ATTRIBUTES.get(key) == value:
                continue  # the embedded queue's fixed value, accepted for compatibility
            else:
                raise sqs_error(
                    "InvalidAttributeValue" if key in _QUEUE_ATTRIBUTES else "InvalidAttributeName",
                    f"the embedded queue does not support {key}={value!r} (supported: VisibilityTimeout, "
                    "MessageRetentionPeriod, RedrivePolicy with the queue's own <name>-dlq)",
                )
        return settings

    @staticmethod
    def _attr_int(key: str, value: str, low: int, high: int) -> int:
        if not value.isdigit() or not low <= int(value) <= high:
            raise sqs_error("InvalidAttributeValue", f"Invalid value for the parameter {key}: {value!r}")
        return int(value)

    def _redrive_policy(self, name: str, value: str) -> int:
        try:
            policy = json.loads(value)
            count = int(policy["maxReceiveCount"])
            target = str(policy["deadLetterTargetArn"])
        except (ValueError, KeyError, TypeError, RecursionError):
            raise sqs_error(
                "InvalidAttributeValue",
                "RedrivePolicy must be JSON with deadLetterTargetArn and maxReceiveCount",
            ) from None
        expected = self.queue_arn(dead_letter_name(name))
        if target != expected:
            raise sqs_error(
                "InvalidAttributeValue",
                f"the embedded queue's dead-letter queue is always {expected}, not {target}",
            )
        if not 1 <= count <= 1000:
            raise sqs_error("InvalidAttributeValue", "maxReceiveCount must be between 1 and 1000")
        return count

    def get_queue_url(self, params: dict[str, Any], endpoint: str) -> dict[str, Any]:
        name = self._name(params)
        owner = params.get("QueueOwnerAWSAccountId")
        if not self._exists(name) or (owner is not None and owner != self.account):
            raise sqs_error("QueueDoesNotExist", "The specified queue does not exist.")
        return {"QueueUrl": self.queue_url(endpoint, name)}

    def list_queues(self, params: dict[str, Any], endpoint: str) -> dict[str, Any]:
        prefix = params.get("QueueNamePrefix") or ""
        limit = params.get("MaxResults") or 1000
        rows = self._db.connection().execute("SELECT name FROM queues ORDER BY name").fetchall()
        urls = [self.queue_url(endpoint, row["name"]) for row in rows if row["name"].startswith(prefix)]
        return {"QueueUrls": urls[:limit]} if urls else {}

    def get_queue_attributes(self, params: dict[str, Any], endpoint: str) -> dict[str, Any]:
        queue = self.queue_of(params)
        names = params.get("AttributeNames") or []
        unknown = [n for n in names if n != "All" and n not in _QUEUE_ATTRIBUTES]
        if unknown:
            raise sqs_error("InvalidAttributeName", f"Unknown Attribute {unknown[0]}.")
        chosen = _wanted(names, _QUEUE_ATTRIBUTES)
        if not chosen:
            return {}
        stats = queue.attributes()
        row = (
            self._db.connection()
            .execute("SELECT created_at FROM queues WHERE name = ?", (queue.name,))
            .fetchone()
        )
        created = str(int(row["created_at"])) if row else "0"
        values = {
            "ApproximateNumberOfMessages": str(stats["visible"]),
            "ApproximateNumberOfMessagesDelayed": str(stats["delayed"]),
            "ApproximateNumberOfMessagesNotVisible": str(stats["in_flight"]),
            "CreatedTimestamp": created,
            "DelaySeconds": "0",
            "LastModifiedTimestamp": created,
            "MaximumMessageSize": str(MAX_BODY_BYTES),
            "MessageRetentionPeriod": str(int(stats["retention_s"] or MAX_RETENTION_S)),
            "QueueArn": self.queue_arn(queue.name),
            "ReceiveMessageWaitTimeSeconds": "0",
            "VisibilityTimeout": str(int(stats["visibility_timeout_s"])),
        }
        if stats["dead_letter_queue"]:
            values["RedrivePolicy"] = json.dumps(
                {
                    "deadLetterTargetArn": self.queue_arn(stats["dead_letter_queue"]),
                    "maxReceiveCount": stats["max_receive_count"],
                }
            )
        return {"Attributes": {name: values[name] for name in chosen if name in values}}

    # -- messages ----------------------------------------------------------------------------------------------
    @staticmethod
    def number_param(
        params: Mapping[str, Any], key: str, low: int, high: int, default: int | None
    ) -> int | None:
        value = params.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise invalid_parameter(
                f"Value {value!r} for parameter {key} is invalid. Reason: must be between {low} and {high}."
            )
        return value

    def send_message(self, params: dict[str, Any], endpoint: str) -> dict[str, Any]:
        queue = self.queue_of(params)
        entry, attributes = self.send_entry(queue, params)
        return self.sent(entry, attributes, queue.send(**vars(entry)))

    @staticmethod
    def sent(
        entry: SendEntry, attributes: Mapping[str, Mapping[str, Any]], message_id: str
    ) -> dict[str, Any]:
        """SendMessage's answer (also a SendMessageBatch ``Successful`` entry, less its Id)."""
        answer = {
            "MessageId": message_id,
            "MD5OfMessageBody": hashlib.md5(entry.body.encode(), usedforsecurity=False).hexdigest(),
        }
        if attributes:
            answer["MD5OfMessageAttributes"] = md5_of_attributes(attributes)
        return answer

    def send_entry(
        self, queue: SqliteQueue, params: Mapping[str, Any]
    ) -> tuple[SendEntry, dict[str, dict[str, str]]]:
        """SendMessage's parameters (or one SendMessageBatch entry's) as a SendEntry, plus the message attributes
        as sent (for their MD5); AwsError naming the parameter if one is wrong."""
        body = params.get("MessageBody")
        if not isinstance(body, str) or not body:
            raise sqs_error("MissingParameter", "The request must contain the parameter MessageBody.")
        if params.get("MessageGroupId") is not None and not queue.name.endswith(".fifo"):
            raise invalid_parameter(
                "The request include parameter that is not valid for this queue type: MessageGroupId"
            )
        delay = self.number_param(params, "DelaySeconds", 0, MAX_DELAY_S, 0)
        attributes: dict[str, dict[str, str]] = {}
        for name, value in (params.get("MessageAttributes") or {}).items():
            data_type = value.get("DataType") if isinstance(value, Mapping) else None
            if not isinstance(data_type, str) or not data_type.startswith(("String", "Number")):
                raise invalid_parameter(
                    f"Message attribute {name!r}: only String and Number data types are supported by the embedded "
                    f"queue, not {data_type!r}"
                )
            if not isinstance(value.get("StringValue"), str):
                raise invalid_parameter(f"Message attribute {name!r} must have a StringValue")
            attributes[name] = {"DataType": data_type, "StringValue": value["StringValue"]}
        entry = SendEntry(
            body,
            dedup_id=params.get("MessageDeduplicationId"),
            delay_s=delay or 0,
            attributes={name: value["StringValue"] for name, value in attributes.items()},
        )
        return entry, attributes

    def receive_message(self, params: dict[str, Any], endpoint: str) -> dict[str, Any]:
        queue = self.queue_of(params)
        count = self.number_param(params, "MaxNumberOfMessages", 1, MAX_MESSAGES_PER_RECEIVE, 1)
        wait = self.number_param(params, "WaitTimeSeconds", 0, MAX_WAIT_S, 0)
        visibility = self.number_param(params, "VisibilityTimeout", 0, MAX_VISIBILITY_TIMEOUT_S, None)
        messages = queue.receive(max_messages=count or 1, wait_s=wait or 0, visibility_timeout_s=visibility)
        system_names = [
            *(params.get("AttributeNames") or []),
            *(params.get("MessageSystemAttributeNames") or []),
        ]
        attribute_names = params.get("MessageAttributeNames") or []
        out = []
        for message in messages:
            item: dict[str, Any] = {
                "MessageId": message.message_id,
                "ReceiptHandle": message.receipt,
                "MD5OfBody": hashlib.md5(message.body.encode(), usedforsecurity=False).hexdigest(),
                "Body": message.body,
            }
            system = {
                "ApproximateReceiveCount": str(message.receive_count),
                "SentTimestamp": str(int(message.sent_at * 1000)),
                "ApproximateFirstReceiveTimestamp": str(
                    int((message.first_received_at or message.sent_at) * 1000)
                ),
            }
            chosen = _wanted(system_names, _SYSTEM_ATTRIBUTES)
            if chosen:
                item["Attributes"] = {name: system[name] for name in chosen}
            names = _wanted(attribute_names, sorted(message.attributes))
            if names:
                attrs = {
                    name: {"StringValue": message.attributes[name], "DataType": "String"} for name in names
                }
                item["MessageAttributes"] = attrs
                item["MD5OfMessageAttributes"] = md5_of_attributes(attrs)
            out.append(item)
        return {"Messages": out} if out else {}

    def delete_message(self, params: dict[str, Any], endpoint: str) -> dict[str, Any]:
        queue = self.queue_of(params)
        queue.delete(self._receipt(params))
        return {}

    def change_message_visibility(self, params: dict[str, Any], endpoint: str) -> dict[str, Any]:
        queue = self.queue_of(params)
        timeout = self.number_param(params, "VisibilityTimeout", 0, MAX_VISIBILITY_TIMEOUT_S, None)
        if timeout is None:
            raise sqs_error("MissingParameter", "The request must contain the parameter VisibilityTimeout.")
        queue.change_visibility(self._receipt(params), timeout)
        return {}

    @staticmethod
    def _receipt(params: Mapping[str, Any]) -> str:
        receipt = params.get("ReceiptHandle")
        if not isinstance(receipt, str) or not receipt:
            raise sqs_error("MissingParameter", "The request must contain the parameter ReceiptHandle.")
        return receipt
