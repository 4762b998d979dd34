"""One monitoring run: score monitored texts against a baseline and decide whether they drifted.

Three checks, each reported in ``summary.json``:

* per record (the seed's check): the average cosine similarity to the baseline; a text under the threshold is a
  violation in ``constraint_violations.json``;
* population: the MMD permutation test between baseline and monitored embeddings, significant when its p-value is
  under ``alpha`` (no threshold involved);
* labels (classifier baselines): the predicted-label distribution against the baseline's, a shift when the
  chi-square p-value is under ``alpha`` and the PSI at least 0.1 (significant and material).

Drift is detected when any check fires; the per-record check fires when more than ``max_violation_fraction`` of the
texts are violations (0 by default: any violation, as the seed's ``CompletedWithViolations``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from batchlane.errors import BadInput, ValidationError
from batchlane.monitor import statistics as stats
from batchlane.monitor.baseline import DEFAULT_ALPHA, Baseline
from batchlane.monitor.embedding import Embedder
from batchlane.monitor.records import Texts
from batchlane.storage.base import join_key, open_store

VIOLATIONS_FILE = "constraint_violations.json"
SUMMARY_FILE = "summary.json"
FEATURE_NAME = "sent_cosine_score"
CHECK_TYPE = "baseline_drift_check"


@dataclass(frozen=True)
class RunOptions:
    """Decision settings of a run; ``None`` takes the baseline's constraints.json value."""

    threshold: float | None = None
    alpha: float | None = None
    max_violation_fraction: float = 0.0
    permutations: int = 500
    max_samples: int = 1000
    seed: int = 0
    schedule_name: str | None = None
    endpoint_name: str | None = None

    def __post_init__(self) -> None:
        if self.alpha is not None and not 0.0 < self.alpha < 1.0:
            raise ValidationError(f"--alpha must be between 0 and 1, got {self.alpha}", field="alpha")
        if not 0.0 <= self.max_violation_fraction <= 1.0:
            raise ValidationError(
                f"--max-violation-fraction must be between 0 and 1, got {self.max_violation_fraction}",
                field="max_violation_fraction",
            )
        if self.permutations < 1:
            raise ValidationError(
                f"--permutations must be at least 1, got {self.permutations}", field="permutations"
            )


@dataclass
class RunResult:
    """What a run found: the per-record scores, the violations and the summary."""

    scores: np.ndarray
    violations: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def drift_detected(self) -> bool:
        return bool(self.summary["drift_detected"])


def score_texts(baseline: Baseline, embedder: Embedder, texts: list[str]) -> tuple[np.ndarray, Any]:
    """The per-record scores of ``texts`` against ``baseline`` and their embeddings (with predicted labels)."""
    embedded = embedder.embed(texts)
    return stats.average_cosine(embedded.vectors, baseline.embeddings), embedded


def monitor(
    baseline: Baseline, embedder: Embedder, texts: Texts, options: RunOptions | None = None
) -> RunResult:
    """Run the three checks (module docstring) over ``texts``."""
    options = options or RunOptions()
    if not len(texts):
        raise BadInput("the monitored data holds no texts")
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    scores, embedded = score_texts(baseline, embedder, texts.texts)
    if options.threshold is not None:
        threshold, source = options.threshold, "option"
    elif baseline.constraints.get("sent_cosine_score", {}).get("threshold") is not None:
        threshold, source = baseline.threshold, "constraints.json"
    else:
        threshold, source = baseline.threshold, "seed default"
    alpha = options.alpha or baseline.constraints.get("population", {}).get("alpha", DEFAULT_ALPHA)
    extra = {
        k: v
        for k, v in (
            ("endpoint_name", options.endpoint_name),
            ("monitoring_schedule_name", options.schedule_name),
        )
        if v
    }
    violations = [
        {
            "feature_name": FEATURE_NAME,
            "constraint_check_type": CHECK_TYPE,
            "sentence": texts.texts[i],
            "avg_cosine_score": float(scores[i]),
            **extra,
        }
        for i in np.flatnonzero(scores < threshold)
    ]
    fraction = len(violations) / len(texts)
    per_record = {
        "threshold": threshold,
        "threshold_source": source,
        "violations": len(violations),
        "violation_fraction": fraction,
        "max_violation_fraction": options.max_violation_fraction,
        "distribution": stats.score_summary(scores),
        "drift": bool(violations) and fraction > options.max_violation_fraction,
    }
    if len(texts) >= 2:
        population: dict[str, Any] = stats.mmd_test(
            baseline.embeddings,
            embedded.vectors,
            permutations=options.permutations,
            max_samples=options.max_samples,
            seed=options.seed,
        )
        population.update(alpha=alpha, drift=population["p_value"] < alpha)
    else:
        population = {"test": "mmd", "skipped": "fewer than two monitored texts", "drift": False}
    labels: dict[str, Any] | None = None
    if embedded.labels is not None and baseline.label_counts:
        monitored_counts = stats.label_counts(embedded.labels)
        labels = stats.label_shift(baseline.label_counts, monitored_counts)
        label_alpha = baseline.constraints.get("label_distribution", {}).get("alpha", alpha)
        labels.update(
            counts=monitored_counts,
            alpha=label_alpha,
            drift=labels["p_value"] is not None
            and labels["p_value"] < label_alpha
            and labels["psi"] >= stats.PSI_MODERATE,
        )
    seconds = time.perf_counter() - started
    drift = per_record["drift"] or population["drift"] or bool(labels and labels["drift"])
    summary = {
        "status": "CompletedWithViolations" if drift else "Completed",
        "drift_detected": drift,
        "baseline": str(baseline.path),
        "model": baseline.model_dir,
        "records": len(texts),
        "captured_records": texts.captured_records,
        "skipped_records": texts.skipped_records,
        FEATURE_NAME: per_record,
        "population": population,
        "label_distribution": labels,
        "started": started_at.isoformat(),
        "seconds": round(seconds, 3),
        "records_per_second": round(len(texts) / seconds, 1) if seconds else None,
        **extra,
    }
    return RunResult(scores, violations, summary)


def write_result(result: RunResult, output: str) -> str:
    """Write ``constraint_violations.json`` and ``summary.json`` under ``output`` (a folder or URI); return its URI."""
    store, prefix = open_store(output.rstrip("/") + "/", field="output")
    store.write_bytes(
        join_key(prefix, VIOLATIONS_FILE),
        (json.dumps({"violations": result.violations}, indent=4) + "\n").encode(),
    )
    store.write_bytes(join_key(prefix, SUMMARY_FILE), (json.dumps(result.summary, indent=2) + "\n").encode())
    return store.url_for(join_key(prefix, SUMMARY_FILE))
