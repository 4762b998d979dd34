"""Classification metrics in pure numpy: confusion matrix, accuracy, per-label precision/recall/F1, macro-F1.

Conventions follow scikit-learn with ``zero_division=0``: a label never predicted has precision 0, a label with no
support has recall 0. Macro-F1 averages over the labels that occur in the truth or the predictions (scikit-learn's
default label set), so a label the model knows but the evaluation data never mentions does not drag the mean down.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, n_labels: int
) -> np.ndarray:
    """``cm[i, j]`` = number of records with true label ``i`` predicted as ``j`` (int64, ``n_labels`` square)."""
    true = np.asarray(y_true, dtype=np.int64)
    pred = np.asarray(y_pred, dtype=np.int64)
    if true.shape != pred.shape:
        raise ValueError(f"y_true and y_pred differ in length ({true.size} vs {pred.size})")
    if true.size and (min(true.min(), pred.min()) < 0 or max(true.max(), pred.max()) >= n_labels):
        raise ValueError(f"label ids must lie in [0, {n_labels})")
    cm = np.zeros((n_labels, n_labels), dtype=np.int64)
    np.add.at(cm, (true, pred), 1)
    return cm


def per_label_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per label (row = truth, column = prediction), zero where undefined."""
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    support = cm.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / denom, 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def classification_report(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, labels: Sequence[str]
) -> dict:
    """All metrics as a JSON-ready dict.

    ``labels[i]`` names label id ``i``. Keys: ``n``, ``accuracy``, ``macro_f1``, ``macro_f1_labels`` (the labels
    macro-F1 averages over), ``per_label`` (label → precision/recall/f1/support, in ``labels`` order) and
    ``confusion_matrix`` (``{"labels": [...], "rows": "true", "columns": "predicted", "matrix": [[...]]}``).
    """
    cm = confusion_matrix(y_true, y_pred, len(labels))
    scores = per_label_scores(cm)
    n = int(cm.sum())
    present = (scores["support"] > 0) | (cm.sum(axis=0) > 0)
    macro_f1 = float(scores["f1"][present].mean()) if present.any() else 0.0
    return {
        "n": n,
        "accuracy": float(np.trace(cm) / n) if n else 0.0,
        "macro_f1": macro_f1,
        "macro_f1_labels": [label for label, keep in zip(labels, present, strict=True) if keep],
        "per_label": {
            label: {
                "precision": float(scores["precision"][i]),
                "recall": float(scores["recall"][i]),
                "f1": float(scores["f1"][i]),
                "support": int(scores["support"][i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": {
            "labels": list(labels),
            "rows": "true",
            "columns": "predicted",
            "matrix": cm.tolist(),
        },
    }


def format_report(report: dict) -> str:
    """A plain-text table of a :func:`classification_report` for terminals and docs."""
    width = max(12, *(len(label) for label in report["per_label"]))
    lines = [f"{'label':<{width}}  precision  recall     f1  support"]
    for label, row in report["per_label"].items():
        lines.append(
            f"{label:<{width}}  {row['precision']:9.3f}  {row['recall']:6.3f}  {row['f1']:5.3f}  {row['support']:7d}"
        )
    lines.append(f"accuracy {report['accuracy']:.4f}   macro-F1 {report['macro_f1']:.4f}   n {report['n']}")
    return "\n".join(lines)
