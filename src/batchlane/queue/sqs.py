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
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any
from urllib.parse import urlsplit

from batchlane import settings
from batchlane.errors import BatchlaneError, NotFound, QueueError, StaleReceipt, ValidationError
from batchlane.queue.base import (
    DEFAULT_MAX_RECEIVE_COUNT,
    DEFAULT_RETENTION_S,
    DEFAULT_VISIBILITY_TIMEOUT_S,
    MAX_BATCH_BYTES,
    MAX_BATCH_ENTRIES,
    MAX_DELAY_S,
    MAX_MESSAGES_PER_RECEIVE,
    MAX_VISIBILITY_TIMEOUT_S,
    MAX_WAIT_S,
    DeadLetter,
    Message,
    Outcome,
    Receipt,
    SendEntry,
    SendOutcome,
    check_range,
    dead_letter_name,
    receipt_of,
    validate_body,
    validate_queue_name,
)

log = logging.getLogger(__name__)

ATTR_REASON = "batchlane-dead-letter-reason"
ATTR_ATTEMPTS = "batchlane-attempts"
ATTR_SOURCE = "batchlane-source-queue"
ATTR_SENT_AT = "batchlane-sent-at"
ATTR_ORIGINAL_ID = "batchlane-original-message-id"
ATTR_REDRIVE_COUNT = "batchlane-redrive-count"
ATTR_REDRIVEN_FROM = "batchlane-redriven-from"
ATTR_DEDUP_ID = "batchlane-dedup-id"
DEAD_LETTER_ATTRS = (ATTR_REASON, ATTR_ATTEMPTS, ATTR_SOURCE, ATTR_SENT_AT)
MAX_ATTRIBUTES = 10  # SQS's limit per message
MAX_REASON_CHARS = 4096
# Longer than the source queue's, as AWS advises: expiry counts from the original send.
DEAD_LETTER_RETENTION_S = 14 * 86_400
PEEK_VISIBILITY_S = 30  # how long listing or redriving hides a dead letter before it is released again
REDRIVE_VISIBILITY_S = 900  # long enough to resend a large batch before the first ones reappear
MAX_REDRIVE = 10_000  # dead letters looked at per redrive call (run it again for more)
_RECEIPT_CACHE = 10_000  # received messages remembered so dead_letter(receipt_string) can find the body
_NOT_FOUND_CODES = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
_STALE_CODES = {"ReceiptHandleIsInvalid", "MessageNotInflight", "InvalidReceiptHandle"}
_VALIDATION_CODES = {
    "InvalidMessageContents",
    "InvalidParameterValue",
    "InvalidAttributeValue",
    "InvalidAttributeName",
    "MissingParameter",
    "InvalidParameterCombination",
    "UnsupportedOperation",
}
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


def _error(what: str, code: str, message: str) -> BatchlaneError:
    """Our error for an SQS error code: missing queue, stale receipt, bad request, or unavailable."""
    if code in _NOT_FOUND_CODES:
        return NotFound(f"{what}: the SQS queue does not exist ({message or code})", field="queue")
    if code in _STALE_CODES:
        return StaleReceipt(f"{what}: {code}: {message}", field="receipt")
    if code in _VALIDATION_CODES:
        return ValidationError(f"{what}: {code}: {message}")
    return QueueError(f"{what}: {code or 'error'}: {message}")


@contextmanager
def _aws(what: str) -> Iterator[None]:
    """Turn botocore failures into our errors (see ``_error``)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise _error(what, error.get("Code", ""), error.get("Message", "")) from exc
    except BotoCoreError as exc:
        raise QueueError(f"{what}: {exc}") from exc


def _chunks(sizes: Sequence[int]) -> Iterator[range]:
    """Index ranges of at most 10 entries whose sizes add up to at most 1 MiB: SQS's limits per batch call."""
    start, total = 0, 0
    for index, size in enumerate(sizes):
        if index > start and (index - start == MAX_BATCH_ENTRIES or total + size > MAX_BATCH_BYTES):
            yield range(start, index)
            start, total = index, 0
        total += size
    if start < len(sizes):
        yield range(start, len(sizes))


