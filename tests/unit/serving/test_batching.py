"""The token-budget batch planner, tested with plain tables."""

from __future__ import annotations

import random

import pytest

from batchlane.serving.batching import plan_batches


@pytest.mark.parametrize(
    ("lengths", "budget", "max_size", "expected"),
    [
        ([], 100, 8, []),
        ([5], 100, 8, [[0]]),
        # Longest first, ties keep input order, padded cost = longest x count.
        ([3, 9, 4, 9], 20, 8, [[1, 3], [2, 0]]),
        ([10, 10, 10, 10], 40, 8, [[0, 1, 2, 3]]),
        ([10, 10, 10, 10], 39, 8, [[0, 1, 2], [3]]),
        # The batch-size cap applies even when the budget would allow more.
        ([1, 1, 1, 1, 1], 1000, 2, [[0, 1], [2, 3], [4]]),
        # A record longer than the whole budget still runs, alone.
        ([50, 2, 2], 10, 8, [[0], [1, 2]]),
        # Short records pack densely once the long ones are out of the way.
        ([8, 2, 8, 2, 2, 2], 16, 8, [[0, 2], [1, 3, 4, 5]]),
        # Zero-length records count as one token.
        ([0, 0, 0], 2, 8, [[0, 1], [2]]),
    ],
)
def test_plan_batches(lengths: list[int], budget: int, max_size: int, expected: list[list[int]]) -> None:
    assert plan_batches(lengths, budget, max_size) == expected


@pytest.mark.parametrize("seed", range(5))
def test_every_index_once_and_within_budget(seed: int) -> None:
    rng = random.Random(seed)
    lengths = [rng.randint(1, 512) for _ in range(rng.randint(1, 300))]
    budget, max_size = rng.choice([512, 2048, 8192]), rng.choice([1, 16, 64])
    batches = plan_batches(lengths, budget, max_size)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= max_size
        width = max(lengths[i] for i in batch)
        assert width == lengths[batch[0]]
        assert width * len(batch) <= budget or len(batch) == 1


@pytest.mark.parametrize(("budget", "max_size"), [(0, 8), (10, 0)])
def test_rejects_empty_limits(budget: int, max_size: int) -> None:
    with pytest.raises(ValueError):
        plan_batches([1, 2], budget, max_size)
