"""The drift baseline: reference embeddings of training-like data and what a monitoring run compares against.

A baseline folder holds:

* ``embeddings.npy``: the reference sentence embeddings (float32, one row per text), as the seed's baseline;
* ``held_out_scores.npy``: the per-record scores of the held-out part of the baseline data against the reference;
* ``statistics.json``: the model and embedding options, the embedding centroid, the held-out score distribution
  and the predicted-label distribution (classifiers);
* ``constraints.json``: the suggested threshold for the per-record score and the population tests' settings.

The held-out texts are scored against the reference exactly as monitored texts will be, so the threshold
(a low quantile of their scores) says how often an in-distribution text falls below it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from batchlane.errors import BadInput, NotFound, ValidationError
from batchlane.monitor import statistics as stats
from batchlane.monitor.embedding import Embedder, EmbeddingOptions
from batchlane.monitor.records import Texts

logger = logging.getLogger(__name__)

EMBEDDINGS = "embeddings.npy"
HELD_OUT_SCORES = "held_out_scores.npy"
STATISTICS = "statistics.json"
CONSTRAINTS = "constraints.json"
# The seed's THRESHOLD, used when a baseline's constraints.json names none.
SEED_THRESHOLD = 0.5
DEFAULT_HELD_OUT = 0.2
# About 1 in 1,000 in-distribution texts scores below the suggested threshold.
DEFAULT_QUANTILE = 0.001
DEFAULT_ALPHA = 0.01


@dataclass
class Baseline:
    """A loaded baseline folder (module docstring)."""

    path: Path
    embeddings: np.ndarray
    held_out_scores: np.ndarray
    statistics: dict[str, Any]
    constraints: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path) -> Baseline:
        """Read a baseline folder; ``NotFound`` / ``BadInput`` name the missing or broken file."""
        folder = Path(path)
        if not (folder / EMBEDDINGS).is_file():
            raise NotFound(
                f"--baseline {folder}: no {EMBEDDINGS} (make one with `batchlane monitor baseline`)"
            )
        try:
            embeddings = np.load(folder / EMBEDDINGS)
            scores_file = folder / HELD_OUT_SCORES
            scores = np.load(scores_file) if scores_file.is_file() else np.empty(0)
            statistics = (
                json.loads((folder / STATISTICS).read_text()) if (folder / STATISTICS).is_file() else {}
            )
            constraints = (
                json.loads((folder / CONSTRAINTS).read_text()) if (folder / CONSTRAINTS).is_file() else {}
            )
        except (ValueError, OSError) as exc:
            raise BadInput(f"--baseline {folder}: {exc}") from None
        if embeddings.ndim != 2 or len(embeddings) < 2:
            raise BadInput(
                f"--baseline {folder}/{EMBEDDINGS}: expected a 2-d array of at least two embeddings"
            )
        return cls(folder, embeddings.astype(np.float32), scores, statistics, constraints)

    @property
    def model_dir(self) -> str | None:
        return self.statistics.get("model")

    @property
    def threshold(self) -> float:
        """The per-record threshold from constraints.json, or the seed's 0.5 when it names none."""
        value = self.constraints.get("sent_cosine_score", {}).get("threshold")
        return float(value) if value is not None else SEED_THRESHOLD

    @property
    def label_counts(self) -> dict[str, int] | None:
        return self.statistics.get("label_distribution")

    def embedding_options(self, **overrides: Any) -> EmbeddingOptions:
        """The options the baseline was embedded with (so a run embeds the same way), plus runtime overrides."""
        recorded = self.statistics.get("embedding", {})
        known = {
            "layers": tuple(recorded["layers"]) if "layers" in recorded else None,
            "pooling": recorded.get("pooling"),
            "max_length": recorded.get("max_length"),
        }
        values = {k: v for k, v in {**known, **overrides}.items() if v is not None}
        return EmbeddingOptions(**values)


def build_baseline(
    embedder: Embedder,
    texts: Texts,
    output: Path,
    *,
    model_dir: str,
    held_out: float = DEFAULT_HELD_OUT,
    quantile: float = DEFAULT_QUANTILE,
    max_records: int | None = None,
    seed: int = 0,
) -> Baseline:
    """Embed ``texts``, split off ``held_out`` of them, score those against the rest and write the baseline folder."""
    if not 0.0 < held_out < 1.0:
        raise ValidationError(f"--held-out must be between 0 and 1, got {held_out}", field="held_out")
    if not 0.0 <= quantile < 1.0:
        raise ValidationError(f"--quantile must be in [0, 1), got {quantile}", field="quantile")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(texts))
    if max_records is not None:
        order = order[:max_records]
    held = int(round(len(order) * held_out))
    if held < 1 or len(order) - held < 2:
        raise BadInput(
            f"the baseline data has {len(order)} texts; it needs at least two to keep and one to hold out "
            f"(--held-out {held_out})"
        )
    chosen = [texts.texts[i] for i in order]
    started = time.perf_counter()
    embedded = embedder.embed(chosen)
    seconds = time.perf_counter() - started
    reference, held_vectors = embedded.vectors[held:], embedded.vectors[:held]
    scores = stats.average_cosine(held_vectors, reference)
    threshold = stats.suggest_threshold(scores, quantile)
    statistics: dict[str, Any] = {
        "version": 1,
        "model": str(Path(model_dir).resolve()),
        "model_kind": "classifier" if embedder.classifier else "encoder",
        "embedding": {**embedder.options.describe(), "max_length": embedder.max_length},
        "dimension": int(reference.shape[1]),
        "records": {"reference": int(len(reference)), "held_out": int(held)},
        "centroid": reference.astype(np.float64).mean(axis=0).tolist(),
        "score_distribution": stats.score_summary(scores),
        "label_distribution": stats.label_counts(embedded.labels) if embedded.labels is not None else None,
        "embedding_seconds": round(seconds, 3),
    }
    constraints = {
        "version": 1,
        "sent_cosine_score": {
            "constraint_check_type": "baseline_drift_check",
            "threshold": threshold,
            "quantile": quantile,
        },
        "population": {"test": "mmd", "alpha": DEFAULT_ALPHA},
        "label_distribution": {"psi_moderate": stats.PSI_MODERATE, "alpha": DEFAULT_ALPHA},
    }
    output.mkdir(parents=True, exist_ok=True)
    np.save(output / EMBEDDINGS, reference)
    np.save(output / HELD_OUT_SCORES, scores.astype(np.float32))
    (output / STATISTICS).write_text(json.dumps(statistics, indent=2) + "\n")
    (output / CONSTRAINTS).write_text(json.dumps(constraints, indent=2) + "\n")
    logger.info(
        "baseline of %d texts (%d held out) in %s: threshold %.4f (quantile %g of held-out scores)",
        len(chosen),
        held,
        output,
        threshold,
        quantile,
    )
    return Baseline(output, reference, scores, statistics, constraints)
