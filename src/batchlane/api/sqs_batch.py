"""SQS's batch actions and ``PurgeQueue`` over the embedded queue.

``SendMessageBatch``, ``DeleteMessageBatch`` and ``ChangeMessageVisibilityBatch`` take up to 10 entries, each with
an ``Id`` the answer uses to report it under ``Successful`` or ``Failed``. As on SQS, some errors refuse the whole
request before any entry runs:

* ``EmptyBatchRequest``: no entries;
* ``TooManyEntriesInBatchRequest``: more than 10;
* ``InvalidBatchEntryId``: an ``Id`` that is not 1-80 letters, digits, hyphens or underscores;
* ``BatchEntryIdsNotDistinct``: two entries with the same ``Id``;
* ``BatchRequestTooLong`` (``SendMessageBatch``): the messages (bodies and attributes) together over 1 MiB, SQS's
  current limit, the same as one message's.

Anything wrong with one entry (a body with a forbidden character, a stale or malformed receipt, a timeout out of
range) is a ``Failed`` entry (``Id``, ``SenderFault``, ``Code``, ``Message``) with the code the single action would
have answered; the other entries still run, in one SQLite transaction per batch.

``PurgeQueue`` deletes every message of the queue, visible, delayed and in flight, at once (SQS takes up to 60 s).
As on SQS, a queue may be purged once per 60 s: a second ``PurgeQueue`` within that window is
``PurgeQueueInProgress``. The window is kept by this server process; ``batchlane queue purge`` is not limited.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from batchlane.api.protocol import AwsError
from batchlane.api.sqs_errors import error_of, invalid_parameter, sqs_error
from batchlane.errors import BatchlaneError
from batchlane.queue.base import MAX_BATCH_BYTES, MAX_BATCH_ENTRIES, MAX_VISIBILITY_TIMEOUT_S, SendEntry

if TYPE_CHECKING:
    from batchlane.api.sqs import SqsApi

log = logging.getLogger(__name__)

PURGE_INTERVAL_S = 60.0  # SQS allows one PurgeQueue per queue per 60 s
ENTRY_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,80}")

Action = Callable[[dict[str, Any], str], dict[str, Any]]


def batch_entries(params: Mapping[str, Any], entry_name: str) -> list[Mapping[str, Any]]:
    """The ``Entries`` of a batch request, after the whole-request checks (see the module docstring)."""
    entries = params.get("Entries")
    if entries is None or entries == []:
        raise sqs_error("EmptyBatchRequest", f"There should be at least one {entry_name} in the request.")
    if not isinstance(entries, list) or not all(isinstance(entry, Mapping) for entry in entries):
        raise invalid_parameter(f"Entries must be a list of {entry_name} objects")
    if len(entries) > MAX_BATCH_ENTRIES:
        raise sqs_error(
            "TooManyEntriesInBatchRequest",
            f"Maximum number of entries per request are {MAX_BATCH_ENTRIES}. You have sent {len(entries)}.",
        )
    seen: set[str] = set()
    for entry in entries:
        entry_id = entry.get("Id")
        if not isinstance(entry_id, str) or not ENTRY_ID_RE.fullmatch(entry_id):
            raise sqs_error(
                "InvalidBatchEntryId",
                f"Id {entry_id!r}: a batch entry id can only contain alphanumeric characters, hyphens and "
                f"underscores. It can be at most 80 letters long.",
            )
        if entry_id in seen:
            raise sqs_error("BatchEntryIdsNotDistinct", f"Id {entry_id} repeated.")
        seen.add(entry_id)
    return entries


def message_bytes(entry: Mapping[str, Any]) -> int:
    """What one message counts towards SQS's size limits: its body plus its attributes' names, types and values."""
    size = 0
    for text in _texts(entry.get("MessageBody")):
        size += len(text.encode("utf-8", "surrogatepass"))
    attributes = entry.get("MessageAttributes")
    for name, value in attributes.items() if isinstance(attributes, Mapping) else ():
        for text in _texts(name, *(value.get(k) for k in ("DataType", "StringValue"))):
            size += len(text.encode("utf-8", "surrogatepass"))
    return size


def _texts(*values: Any) -> list[str]:
    return [value for value in values if isinstance(value, str)]


def failure(entry_id: str, error: AwsError) -> dict[str, Any]:
    """A ``Failed`` entry (BatchResultErrorEntry) for ``error``."""
    return {"Id": entry_id, "SenderFault": error.sender, "Code": error.code, "Message": error.message}


class SqsBatchActions:
    """The batch actions and ``PurgeQueue`` of ``api`` (queues, parameters and answers are the single actions')."""

    def __init__(self, api: SqsApi, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self._clock = clock
        self._purged_at: dict[str, float] = {}
        self._purge_lock = threading.Lock()

    def actions(self) -> dict[str, Action]:
        return {
            "SendMessageBatch": self.send_message_batch,
            "DeleteMessageBatch": self.delete_message_batch,
            "ChangeMessageVisibilityBatch": self.change_message_visibility_batch,
            "PurgeQueue": self.purge_queue,
        }

    def send_message_batch(self, params: dict[str, Any], endpoint: str) -> dict[str, Any]:
        queue = self.api.queue_of(params)
        entries = batch_entries(params, "SendMessageBatchRequestEntry")
        size = sum(message_bytes(entry) for entry in entries)
        if size > MAX_BATCH_BYTES:
            raise sqs_error(
                "BatchRequestTooLong",
                f"Batch requests cannot be longer than {MAX_BATCH_BYTES} bytes (1 MiB). You have sent {size} bytes.",
            )
        results: list[dict[str, Any] | None] = [None] * len(entries)
        failed: dict[int, dict[str, Any]] = {}
        prepared: list[tuple[int, SendEntry, dict[str, dict[str, str]]]] = []
        for index, entry in enumerate(entries):
            try:
                prepared.append((index, *self.api.send_entry(queue, entry)))
            except AwsError as exc:
                failed[index] = failure(entry["Id"], exc)
        outcomes = queue.send_batch([message for _, message, _ in prepared])
        for (index, message, attributes), outcome in zip(prepared, outcomes, strict=True):
            entry_id = entries[index]["Id"]
            if isinstance(outcome, str):
                results[index] = {"Id": entry_id, **self.api.sent(message, attributes, outcome)}
            else:
                failed[index] = failure(entry_id, error_of(outcome, "SendMessageBatch"))
        return {"Successful": [r for r in results if r is not None], "Failed": _ordered(failed)}

    def delete_message_batch(self, params: dict[str, Any], endpoint: str) -> dict[str, Any]:
        queue = self.api.queue_of(params)
        entries = batch_entries(params, "DeleteMessageBatchRequestEntry")
        receipts, failed = _receipts(entries)
        outcomes = queue.delete_batch([receipt for _, receipt in receipts])
        return self._answer("DeleteMessageBatch", entries, receipts, outcomes, failed)

    def change_message_visibility_batch(self, params: dict[str, Any], endpoint: str) -> dict[str, Any]:
        queue = self.api.queue_of(params)
        entries = batch_entries(params, "ChangeMessageVisibilityBatchRequestEntry")
        receipts, failed = _receipts(entries)
        changes: list[tuple[str, int]] = []
        chosen: list[tuple[int, str]] = []
        for index, receipt in receipts:
            try:
                timeout = self.api.number_param(
                    entries[index], "VisibilityTimeout", 0, MAX_VISIBILITY_TIMEOUT_S, None
                )
                if timeout is None:
                    raise sqs_error(
                        "MissingParameter", "The request must contain the parameter VisibilityTimeout."
                    )
            except AwsError as exc:
                failed[index] = failure(entries[index]["Id"], exc)
                continue
            chosen.append((index, receipt))
            changes.append((receipt, timeout))
        outcomes = queue.change_visibility_batch(changes)
        return self._answer("ChangeMessageVisibilityBatch", entries, chosen, outcomes, failed)

    @staticmethod
    def _answer(
        action: str,
        entries: Sequence[Mapping[str, Any]],
        ran: Sequence[tuple[int, str]],
        outcomes: Sequence[BatchlaneError | None],
        failed: dict[int, dict[str, Any]],
    ) -> dict[str, Any]:
        successful: dict[int, dict[str, Any]] = {}
        for (index, _), outcome in zip(ran, outcomes, strict=True):
            entry_id = entries[index]["Id"]
            if outcome is None:
                successful[index] = {"Id": entry_id}
            else:
                failed[index] = failure(entry_id, error_of(outcome, action))
        return {"Successful": _ordered(successful), "Failed": _ordered(failed)}

    def purge_queue(self, params: dict[str, Any], endpoint: str) -> dict[str, Any]:
        queue = self.api.queue_of(params)
        with self._purge_lock:  # two racing purges: one wins, the other is refused
            now = self._clock()
            last = self._purged_at.get(queue.name)
            if last is not None and now - last < PURGE_INTERVAL_S:
                raise sqs_error(
                    "PurgeQueueInProgress",
                    f"Only one PurgeQueue operation on {queue.name} is allowed every {PURGE_INTERVAL_S:g} seconds "
                    f"(the last was {now - last:.0f}s ago).",
                )
            count = queue.purge()
            self._purged_at[queue.name] = now
        log.info("PurgeQueue %s: %d messages deleted", queue.name, count)
        return {}


def _receipts(
    entries: Sequence[Mapping[str, Any]],
) -> tuple[list[tuple[int, str]], dict[int, dict[str, Any]]]:
    """(index, receipt handle) of the entries that have one; ``Failed`` entries for those that do not."""
    receipts: list[tuple[int, str]] = []
    failed: dict[int, dict[str, Any]] = {}
    for index, entry in enumerate(entries):
        receipt = entry.get("ReceiptHandle")
        if isinstance(receipt, str) and receipt:
            receipts.append((index, receipt))
        else:
            missing = sqs_error("MissingParameter", "The request must contain the parameter ReceiptHandle.")
            failed[index] = failure(entry["Id"], missing)
    return receipts, failed


def _ordered(by_index: Mapping[int, dict[str, Any]]) -> list[dict[str, Any]]:
    return [by_index[index] for index in sorted(by_index)]
