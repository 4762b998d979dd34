"""The queue interface every backend implements, with Amazon SQS's semantics (docs/reliability.md).

A message is *received* under a lease (the visibility timeout): it stays in the queue, hidden, until the consumer
deletes it (ack), extends the lease (heartbeat), releases it (nack: visibility 0), or the lease runs out and the
message is delivered again with its receive count one higher. A message received more than ``max_receive_count``
times goes to the queue's dead-letter queue instead of being delivered; a consumer that knows a message can never
succeed dead-letters it at once with a reason. Delivery is at least once: consumers must be idempotent.

Backends: :mod:`batchlane.queue.sqlite` (embedded, fenced leases) and :mod:`batchlane.queue.sqs` (Amazon SQS or any
endpoint speaking its API). :func:`batchlane.queue.open_queue` picks one from a URL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from batchlane.errors import BatchlaneError, PayloadTooLarge, ValidationError

MAX_BODY_BYTES = 1 << 20  # SQS's limit: 1 MiB (SendMessage)
MAX_MESSAGES_PER_RECEIVE = 10
MAX_BATCH_ENTRIES = 10  # SQS's limit per SendMessageBatch / DeleteMessageBatch / ChangeMessageVisibilityBatch
MAX_BATCH_BYTES = MAX_BODY_BYTES  # SQS: the messages of one SendMessageBatch together, 1 MiB
MAX_WAIT_S = 20  # SQS long polling: 0-20 s
MAX_VISIBILITY_TIMEOUT_S = 43_200  # 12 h
MAX_DELAY_S = 900
DEFAULT_VISIBILITY_TIMEOUT_S = 900  # the seed's queue
DEFAULT_MAX_RECEIVE_COUNT = 5  # the seed's redrive policy
DEFAULT_RETENTION_S = 4 * 86_400  # SQS's default
DEAD_LETTER_SUFFIX = "-dlq"
DEFAULT_QUEUE_NAME = "batchlane-jobs"

# SQS queue names: 1-80 characters, alphanumerics, hyphens and underscores (".fifo" suffix for FIFO queues).
QUEUE_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,80}(\.fifo)?$")
# Characters SQS accepts in a body: #x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF.
_FORBIDDEN_CHARS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class Message:
    """One delivery of a message.

    ``receipt`` identifies this delivery (not the message): pass it (or the Message itself) to ``delete``,
    ``change_visibility``, ``nack`` and ``dead_letter``. Times are Unix epoch seconds. ``receive_count`` counts this
    delivery (1 on the first). ``attributes`` are string message attributes (the sender's, plus what the queue
    recorded, such as ``last_error`` or ``redrive_count`` on the embedded queue).
    """

    message_id: str
    receipt: str
    body: str
    receive_count: int
    sent_at: float
    first_received_at: float | None
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeadLetter:
    """A message parked in a dead-letter queue, as ``list_dead_letters`` shows it (reading does not receive it).

    ``reason`` says why it was parked (a permanent error, ``maxReceiveCount exceeded …``, ``expired …``);
    ``attempts`` is how many times it was received before; ``history`` lists what the queue recorded on the way
    (errors reported with ``nack``/``change_visibility``, dead-lettering, redrives), oldest first, each a dict with
    ``at``, ``event`` and, where known, ``reason`` and ``receive_count``.
    """

    message_id: str
    body: str
    reason: str
    attempts: int
    sent_at: float
    dead_at: float | None
    source_queue: str | None
    redrive_count: int = 0
    history: tuple[Mapping[str, Any], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "reason": self.reason,
            "attempts": self.attempts,
            "sent_at": self.sent_at,
            "dead_at": self.dead_at,
            "source_queue": self.source_queue,
            "redrive_count": self.redrive_count,
            "history": [dict(h) for h in self.history],
            "body": self.body,
        }


Receipt = Message | str


@dataclass(frozen=True)
class SendEntry:
    """One message of ``send_batch``: the arguments ``send`` takes."""

    body: str
    dedup_id: str | None = None
    delay_s: int = 0
    attributes: Mapping[str, str] | None = None


# Per entry of a batch call, in entry order: what succeeded, or the error the single call would have raised.
SendOutcome = str | BatchlaneError  # the message id
Outcome = BatchlaneError | None


@runtime_checkable
class Queue(Protocol):
    """A queue with SQS semantics. ``name`` is the queue's name, ``url`` a string ``open_queue`` accepts."""

    name: str
    url: str

    def send(
        self,
        body: str,
        *,
        dedup_id: str | None = None,
        delay_s: int = 0,
        attributes: Mapping[str, str] | None = None,
    ) -> str:
        """Enqueue ``body`` (at most 1 MiB of SQS-allowed characters); return its message id."""
        ...

    def receive(
        self, max_messages: int = 1, wait_s: float = 0, visibility_timeout_s: int | None = None
    ) -> list[Message]:
        """Lease up to ``max_messages`` (1-10) visible messages; wait up to ``wait_s`` (0-20) for the first one."""
        ...

    def send_batch(self, entries: Sequence[SendEntry]) -> list[SendOutcome]:
        """Enqueue several messages in one call; per entry, its message id or why it was refused."""
        ...

    def delete(self, receipt: Receipt) -> None:
        """Acknowledge: remove the message for good."""
        ...

    def delete_batch(self, receipts: Sequence[Receipt]) -> list[Outcome]:
        """``delete`` for several receipts in one call; per receipt, None or why it was refused."""
        ...

    def change_visibility(self, receipt: Receipt, timeout_s: int, *, reason: str | None = None) -> None:
        """Hide the message for ``timeout_s`` from now (heartbeat); 0 releases it at once (nack)."""
        ...

    def change_visibility_batch(self, changes: Sequence[tuple[Receipt, int]]) -> list[Outcome]:
        """``change_visibility`` for several (receipt, timeout_s) pairs in one call; per pair, None or why not."""
        ...

    def nack(self, receipt: Receipt, reason: str | None = None) -> None:
        """Release the message for redelivery now, recording ``reason`` where the backend can."""
        ...

    def dead_letter(self, receipt: Receipt, reason: str) -> str:
        """Move the message to the dead-letter queue now (a permanent error); return its id there."""
        ...

    def attributes(self) -> dict[str, Any]:
        """Approximate counts and configuration; see :func:`attribute_keys`."""
        ...

    def purge(self) -> int | None:
        """Delete every message of this queue (not of its dead-letter queue); the count where known."""
        ...

    @property
    def dead_letter_queue(self) -> Queue | None:
        """The dead-letter queue as a queue of its own, or None when this queue has none."""
        ...

    def list_dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Up to ``limit`` messages of the dead-letter queue with reasons and attempts, oldest first."""
        ...

    def redrive(self, message_ids: Iterable[str] | None = None) -> list[str]:
        """Move dead letters (all, or those ids) back to this queue with a fresh receive count; return new ids."""
        ...

    def close(self) -> None: ...


def attribute_keys() -> tuple[str, ...]:
    """The keys ``Queue.attributes()`` returns on every backend (values None where a backend cannot know)."""
    return (
        "name",
        "url",
        "visible",
        "in_flight",
        "delayed",
        "dead_letters",
        "oldest_age_s",
        "visibility_timeout_s",
        "max_receive_count",
        "retention_s",
        "dead_letter_queue",
    )


def receipt_of(receipt: Receipt) -> str:
    """The receipt handle of a Message, or the string itself."""
    return receipt.receipt if isinstance(receipt, Message) else receipt


def validate_body(body: str) -> None:
    """Reject what SQS's SendMessage rejects: more than 1 MiB, or characters outside its allowed set."""
    if not isinstance(body, str):
        raise ValidationError(f"message body must be a string, got {type(body).__name__}", field="body")
    size = len(body.encode("utf-8", "surrogatepass"))
    if size > MAX_BODY_BYTES:
        raise PayloadTooLarge(
            f"message body is {size} bytes; the limit is {MAX_BODY_BYTES} bytes (1 MiB)", field="body"
        )
    bad = _FORBIDDEN_CHARS.search(body)
    if bad:
        raise ValidationError(
            f"message body has a character SQS does not allow (U+{ord(bad.group()):04X} at offset {bad.start()}); "
            "allowed: tab, newline, carriage return, U+0020-U+D7FF, U+E000-U+FFFD, U+10000-U+10FFFF",
            field="body",
        )


def validate_queue_name(name: str) -> str:
    if not QUEUE_NAME_RE.match(name or ""):
        raise ValidationError(
            f"queue name {name!r} is invalid: use 1-80 letters, digits, hyphens or underscores", field="queue"
        )
    return name


def check_range(value: float, low: float, high: float, what: str) -> None:
    """Raise a ValidationError naming ``what`` unless ``low <= value <= high`` (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValidationError(f"{what} must be between {low:g} and {high:g}, got {value!r}", field=what)


def dead_letter_name(name: str) -> str:
    """The dead-letter queue's name for a source queue: ``<name>-dlq`` (``<name>-dlq.fifo`` for FIFO)."""
    if name.endswith(".fifo"):
        return name[: -len(".fifo")] + DEAD_LETTER_SUFFIX + ".fifo"
    return name + DEAD_LETTER_SUFFIX