def _string_attributes(message: Mapping[str, Any]) -> dict[str, str]:
    return {
        key: value["StringValue"]
        for key, value in (message.get("MessageAttributes") or {}).items()
        if "StringValue" in value
    }


class SqsQueue:
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
            with _aws(f"SQS queue {name}"):
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
        with _aws(f"send to {self.name}"):
            return self._client.send_message(QueueUrl=self.url, **params)["MessageId"]

    def send_batch(self, entries: Sequence[SendEntry]) -> list[SendOutcome]:
        """SendMessageBatch, in calls of at most 10 entries and 1 MiB; per entry, its message id or its error
        (checked here first, or SQS's ``Failed`` entry). A call that fails as a whole raises."""
        out: list[SendOutcome] = []
        wanted: dict[int, dict[str, Any]] = {}
        for index, entry in enumerate(entries):
            try:
                wanted[index] = self._send_params(entry)
                out.append("")  # the message id, once sent
            except BatchlaneError as exc:
                out.append(exc)
        indexes = list(wanted)
        sizes = [len(wanted[i]["MessageBody"].encode()) for i in indexes]
        for chunk in _chunks(sizes):
            batch = [{"Id": str(indexes[i]), **wanted[indexes[i]]} for i in chunk]
            with _aws(f"send to {self.name}"):
                answer = self._client.send_message_batch(QueueUrl=self.url, Entries=batch)
            for done in answer.get("Successful", []):
                out[int(done["Id"])] = done["MessageId"]
            for failed in answer.get("Failed", []):
                out[int(failed["Id"])] = _error(
                    f"send to {self.name}", failed["Code"], failed.get("Message", "")
                )
        return out

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
        with _aws(f"receive from {self.name}"):
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
                attributes=_string_attributes(item),
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
        with _aws(f"delete from {self.name}"):
            self._client.delete_message(QueueUrl=self.url, ReceiptHandle=handle)
        with self._lock:
            self._received.pop(handle, None)

    def delete_batch(self, receipts: Sequence[Receipt]) -> list[Outcome]:
        """DeleteMessageBatch, 10 receipts per call; per receipt, None or SQS's refusal (not fenced, as ``delete``)."""
        handles = [receipt_of(r) for r in receipts]
        out = self._batch(
            "delete from", self._client.delete_message_batch, [{"ReceiptHandle": h} for h in handles]
        )
        with self._lock:
            for handle, outcome in zip(handles, out, strict=True):
                if outcome is None:
                    self._received.pop(handle, None)
        return out

    def change_visibility_batch(self, changes: Sequence[tuple[Receipt, int]]) -> list[Outcome]:
        """ChangeMessageVisibilityBatch, 10 pairs per call; per (receipt, timeout_s), None or its error."""
        entries: list[dict[str, Any] | BatchlaneError] = []
        for receipt, timeout_s in changes:
            try:
                check_range(timeout_s, 0, MAX_VISIBILITY_TIMEOUT_S, "timeout_s")
                entries.append({"ReceiptHandle": receipt_of(receipt), "VisibilityTimeout": int(timeout_s)})
            except BatchlaneError as exc:
                entries.append(exc)
        return self._batch("change visibility on", self._client.change_message_visibility_batch, entries)

    def _batch(
        self,
        what: str,
        call: Callable[..., dict[str, Any]],
        entries: Sequence[dict[str, Any] | BatchlaneError],
    ) -> list[Outcome]:
        """Run a receipt batch call in chunks of 10; entries that are already errors are not sent."""
        out: list[Outcome] = [e if isinstance(e, BatchlaneError) else None for e in entries]
        indexes = [i for i, e in enumerate(entries) if not isinstance(e, BatchlaneError)]
        for start in range(0, len(indexes), MAX_BATCH_ENTRIES):
            chunk = indexes[start : start + MAX_BATCH_ENTRIES]
            with _aws(f"{what} {self.name}"):
                answer = call(QueueUrl=self.url, Entries=[{"Id": str(i), **entries[i]} for i in chunk])
            for failed in answer.get("Failed", []):
                out[int(failed["Id"])] = _error(
                    f"{what} {self.name}", failed["Code"], failed.get("Message", "")
                )
        return out

    def change_visibility(self, receipt: Receipt, timeout_s: int, *, reason: str | None = None) -> None:
        """ChangeMessageVisibility; ``reason`` is only logged (SQS messages cannot carry it)."""
        check_range(timeout_s, 0, MAX_VISIBILITY_TIMEOUT_S, "timeout_s")
        if reason:
            log.info("queue %s: message released or delayed %ss: %s", self.name, timeout_s, reason)
        with _aws(f"change visibility on {self.name}"):
            self._client.change_message_visibility(
                QueueUrl=self.url, ReceiptHandle=receipt_of(receipt), VisibilityTimeout=int(timeout_s)
            )

    def nack(self, receipt: Receipt, reason: str | None = None) -> None:
        """Release the message for redelivery now."""
        self.change_visibility(receipt, 0, reason=reason)

    def dead_letter(self, receipt: Receipt, reason: str) -> str:
        """Send a copy to the dead-letter queue with ``reason``, attempts and source, then delete the original.

        Pass the received Message (or a receipt this object received): SQS cannot read a body from a receipt.
        At least once: if the delete fails after the copy was sent, the message may be dead-lettered twice.
        """
        message = receipt if isinstance(receipt, Message) else self._received.get(receipt)
        if message is None:
            raise ValidationError(
                "dead_letter on SQS needs the Message this queue object received (SQS cannot read a body from a "
                "receipt handle)",
                field="receipt",
            )
        dlq = self.dead_letter_queue
        if dlq is None:
            raise ValidationError(f"SQS queue {self.name} has no RedrivePolicy, so no dead-letter queue")
        ours = {
            ATTR_REASON: reason[:MAX_REASON_CHARS] or "dead-lettered",
            ATTR_ATTEMPTS: str(message.receive_count),
            ATTR_SOURCE: self.name,
            ATTR_SENT_AT: str(message.sent_at),
            ATTR_ORIGINAL_ID: message.attributes.get(ATTR_ORIGINAL_ID, message.message_id),
        }
        theirs = [(k, v) for k, v in message.attributes.items() if k not in ours]
        attrs = dict(theirs[: MAX_ATTRIBUTES - len(ours)]) | ours
        new_id = dlq.send(message.body, attributes=attrs)
        self.delete(message)
        return new_id

    # -- inspection and dead letters -------------------------------------------------------------------------------

    def _attributes(self, names: list[str]) -> dict[str, str]:
        with _aws(f"attributes of {self.name}"):
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
                with _aws(f"dead-letter queue {name}"):
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
        with _aws(f"purge {self.name}"):
            self._client.purge_queue(QueueUrl=self.url)

    def _receive_all(self, limit: int, visibility_s: int = PEEK_VISIBILITY_S) -> list[Message]:
        """Receive up to ``limit`` visible messages, each once, hiding them for ``visibility_s``.

        The caller must delete or ``_release`` every one. Long polling (1 s) is used only while fewer messages than
        the queue reported have come back, because short polling on SQS samples a subset of servers and can answer
        empty while messages exist.
        """
        expected = int(
            self._attributes(["ApproximateNumberOfMessages"]).get("ApproximateNumberOfMessages", 0)
        )
        held: dict[str, Message] = {}
        while len(held) < limit:
            wait = 1 if len(held) < expected else 0
            batch = self.receive(
                min(MAX_MESSAGES_PER_RECEIVE, limit - len(held)),
                wait_s=wait,
                visibility_timeout_s=PEEK_VISIBILITY_S,
            )
            repeats = [m for m in batch if m.message_id in held]
            for message in batch:
                held.setdefault(message.message_id, message)
            if repeats:  # a hidden message came back (the peek outlasted its lease): everything was seen
                self._release(repeats)
                break
            if not batch:
                break
        return list(held.values())

    def _release(self, messages: Iterable[Message]) -> None:
        for message in messages:
            with suppress(StaleReceipt, NotFound):  # already gone or taken: nothing to release
                self.change_visibility(message, 0)

    def list_dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Up to ``limit`` dead letters; receives them briefly and releases them (SQS has no peek)."""
        dlq = self.dead_letter_queue
        if dlq is None:
            return []
        held = dlq._receive_all(limit)
        dlq._release(held)
        return [self._dead_letter(m) for m in sorted(held, key=lambda m: m.sent_at)]

    def _dead_letter(self, message: Message) -> DeadLetter:
        attrs = message.attributes
        ours = ATTR_REASON in attrs
        reason = attrs.get(ATTR_REASON) or (
            "maxReceiveCount exceeded (moved by SQS, which does not record the consumer's last error)"
        )
        # A message SQS moved keeps its receive count; our own listing receive added one.
        attempts = int(attrs[ATTR_ATTEMPTS]) if ours else max(message.receive_count - 1, 0)
        dead_at = message.sent_at if ours else None
        return DeadLetter(
            message_id=message.message_id,
            body=message.body,
            reason=reason,
            attempts=attempts,
            sent_at=float(attrs.get(ATTR_SENT_AT, message.sent_at)),
            dead_at=dead_at,
            source_queue=attrs.get(ATTR_SOURCE, self.name),
            redrive_count=int(attrs.get(ATTR_REDRIVE_COUNT, "0")),
            history=({"at": dead_at, "event": "dead_letter", "reason": reason, "receive_count": attempts},),
        )

    def redrive(self, message_ids: Iterable[str] | None = None) -> list[str]:
        """Move dead letters (all, or those ids) back here as new messages; return their new ids.

        Not atomic: each is sent, then deleted from the dead-letter queue. Ids not found raise NotFound after the
        others have moved. Looks at up to 10 000 dead letters per call.
        """
        dlq = self.dead_letter_queue
        if dlq is None:
            raise ValidationError(f"SQS queue {self.name} has no RedrivePolicy, so no dead-letter queue")
        wanted = None if message_ids is None else set(message_ids)
        moved: list[str] = []
        found: set[str] = set()
        held = dlq._receive_all(MAX_REDRIVE, REDRIVE_VISIBILITY_S)
        try:
            for message in list(held):
                if wanted is not None and message.message_id not in wanted:
                    continue
                attrs = {k: v for k, v in message.attributes.items() if k not in DEAD_LETTER_ATTRS}
                attrs[ATTR_REDRIVE_COUNT] = str(int(message.attributes.get(ATTR_REDRIVE_COUNT, "0")) + 1)
                attrs[ATTR_REDRIVEN_FROM] = message.message_id
                moved.append(self.send(message.body, attributes=attrs))
                dlq.delete(message)
                held.remove(message)
                found.add(message.message_id)
        finally:
            dlq._release(held)
        if wanted is not None and wanted - found:
            missing = ", ".join(sorted(wanted - found))
            raise NotFound(f"not in dead-letter queue {dlq.name}: {missing}", field="message_id")
        return moved


def _create_or_update(client: Any, name: str, attributes: dict[str, str], create_only: dict[str, str]) -> str:
    from botocore.exceptions import ClientError

    try:
        url = client.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in _NOT_FOUND_CODES:
            with _aws(f"SQS queue {name}"):
                raise
        with _aws(f"create SQS queue {name}"):
            return client.create_queue(QueueName=name, Attributes={**attributes, **create_only})["QueueUrl"]
    with _aws(f"configure SQS queue {name}"):
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
    with _aws(f"attributes of {dlq_name}"):
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
