"""Dead letters on SQS, as a part of ``SqsQueue``: dead-lettering with a reason, listing, and redrive.

SQS cannot peek, so listing and redriving receive the dead letters and release the ones they leave; a message
dead-lettered here is a copy carrying the reason as attributes (see :mod:`batchlane.queue.sqs_attributes`).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import suppress

from batchlane.errors import NotFound, StaleReceipt, ValidationError
from batchlane.queue.base import MAX_MESSAGES_PER_RECEIVE, DeadLetter, Message, Receipt
from batchlane.queue.sqs_attributes import (
    ATTR_ATTEMPTS,
    ATTR_ORIGINAL_ID,
    ATTR_REASON,
    ATTR_REDRIVE_COUNT,
    ATTR_REDRIVEN_FROM,
    ATTR_SENT_AT,
    ATTR_SOURCE,
    DEAD_LETTER_ATTRS,
    MAX_ATTRIBUTES,
    MAX_REASON_CHARS,
)

# Longer than the source queue's, as AWS advises: expiry counts from the original send.
DEAD_LETTER_RETENTION_S = 14 * 86_400
PEEK_VISIBILITY_S = 30  # how long listing or redriving hides a dead letter before it is released again
REDRIVE_VISIBILITY_S = 900  # long enough to resend a large batch before the first ones reappear
MAX_REDRIVE = 10_000  # dead letters looked at per redrive call (run it again for more)


class SqsDeadLetters:
    """Dead-letter methods of ``SqsQueue`` (they use its ``dead_letter_queue``, receipt cache and single actions)."""

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
                visibility_timeout_s=visibility_s,
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
