"""The serving metrics a real classifier moves in-process: dynamic batching's queue wait and the batch counters."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from batchlane import metrics
from batchlane.serving.classifier import ClassifierOptions, SequenceClassifier
from batchlane.serving.dynamic_batching import DynamicBatcher

TEXTS = ["my card was charged twice", "refund please", "someone used my account", "the app keeps crashing"]


def _value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_dynamic_batching_observes_queue_wait_and_shared_batches(tiny_bert_dir: Path) -> None:
    model = SequenceClassifier.load(tiny_bert_dir, ClassifierOptions(device="cpu", precision="fp32"))
    waits = _value("batchlane_serve_queue_wait_seconds_count", queue="batch")
    waited = _value("batchlane_serve_queue_wait_seconds_sum", queue="batch")
    records = _value("batchlane_serve_records_total")
    batches = _value("batchlane_serve_batch_records_count")
    batcher = DynamicBatcher(model, max_delay_ms=200)
    try:
        with ThreadPoolExecutor(len(TEXTS)) as pool:
            list(pool.map(lambda text: batcher.classify([text]), TEXTS))
    finally:
        batcher.close()
        model.close()
    assert _value("batchlane_serve_queue_wait_seconds_count", queue="batch") - waits == len(TEXTS)
    assert _value("batchlane_serve_queue_wait_seconds_sum", queue="batch") > waited
    assert _value("batchlane_serve_records_total") - records == len(TEXTS)
    assert 1 <= _value("batchlane_serve_batch_records_count") - batches < len(TEXTS)
