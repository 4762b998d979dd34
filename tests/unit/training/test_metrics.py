"""Metrics against tables computed by hand (and, as a second opinion, scikit-learn)."""

from __future__ import annotations

import numpy as np
import pytest

from batchlane.training.metrics import classification_report, confusion_matrix, format_report

LABELS = ["a", "b", "c"]
# 10 records. Truth: a×4, b×3, c×3.
Y_TRUE = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
Y_PRED = [0, 0, 1, 2, 1, 1, 0, 2, 2, 1]


def test_confusion_matrix_by_hand() -> None:
    # rows = truth, columns = prediction
    expected = [
        [2, 1, 1],  # a: 2 right, one as b, one as c
        [1, 2, 0],  # b: 2 right, one as a
        [0, 1, 2],  # c: 2 right, one as b
    ]
    assert confusion_matrix(Y_TRUE, Y_PRED, 3).tolist() == expected


def test_report_by_hand() -> None:
    report = classification_report(Y_TRUE, Y_PRED, LABELS)
    # precision = tp / column sum, recall = tp / row sum
    # a: p = 2/3, r = 2/4 -> f1 = 2*(2/3)(1/2)/(2/3+1/2) = 4/7
    # b: p = 2/4, r = 2/3 -> f1 = 4/7
    # c: p = 2/3, r = 2/3 -> f1 = 2/3
    expected = {
        "a": (2 / 3, 1 / 2, 4 / 7, 4),
        "b": (1 / 2, 2 / 3, 4 / 7, 3),
        "c": (2 / 3, 2 / 3, 2 / 3, 3),
    }
    for label, (p, r, f1, support) in expected.items():
        row = report["per_label"][label]
        assert row["precision"] == pytest.approx(p)
        assert row["recall"] == pytest.approx(r)
        assert row["f1"] == pytest.approx(f1)
        assert row["support"] == support
    assert report["n"] == 10
    assert report["accuracy"] == pytest.approx(6 / 10)
    assert report["macro_f1"] == pytest.approx((4 / 7 + 4 / 7 + 2 / 3) / 3)
    assert report["confusion_matrix"]["labels"] == LABELS
    assert report["confusion_matrix"]["rows"] == "true"


@pytest.mark.slow
def test_agrees_with_sklearn() -> None:
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    rng = np.random.default_rng(7)
    y_true = rng.integers(0, 5, 300)
    y_pred = np.where(rng.random(300) < 0.6, y_true, rng.integers(0, 5, 300))
    report = classification_report(y_true, y_pred, [f"l{i}" for i in range(5)])
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=range(5), zero_division=0)
    assert [row["precision"] for row in report["per_label"].values()] == pytest.approx(p)
    assert [row["recall"] for row in report["per_label"].values()] == pytest.approx(r)
    assert [row["f1"] for row in report["per_label"].values()] == pytest.approx(f)
    assert [row["support"] for row in report["per_label"].values()] == s.tolist()
    assert report["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert report["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro", zero_division=0))


def test_never_predicted_and_absent_labels() -> None:
    # Label "c" (2) is neither in the truth nor predicted: it shows in the table but not in the macro average.
    # Label "b" (1) is true once but never predicted: precision 0 (zero_division), recall 0, f1 0.
    report = classification_report([0, 0, 1], [0, 0, 0], LABELS)
    assert report["per_label"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert report["per_label"]["c"]["support"] == 0
    assert report["macro_f1_labels"] == ["a", "b"]
    # a: p = 2/3, r = 1 -> f1 = 0.8
    assert report["macro_f1"] == pytest.approx((0.8 + 0.0) / 2)


def test_empty_and_mismatched_inputs() -> None:
    report = classification_report([], [], LABELS)
    assert report["n"] == 0 and report["accuracy"] == 0.0 and report["macro_f1"] == 0.0
    with pytest.raises(ValueError, match="differ in length"):
        confusion_matrix([0, 1], [0], 3)
    with pytest.raises(ValueError, match="label ids"):
        confusion_matrix([0, 3], [0, 0], 3)


def test_format_report_lists_every_label() -> None:
    text = format_report(classification_report(Y_TRUE, Y_PRED, LABELS))
    assert all(f"\n{label} " in text for label in LABELS)
    assert "macro-F1 0.6032" in text
