"""The drift statistics (batchlane.monitor.statistics) on plain arrays and tables."""

from __future__ import annotations

import numpy as np
import pytest

from batchlane.monitor import statistics as stats


def seed_average_cosine(vector: np.ndarray, baseline: np.ndarray) -> float:
    """The seed's loop: 1 - scipy's cosine distance to every baseline embedding, averaged."""
    from scipy.spatial.distance import cosine

    return sum(1 - cosine(vector, item) for item in baseline) / len(baseline)


def test_average_cosine_is_the_seeds_pairwise_average() -> None:
    rng = np.random.default_rng(1)
    baseline = rng.normal(size=(50, 16)).astype(np.float32) + 0.3
    monitored = rng.normal(size=(7, 16)).astype(np.float32)
    scores = stats.average_cosine(monitored, baseline)
    expected = [seed_average_cosine(row, baseline) for row in monitored]
    assert scores.shape == (7,)
    np.testing.assert_allclose(scores, expected, atol=1e-6)
    # The precomputed direction gives the same scores.
    np.testing.assert_allclose(stats.average_cosine(monitored, stats.baseline_direction(baseline)), scores)


def test_average_cosine_ignores_vector_length() -> None:
    baseline = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    scores = stats.average_cosine(np.array([[10.0, 0.0], [0.1, 0.1]], dtype=np.float32), baseline)
    np.testing.assert_allclose(scores, [0.5, np.sqrt(0.5)], atol=1e-6)


@pytest.mark.parametrize(("quantile", "expected"), [(0.0, 0.1), (0.5, 0.5), (0.25, 0.3)])
def test_suggest_threshold_is_a_quantile(quantile: float, expected: float) -> None:
    assert stats.suggest_threshold(np.array([0.1, 0.3, 0.5, 0.7, 0.9]), quantile) == pytest.approx(expected)


def test_mmd_does_not_flag_two_samples_of_one_distribution() -> None:
    rng = np.random.default_rng(2)
    centre = rng.normal(size=16)
    result = stats.mmd_test(
        centre + rng.normal(size=(200, 16)), centre + rng.normal(size=(60, 16)), permutations=200
    )
    assert result["p_value"] > 0.05
    assert result["baseline_samples"] == 200 and result["monitored_samples"] == 60


def test_mmd_flags_a_shifted_sample_with_the_smallest_p_value() -> None:
    rng = np.random.default_rng(3)
    centre = rng.normal(size=16)
    other = rng.normal(size=16)
    result = stats.mmd_test(
        centre + rng.normal(size=(200, 16)), other + rng.normal(size=(30, 16)), permutations=199
    )
    assert result["p_value"] == pytest.approx(1 / 200)
    assert result["mmd2"] > 0


def test_mmd_subsamples_large_inputs() -> None:
    rng = np.random.default_rng(4)
    result = stats.mmd_test(
        rng.normal(size=(500, 8)), rng.normal(size=(300, 8)), permutations=20, max_samples=100
    )
    assert (result["baseline_samples"], result["monitored_samples"]) == (100, 100)


def test_label_shift_of_the_same_distribution_is_nothing() -> None:
    result = stats.label_shift({"a": 50, "b": 30, "c": 20}, {"a": 5, "b": 3, "c": 2})
    assert result["psi"] == pytest.approx(0.0, abs=1e-12)
    assert result["p_value"] == pytest.approx(1.0)


def test_label_shift_flags_a_new_mix_and_an_unseen_label() -> None:
    result = stats.label_shift({"a": 80, "b": 20}, {"a": 10, "b": 60, "new": 30})
    assert result["labels"] == ["a", "b", "new"]
    assert result["psi"] > 0.25
    assert result["p_value"] < 1e-6
    assert result["monitored"]["new"] == pytest.approx(0.3)


def test_label_shift_without_counts_has_no_statistics() -> None:
    assert stats.label_shift({}, {"a": 3})["psi"] is None


def test_score_summary_histogram_counts_every_score() -> None:
    summary = stats.score_summary(np.linspace(0, 1, 101))
    assert summary["count"] == 101
    assert sum(summary["histogram"]["counts"]) == 101
    assert summary["percentiles"]["p50"] == pytest.approx(0.5)
