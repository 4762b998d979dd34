"""Real-time dynamic batching: concurrent requests share forward passes (``batchlane serve --max-batch-delay-ms T``).

The queue works like text-embeddings-inference's. Each request is decoded and tokenized in its own thread, in
parallel with the model, and then queued with its token ids. One worker thread takes queued requests in arrival
order into a batch while it stays within the request cap (``--max-batch-size`` records) and the token budget
(``--token-budget`` padded tokens), waiting at most ``T`` ms after the oldest request arrived for the batch to fill
(TorchServe's ``maxBatchDelay``; ``0`` runs whatever is queued as soon as the model is free). The merged records run
through ``SequenceClassifier.predict_ids`` (length-sorted, within the budget) and each request gets its own rows
back. While one batch runs, the next one fills. A request that alone fills a batch (a MultiRecord payload) skips
the queue and runs directly; the classifier's single model thread still runs one batch at a time.

Batch assembly (``take_batch``) is a pure function over a plain ``deque``, tested without threads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from batchlane import metrics

if TYPE_CHECKING:
    from batchlane.serving.classifier import SequenceClassifier
    from batchlane.settings import ServeSettings

logger = logging.getLogger(__name__)

# Requests admitted at once when dynamic batching is on: enough to fill the next batch while one runs.
MAX_CONCURRENT_REQUESTS = 256


@dataclass
class Pending:
    """One queued request: its token ids, how many labels it wants, when it arrived, and where its answer goes."""

    ids: Sequence[Sequence[int]]
    k: int = 1
    arrived: float = 0.0
    future: Future[tuple[np.ndarray, np.ndarray]] = field(default_factory=Future)

    @property
    def longest(self) -> int:
        return max((len(row) for row in self.ids), default=1)


def padded_cost(requests: Sequence[Pending]) -> int:
    """Padded tokens of one forward over all records of ``requests``: longest record × record count."""
    records = sum(len(r.ids) for r in requests)
    return max((r.longest for r in requests), default=0) * records


def take_batch(queue: deque[Pending], max_records: int, token_budget: int) -> list[Pending]:
    """Pop requests from the left of ``queue`` while the batch stays within ``max_records`` and ``token_budget``.

    Arrival order is kept (no request is overtaken, so none starves); the first request is always taken, even when
    it alone exceeds a limit.
    """
    batch: list[Pending] = []
    records, longest = 0, 0
    while queue:
        head = queue[0]
        new_records, new_longest = records + len(head.ids), max(longest, head.longest)
        if batch and (new_records > max_records or new_records * new_longest > token_budget):
            break
        batch.append(queue.popleft())
        records, longest = new_records, new_longest
    return batch


def is_full(queue: Sequence[Pending], max_records: int, token_budget: int) -> bool:
    """Whether the queue already holds a full batch (waiting longer cannot make it bigger)."""
    return sum(len(r.ids) for r in queue) >= max_records or padded_cost(queue) >= token_budget


def request_concurrency(settings: ServeSettings, max_concurrent_transforms: int) -> int:
    """Requests the server admits at once: ``MaxConcurrentTransforms``, or many more with dynamic batching on."""
    if not settings.max_batch_delay_ms:
        return max_concurrent_transforms
    cap = 2 * (settings.max_batch_size or 128)
    return max(max_concurrent_transforms, min(MAX_CONCURRENT_REQUESTS, cap))


class DynamicBatcher:
    """Merges concurrent ``classify`` calls of one ``SequenceClassifier`` into shared forward passes."""

    def __init__(
        self,
        classifier: SequenceClassifier,
        *,
        max_delay_ms: float,
        max_records: int | None = None,
        token_budget: int | None = None,
    ) -> None:
        self.classifier = classifier
        self.max_delay_s = max_delay_ms / 1000
        self.max_records = max_records or classifier.max_batch_size
        self.token_budget = token_budget or classifier.token_budget
        self.batches = 0  # forward rounds run by the worker, and the requests they served
        self.requests = 0
        self._queue: deque[Pending] = deque()
        self._condition = threading.Condition()
        self._closed = False
        self._worker: threading.Thread | None = None

    def classify(self, texts: Sequence[str], top_k: int | None = None) -> list[Any]:
        """Same answer as ``SequenceClassifier.classify``; blocks until the batch holding these texts has run."""
        classifier = self.classifier
        k = min(top_k or classifier.top_k, len(classifier.labels))
        if not texts:
            return []
        ids = classifier.encode(texts)
        if len(ids) >= self.max_records:
            scores, labels = classifier.predict_ids(ids, k)
        else:
            pending = Pending(ids, k, time.monotonic())
            with self._condition:
                if self._closed:
                    raise RuntimeError("the dynamic batcher is closed")
                self._start()
                self._queue.append(pending)
                self._condition.notify()
            scores, labels = pending.future.result()
        return classifier.format(scores, labels, k)

    def close(self) -> None:
        """Finish the queued requests and stop the worker thread."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=30)

    def _start(self) -> None:
        if self._worker is None:
            self._worker = threading.Thread(target=self._run, name="batchlane-batcher", daemon=True)
            self._worker.start()

    def _next_batch(self) -> list[Pending] | None:
        with self._condition:
            while not self._queue:
                if self._closed:
                    return None
                self._condition.wait()
            deadline = self._queue[0].arrived + self.max_delay_s
            while not self._closed and not is_full(self._queue, self.max_records, self.token_budget):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._condition.wait(remaining)
            return take_batch(self._queue, self.max_records, self.token_budget)

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._execute(batch)

    def _execute(self, batch: list[Pending]) -> None:
        now = time.monotonic()
        for request in batch:
            metrics.SERVE_QUEUE_WAIT_SECONDS.labels(queue="batch").observe(now - request.arrived)
        k = max(request.k for request in batch)
        ids = [row for request in batch for row in request.ids]
        try:
            scores, labels = self.classifier.predict_ids(ids, k)
        except BaseException as exc:  # every waiting request gets the error; the worker lives on
            for request in batch:
                request.future.set_exception(exc)
            logger.debug("dynamic batch of %d requests failed: %s", len(batch), exc)
            return
        self.batches += 1
        self.requests += len(batch)
        start = 0
        for request in batch:
            end = start + len(request.ids)
            request.future.set_result((scores[start:end], labels[start:end]))
            start = end
