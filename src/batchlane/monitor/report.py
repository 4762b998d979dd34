"""The score-distribution plot: baseline (held-out) scores against monitored scores, with the threshold (PNG).

matplotlib (the ``monitor`` extra) is imported here only, with its non-interactive Agg backend, so the plot is
written on machines without a display.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from batchlane.errors import ValidationError


def plot_scores(
    baseline_scores: np.ndarray,
    monitored: dict[str, np.ndarray],
    threshold: float,
    output: Path,
    *,
    title: str = "Average cosine similarity to the baseline",
) -> Path:
    """Write overlaid histograms (densities) of ``baseline_scores`` and each ``monitored`` series to ``output``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValidationError(
            "the report needs matplotlib: pip install 'batchlane[monitor]'", field="output"
        ) from None
    series = {"baseline (held out)": np.asarray(baseline_scores, dtype=np.float64)}
    series.update({name: np.asarray(values, dtype=np.float64) for name, values in monitored.items()})
    values = np.concatenate([v for v in series.values() if len(v)] + [np.array([threshold])])
    edges = np.linspace(values.min() - 0.01, values.max() + 0.01, 41)
    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=100)
    for name, scores in series.items():
        if len(scores):
            axes.hist(scores, bins=edges, density=True, alpha=0.55, label=f"{name} (n={len(scores)})")
    axes.axvline(threshold, color="black", linestyle="--", linewidth=1.2, label=f"threshold {threshold:.3f}")
    axes.set_xlabel("average cosine similarity to the baseline (sent_cosine_score)")
    axes.set_ylabel("density")
    axes.set_title(title)
    axes.legend(loc="upper left")
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, format="png")
    plt.close(figure)
    return output
