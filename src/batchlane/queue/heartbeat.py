"""The lease heartbeat of a message being worked on (docs/reliability.md: "keep extending the visibility timeout")."""

from __future__ import annotations

import logging
import threading

from batchlane.errors import StaleReceipt
from batchlane.queue.base import Message, Queue

log = logging.getLogger(__name__)


class Heartbeat:
    """Keeps a received message hidden while it is handled: ``change_visibility(message, extend_s)`` every
    ``interval_s`` seconds, in a daemon thread, from ``__enter__`` until ``stop()``.

    A refused renewal (``StaleReceipt``: the lease expired or another consumer received the message) sets ``lost``
    and ends the thread: the caller must not touch the message again. Other errors (the queue briefly unreachable)
    are logged and the next beat tries again. ``extend_s`` or ``interval_s`` of 0 means no heartbeat.
    """

    def __init__(self, queue: Queue, message: Message, extend_s: int, interval_s: float) -> None:
        self.queue = queue
        self.message = message
        self.extend_s = extend_s
        self.interval_s = interval_s
        self.lost = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        if self.extend_s > 0 and self.interval_s > 0:
            self._thread = threading.Thread(
                target=self._beat, name=f"lease-{self.message.message_id[:8]}", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _beat(self) -> None:
        while not self._done.wait(self.interval_s):
            try:
                self.queue.change_visibility(self.message, self.extend_s)
            except StaleReceipt as exc:
                log.warning("message %s: lease lost, not touching it again: %s", self.message.message_id, exc)
                self.lost.set()
                return
            except Exception:  # the queue may be briefly unreachable: the next beat tries again
                log.exception("message %s: heartbeat failed", self.message.message_id)

    def stop(self) -> None:
        """Stop renewing (before the final delete/release, so a late beat cannot re-hide the message)."""
        self._done.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
