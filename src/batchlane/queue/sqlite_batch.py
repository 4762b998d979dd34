"""Batch actions of the embedded queue, as a part of ``SqliteQueue``: send, delete and change visibility for many
messages in one transaction.

Each entry succeeds or fails on its own, as in SQS's batch calls: the result lists, per entry, what the single
action returns or the error it raises, and a refused entry writes nothing while the others go ahead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from batchlane.errors import BatchlaneError
from batchlane.queue.base import Outcome, Receipt, SendEntry, SendOutcome


def _attempt(action: Callable[..., None], *args: Any) -> Outcome:
    """Run one entry of a batch: None if it succeeded, the refusal if it raised one (nothing was written then)."""
    try:
        action(*args)
    except BatchlaneError as exc:
        return exc
    return None


class SqliteBatchActions:
    """Batch methods of ``SqliteQueue`` (they use its ``_tx``, ``_config``, ``_clock`` and single actions)."""

    def send_batch(self, entries: Sequence[SendEntry]) -> list[SendOutcome]:
        """``send`` for each entry, in one transaction; per entry, its message id or the error ``send`` raises."""
        out: list[SendOutcome] = []
        checked: list[tuple[int, SendEntry, str]] = []
        for index, entry in enumerate(entries):
            try:
                checked.append((index, entry, self._checked(entry)))
                out.append("")  # the message id, once sent
            except BatchlaneError as exc:
                out.append(exc)
        if checked:
            now = self._clock()
            with self._tx() as conn:
                self._config(conn)
                for index, entry, attrs in checked:
                    out[index] = self._insert(conn, entry, attrs, now)
        return out

    def delete_batch(self, receipts: Sequence[Receipt]) -> list[Outcome]:
        """``delete`` for each receipt, in one transaction; per receipt, None or the StaleReceipt/ValidationError
        that refused it (the others are deleted all the same)."""
        now = self._clock()
        with self._tx() as conn:
            return [_attempt(self._delete, conn, receipt, now) for receipt in receipts]

    def change_visibility_batch(self, changes: Sequence[tuple[Receipt, int]]) -> list[Outcome]:
        """``change_visibility`` for each (receipt, timeout_s), in one transaction; per pair, None or its error."""
        now = self._clock()
        with self._tx() as conn:
            return [
                _attempt(self._change_visibility, conn, receipt, timeout_s, None, now)
                for receipt, timeout_s in changes
            ]
