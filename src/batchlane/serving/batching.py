"""Token-budget batch planning: which records run through the model together, and their padded arrays.

Pure functions, so they are tested with plain tables. Padding makes a batch cost ``longest × size`` tokens, so records
are sorted by length (longest first: the most memory-hungry batch runs first and fails fast) and packed greedily
while that padded cost stays within the budget.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np


def plan_batches(
    lengths: Sequence[int], token_budget: int, max_batch_size: int, *, batch_overhead: int | None = None
) -> list[list[int]]:
    """Group record indices into batches whose padded size ``max(len) × count`` stays within ``token_budget``.

    ``lengths[i]`` is the token count of record ``i`` (after truncation). Batches hold at most ``max_batch_size``
    indices; a record longer than the whole budget gets a batch of its own. Records are taken longest first, ties in
    input order, so the result is deterministic. Every index appears exactly once; callers scatter results back by
    index to restore input order.

    Without ``batch_overhead`` batches are filled greedily up to the budget. With it, the longest-first order is cut
    where it costs least: the padded tokens of all batches plus ``batch_overhead`` tokens per batch (the fixed cost
    of a forward pass) are minimised, so a long-tailed payload does not pad its short records to a long one's width
    just because the budget had room.

    >>> plan_batches([3, 9, 4, 9], token_budget=20, max_batch_size=8)
    [[1, 3], [2, 0]]
    >>> plan_batches([9, 9, 2, 2], token_budget=40, max_batch_size=8, batch_overhead=4)
    [[0, 1], [2, 3]]
    """
    if token_budget < 1:
        raise ValueError(f"token_budget must be at least 1, got {token_budget}")
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    if batch_overhead is not None:
        return _least_cost_cuts(order, lengths, token_budget, max_batch_size, batch_overhead)
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in order:
        length = max(1, lengths[index])
        # Longest first means the batch's padded width is set by its first member.
        width = max(longest, length)
        if current and (len(current) >= max_batch_size or width * (len(current) + 1) > token_budget):
            batches.append(current)
            current, width = [], length
        current.append(index)
        longest = width
    if current:
        batches.append(current)
    return batches


def _least_cost_cuts(
    order: list[int], lengths: Sequence[int], token_budget: int, max_batch_size: int, overhead: int
) -> list[list[int]]:
    """Cut ``order`` (longest first) into contiguous batches of least total padded tokens + ``overhead`` each.

    Dynamic programming over prefixes, one vectorised step per record: ``cost[j]`` is the cheapest way to batch the
    first ``j`` records, and a batch ``order[i:j]`` costs ``width(order[i]) × (j - i)``.
    """
    widths = np.array([max(1, lengths[i]) for i in order], dtype=np.int64)
    n = len(order)
    cost = np.zeros(n + 1, dtype=np.int64)
    start = np.zeros(n + 1, dtype=np.int64)
    for end in range(1, n + 1):
        first = max(0, end - max_batch_size)
        candidates = np.arange(first, end)
        padded = widths[first:end] * (end - candidates)
        total = cost[first:end] + padded + overhead
        # A record alone may exceed the budget; a batch of several may not.
        total[(padded > token_budget) & (candidates < end - 1)] = np.iinfo(np.int64).max
        best = int(np.argmin(total))  # the first minimum: the largest batch among equal costs
        cost[end], start[end] = total[best], first + best
    batches: list[list[int]] = []
    end = n
    while end > 0:
        batches.append(order[start[end] : end])
        end = int(start[end])
    return batches[::-1]


def pad_batch(
    ids: Sequence[Sequence[int]], batch: Sequence[int], pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(input_ids, attention_mask)`` int64 arrays for the records ``batch`` of ``ids``, right-padded with ``pad_id``.

    The width is the longest record of the batch. One flat copy and one masked assignment, no per-token Python.

    >>> pad_batch([[5, 6, 7], [8]], [0, 1], pad_id=0)[0].tolist()
    [[5, 6, 7], [8, 0, 0]]
    """
    rows = [ids[i] for i in batch]
    lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
    width = int(lengths.max()) if len(rows) else 0
    mask = np.arange(width, dtype=np.int64)[None, :] < lengths[:, None]
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    # Row-major order of the mask's True cells is exactly the concatenation order of the rows.
    input_ids[mask] = np.fromiter(
        itertools.chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum())
    )
    return input_ids, mask.astype(np.int64)
