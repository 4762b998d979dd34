"""Drift statistics: pure numpy functions over embeddings, scores and label counts (tested with plain tables).

* ``average_cosine``: the seed's per-record score, the mean cosine similarity of a text's embedding to every
  baseline embedding.
* ``mmd_test``: maximum mean discrepancy between the baseline and the monitored embeddings, with a permutation
  p-value, a population test that needs no threshold.
* ``label_shift``: population stability index and a chi-square test between two predicted-label distributions.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

# Proportions are floored at this before the PSI's logarithm, so a label absent on one side does not make it infinite.
PSI_FLOOR = 1e-4
# The usual reading of a PSI: under 0.1 no shift, 0.1-0.25 moderate, over 0.25 a major shift.
PSI_MODERATE = 0.1


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1 (a zero row stays zero), as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, np.finfo(np.float32).tiny)


def baseline_direction(baseline: np.ndarray) -> np.ndarray:
    """The mean of the normalised baseline embeddings: the one vector ``average_cosine`` needs."""
    return unit_rows(baseline).astype(np.float64).mean(axis=0)


def average_cosine(embeddings: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """Per row of ``embeddings``: its cosine similarity to each baseline row, averaged (the seed's score).

    The mean of ``u·v_j`` over the normalised baseline rows ``v_j`` is ``u · mean(v_j)``, so the whole ``n × m``
    similarity matrix reduces to one matrix product of the normalised embeddings with the normalised baseline's
    mean: exactly the seed's average, at ``n × d`` cost instead of ``n × m × d``. ``baseline`` may also be that
    mean already (a 1-d array).
    """
    direction = baseline if np.ndim(baseline) == 1 else baseline_direction(baseline)
    return unit_rows(embeddings).astype(np.float64) @ np.asarray(direction, dtype=np.float64)


def suggest_threshold(held_out_scores: np.ndarray, quantile: float) -> float:
    """The ``quantile`` of the held-out baseline scores: about that share of in-distribution texts fall below it."""
    if not 0.0 <= quantile < 1.0:
        raise ValueError(f"quantile must be in [0, 1), got {quantile}")
    return float(np.quantile(np.asarray(held_out_scores, dtype=np.float64), quantile))


def score_summary(scores: np.ndarray, bins: int = 20) -> dict[str, Any]:
    """Count, mean, standard deviation, min/max, percentiles and a histogram of per-record scores."""
    scores = np.asarray(scores, dtype=np.float64)
    if not len(scores):
        return {"count": 0}
    counts, edges = np.histogram(scores, bins=bins)
    percentiles = (0.1, 1, 5, 25, 50, 75, 95, 99)
    return {
        "count": int(len(scores)),
        "mean": float(scores.mean()),
        "std": float(scores.std()),
        "min": float(scores.min()),
        "max": float(scores.max()),
        "percentiles": {f"p{p:g}": float(np.percentile(scores, p)) for p in percentiles},
        "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
    }


def mmd_test(
    baseline: np.ndarray,
    monitored: np.ndarray,
    *,
    permutations: int = 500,
    max_samples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Maximum mean discrepancy (squared, biased estimate) between two sets of embeddings, with a permutation p-value.

    The rows are normalised (cosine geometry, as the per-record score) and compared with a Gaussian kernel whose
    bandwidth is the median pairwise squared distance (the median heuristic). Each side is subsampled to
    ``max_samples`` rows. The p-value is the share of ``permutations`` random relabellings of the pooled rows whose
    MMD² is at least the observed one (counting the observed one, so it is never 0). All permutations are evaluated
    as one matrix product: MMD² for a split is ``wᵀKw`` with ``w`` = ``1/n`` on one side and ``-1/m`` on the other.
    """
    rng = np.random.default_rng(seed)
    x, y = unit_rows(baseline), unit_rows(monitored)
    if len(x) < 2 or len(y) < 2:
        raise ValueError("the MMD test needs at least two embeddings on each side")
    if len(x) > max_samples:
        x = x[rng.choice(len(x), max_samples, replace=False)]
    if len(y) > max_samples:
        y = y[rng.choice(len(y), max_samples, replace=False)]
    pooled = np.vstack([x, y]).astype(np.float64)
    n, total = len(x), len(pooled)
    squared = np.maximum(2.0 - 2.0 * (pooled @ pooled.T), 0.0)  # unit vectors: |a-b|² = 2 - 2a·b
    off_diagonal = squared[~np.eye(total, dtype=bool)]
    bandwidth = float(np.median(off_diagonal)) or float(off_diagonal.mean()) or 1.0
    kernel = np.exp(-squared / bandwidth)
    sides = np.empty((total, permutations + 1), dtype=bool)
    sides[:, 0] = np.arange(total) < n
    for column in range(1, permutations + 1):
        sides[:, column] = sides[rng.permutation(total), 0]
    weights = np.where(sides, 1.0 / n, -1.0 / (total - n))
    statistics = np.einsum("ip,ip->p", weights, kernel @ weights)
    observed = float(statistics[0])
    p_value = float((1 + np.count_nonzero(statistics[1:] >= observed)) / (permutations + 1))
    return {
        "test": "mmd",
        "mmd2": observed,
        "p_value": p_value,
        "permutations": permutations,
        "kernel": "gaussian",
        "bandwidth": bandwidth,
        "baseline_samples": int(n),
        "monitored_samples": int(total - n),
    }


def label_counts(labels: Iterable[str]) -> dict[str, int]:
    """Label → count, most frequent first."""
    return dict(Counter(labels).most_common())


def label_shift(baseline: Mapping[str, int], monitored: Mapping[str, int]) -> dict[str, Any]:
    """Population stability index and Pearson's chi-square goodness of fit of ``monitored`` against ``baseline``.

    Both are over the union of labels. The PSI is ``Σ (q - p) ln(q / p)`` over floored proportions; the chi-square
    statistic compares the monitored counts with ``n × p`` (``p`` floored the same way, so a label the baseline never
    predicted counts as a large deviation rather than a division by zero), with ``k - 1`` degrees of freedom.
    """
    labels = sorted(set(baseline) | set(monitored))
    base = np.array([baseline.get(label, 0) for label in labels], dtype=np.float64)
    seen = np.array([monitored.get(label, 0) for label in labels], dtype=np.float64)
    if base.sum() == 0 or seen.sum() == 0:
        return {"labels": labels, "psi": None, "chi2": None, "p_value": None}
    p = np.maximum(base / base.sum(), PSI_FLOOR)
    q = np.maximum(seen / seen.sum(), PSI_FLOOR)
    psi = float(np.sum((q - p) * np.log(q / p)))
    expected = seen.sum() * p / p.sum()
    chi2 = float(np.sum((seen - expected) ** 2 / expected))
    dof = len(labels) - 1
    return {
        "labels": labels,
        "baseline": {label: float(v) for label, v in zip(labels, base / base.sum(), strict=True)},
        "monitored": {label: float(v) for label, v in zip(labels, seen / seen.sum(), strict=True)},
        "psi": psi,
        "chi2": chi2,
        "degrees_of_freedom": dof,
        "p_value": chi2_survival(chi2, dof) if dof > 0 else 1.0,
    }


def chi2_survival(statistic: float, dof: int) -> float:
    """P(X ≥ statistic) for a chi-square variable with ``dof`` degrees of freedom.

    >>> round(chi2_survival(3.841, 1), 3)
    0.05
    """
    from scipy.stats import chi2

    return float(chi2.sf(statistic, dof)) if math.isfinite(statistic) else 0.0
