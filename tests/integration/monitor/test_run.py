"""A baseline (made by the real `batchlane monitor baseline`) and a monitoring run over a classifier directory (the
real BERT architecture with tiny weights): the label distribution is the model's predictions, a run writes its report
to S3 (moto's server), and the baseline's options come back when it is loaded."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from batchlane.errors import BadInput
from batchlane.monitor.baseline import Baseline
from batchlane.monitor.embedding import Embedder
from batchlane.monitor.records import Texts
from batchlane.monitor.run import RunOptions, monitor, score_texts, write_result
from tests.monitor.tiny_baseline import SHIFTED, TEXTS, THRESHOLD


@pytest.fixture(scope="module")
def classifier_baseline(tiny_baseline: Path) -> Baseline:
    return Baseline.load(tiny_baseline)


def test_the_shifted_sentence_scores_under_the_threshold_and_every_baseline_text_above(
    classifier_baseline: Baseline,
) -> None:
    # The premise of the schedule tests' thresholds (tests/monitor/tiny_baseline.py), with its margins.
    embedder = Embedder.load(classifier_baseline.model_dir, classifier_baseline.embedding_options())
    scores, _ = score_texts(classifier_baseline, embedder, [*TEXTS, SHIFTED])
    assert scores[:-1].min() > THRESHOLD + 0.015 and scores[-1] < THRESHOLD - 0.015, scores


def test_a_classifier_baseline_keeps_its_predicted_labels(
    classifier_baseline: Baseline, tiny_bert_dir: Path
) -> None:
    loaded = Baseline.load(classifier_baseline.path)
    assert loaded.statistics["model_kind"] == "classifier"
    assert loaded.model_dir == str(tiny_bert_dir.resolve())
    counts = loaded.label_counts
    assert (
        counts is not None and sum(counts.values()) == 60 and set(counts) <= {"billing", "fraud", "service"}
    )
    options = loaded.embedding_options(token_budget=128)
    assert (options.layers, options.max_length, options.token_budget) == ((-1,), 32, 128)
    assert loaded.held_out_scores.shape == (15,)


def test_the_same_texts_show_no_label_shift_and_the_report_lands_in_s3(
    classifier_baseline: Baseline, moto_server: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    embedder = Embedder.load(classifier_baseline.model_dir, classifier_baseline.embedding_options())
    result = monitor(classifier_baseline, embedder, Texts(texts=TEXTS[:30]), RunOptions(threshold=-1.0))
    labels = result.summary["label_distribution"]
    assert labels["drift"] is False and labels["psi"] < 0.1 and sum(labels["counts"].values()) == 30
    assert result.summary["sent_cosine_score"]["threshold_source"] == "option"
    assert result.violations == [] and result.drift_detected is False

    write_result(result, f"s3://{s3_bucket}/monitoring/run-1")
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    summary = json.loads(s3.get_object(Bucket=s3_bucket, Key="monitoring/run-1/summary.json")["Body"].read())
    assert summary["records"] == 30 and summary["drift_detected"] is False
    body = s3.get_object(Bucket=s3_bucket, Key="monitoring/run-1/constraint_violations.json")["Body"].read()
    assert json.loads(body) == {"violations": []}


def test_a_threshold_above_every_score_flags_every_text(classifier_baseline: Baseline) -> None:
    embedder = Embedder.load(classifier_baseline.model_dir, classifier_baseline.embedding_options())
    result = monitor(classifier_baseline, embedder, Texts(texts=TEXTS[:5]), RunOptions(threshold=1.01))
    assert [v["sentence"] for v in result.violations] == TEXTS[:5]
    assert result.summary["sent_cosine_score"]["drift"] is True and result.drift_detected
    tolerant = monitor(
        classifier_baseline,
        embedder,
        Texts(texts=TEXTS[:5]),
        RunOptions(threshold=1.01, max_violation_fraction=1.0),
    )
    assert tolerant.summary["sent_cosine_score"]["drift"] is False


def test_nothing_to_monitor_is_an_error(classifier_baseline: Baseline) -> None:
    embedder = Embedder.load(classifier_baseline.model_dir, classifier_baseline.embedding_options())
    with pytest.raises(BadInput, match="holds no texts"):
        monitor(classifier_baseline, embedder, Texts())


def test_a_baseline_without_constraints_takes_the_seeds_threshold(
    classifier_baseline: Baseline, tmp_path: Path
) -> None:
    import numpy as np

    np.save(tmp_path / "embeddings.npy", classifier_baseline.embeddings)
    bare = Baseline.load(tmp_path)
    assert bare.threshold == 0.5 and bare.model_dir is None
    embedder = Embedder.load(classifier_baseline.model_dir, classifier_baseline.embedding_options())
    result = monitor(bare, embedder, Texts(texts=TEXTS[:3]))
    assert result.summary["sent_cosine_score"]["threshold_source"] == "seed default"
    assert result.summary["label_distribution"] is None  # a bare baseline has no label counts
