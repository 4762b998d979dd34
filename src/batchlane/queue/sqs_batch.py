"""Batch actions of the SQS backend, as a part of ``SqsQueue``: SendMessageBatch, DeleteMessageBatch and
ChangeMessageVisibilityBatch, split into calls within SQS's limits (10 entries, 1 MiB).

Each entry succeeds or fails on its own: the result lists, per entry, the single action's result or its error
(found invalid here before sending, or SQS's ``Failed`` entry). A call that fails as a whole raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from batchlane.errors import BatchlaneError
from batchlane.queue.base import (
    MAX_BATCH_BYTES,
    MAX_BATCH_ENTRIES,
    MAX_VISIBILITY_TIMEOUT_S,
    Outcome,
    Receipt,
    SendEntry,
    SendOutcome,
    check_range,
    receipt_of,
)
from batchlane.queue.sqs_errors import error_for, translate_errors


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


class SqsBatchActions:
    """Batch methods of ``SqsQueue`` (they use its client, ``_send_params`` and receipt cache)."""

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
            with translate_errors(f"send to {self.name}"):
                answer = self._client.send_message_batch(QueueUrl=self.url, Entries=batch)
            for done in answer.get("Successful", []):
                out[int(done["Id"])] = done["MessageId"]
            for failed in answer.get("Failed", []):
                out[int(failed["Id"])] = error_for(
                    f"send to {self.name}", failed["Code"], failed.get("Message", "")
                )
        return out

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
            with translate_errors(f"{what} {self.name}"):
                answer = call(QueueUrl=self.url, Entries=[{"Id": str(i), **entries[i]} for i in chunk])
            for failed in answer.get("Failed", []):
                out[int(failed["Id"])] = error_for(
                    f"{what} {self.name}", failed["Code"], failed.get("Message", "")
                )
        return out
