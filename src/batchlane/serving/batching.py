"""Token-budget batch planning: which records run through the model together.

A pure function, so it is tested with plain tables. Padding makes a batch cost ``longest × size`` tokens, so records
are sorted by length (longest first: the most memory-hungry batch runs first and fails fast) and packed greedily
while that padded cost stays within the budget.
"""

from __future__ import annotations

from collections.abc import Sequence


def plan_batches(lengths: Sequence[int], token_budget: int, max_batch_size: int) -> list[list[int]]:
    """Group record indices into batches whose padded size ``max(len) × count`` stays within ``token_budget``.

    ``lengths[i]`` is the token count of record ``i`` (after truncation). Batches hold at most ``max_batch_size``
    indices; a record longer than the whole budget gets a batch of its own. Records are taken longest first, ties in
    input order, so the result is deterministic. Every index appears exactly once; callers scatter results back by
    index to restore input order.

    >>> plan_batches([3, 9, 4, 9], token_budget=20, max_batch_size=8)
    [[1, 3], [2, 0]]
    """
    if token_budget < 1:
        raise ValueError(f"token_budget must be at least 1, got {token_budget}")
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
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
