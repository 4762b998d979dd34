"""How a message the queue worker handled ends: deleted, released, dead-lettered or retried with a backoff.

``MessageEndings`` is a part of ``queue.worker.Worker`` (it uses the worker's ``queue`` and retry settings). A
permanent error (``queue.message.is_permanent``) dead-letters the message with its reason; any other error hides it
for ``retry_delay_s``; a ``StaleReceipt`` means another worker owns the message now, which is never an error here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from batchlane.errors import BatchlaneError, StaleReceipt
from batchlane.jobs.records import JobRecord
from batchlane.queue.base import Message, Queue
from batchlane.queue.heartbeat import Heartbeat
from batchlane.queue.launcher import retry_delay_s
from batchlane.queue.message import is_permanent
from batchlane.queue.outcome import Action, Outcome

log = logging.getLogger("batchlane.queue.worker")


class MessageEndings:
    """The endings of a handled message, for ``Worker``."""

    queue: Queue
    retry_backoff_s: float
    max_retry_backoff_s: float

    def _failed(self, message: Message, lease: Heartbeat, exc: Exception) -> Outcome:
        reason = str(exc) or type(exc).__name__
        if lease.lost.is_set():
            log.warning("message %s failed after its lease was lost: %s", message.message_id, reason)
            return Outcome(message.message_id, Action.LEASE_LOST, reason=reason)
        if is_permanent(exc):
            log.warning("message %s: permanent error, dead-lettering it: %s", message.message_id, reason)
            try:
                self.queue.dead_letter(message, reason)
            except StaleReceipt as stale:
                log.warning("message %s: could not dead-letter it: %s", message.message_id, stale)
                return Outcome(message.message_id, Action.LEASE_LOST, reason=reason)
            except Exception:
                log.exception("message %s: dead-lettering failed; it will be redelivered", message.message_id)
                return Outcome(message.message_id, Action.RETRY, reason=reason)
            return Outcome(message.message_id, Action.DEAD_LETTERED, reason=reason)
        delay = retry_delay_s(message.receive_count, self.retry_backoff_s, self.max_retry_backoff_s)
        if isinstance(exc, BatchlaneError):
            log.warning("message %s: transient error, retrying in %ss: %s", message.message_id, delay, reason)
        else:
            log.exception("message %s: unexpected error, retrying in %ss", message.message_id, delay)
        try:
            self.queue.change_visibility(message, delay, reason=reason)
        except StaleReceipt:
            return Outcome(message.message_id, Action.LEASE_LOST, reason=reason)
        except Exception:
            log.exception(
                "message %s: could not release it; it returns when its lease ends", message.message_id
            )
        return Outcome(message.message_id, Action.RETRY, reason=reason)

    def _delete(self, message: Message, action: Action, record: JobRecord, reason: str | None) -> Outcome:
        try:
            self.queue.delete(message)
        except StaleReceipt as exc:
            # Another worker holds the message now; the job name makes its run find this job.
            log.warning(
                "message %s: delete refused (%s); another worker owns it now", message.message_id, exc
            )
            return self._outcome(message, Action.LEASE_LOST, record, str(exc))
        return self._outcome(message, action, record, reason)

    def _release(self, message: Message, reason: str, record: JobRecord | None = None) -> Outcome:
        self._quietly(lambda: self.queue.nack(message))
        log.info("message %s released: %s", message.message_id, reason)
        return self._outcome(message, Action.RELEASED, record, reason)

    @staticmethod
    def _outcome(message: Message, action: Action, record: JobRecord | None, reason: str | None) -> Outcome:
        return Outcome(
            message.message_id,
            action,
            record.name if record else None,
            record.status.value if record else None,
            reason,
        )

    @staticmethod
    def _quietly(action: Callable[[], object]) -> None:
        try:
            action()
        except StaleReceipt as exc:
            log.info("%s", exc)
        except Exception:
            log.exception("ignored error")
