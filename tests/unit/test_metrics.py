"""batchlane.metrics on the default registry, parsed back with prometheus_client's own parser."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from batchlane import metrics
from batchlane.jobs.store import JobStore


def samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.exposition().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_drift_score_hook_sets_one_gauge_per_schedule() -> None:
    metrics.set_drift_score("nightly", 0.42)
    metrics.set_drift_score("hourly", 0.1)
    metrics.set_drift_score("nightly", 0.5)
    found = samples()
    assert found[("batchlane_monitor_drift_score", (("schedule", "nightly"),))] == 0.5
    assert found[("batchlane_monitor_drift_score", (("schedule", "hourly"),))] == 0.1


def test_a_batch_counts_tokens_padding_and_records() -> None:
    before = samples()
    metrics.observe_batch(records=4, tokens=30, padded_tokens=40)
    after = samples()

    def delta(name: str) -> float:
        return after.get((name, ()), 0) - before.get((name, ()), 0)

    assert delta("batchlane_serve_records_total") == 4
    assert delta("batchlane_serve_tokens_total") == 30
    assert delta("batchlane_serve_padded_tokens_total") == 40
    assert delta("batchlane_serve_batch_padding_ratio_sum") == 0.25
    assert delta("batchlane_serve_batch_records_sum") == 4


def test_client_content_types_are_capped() -> None:
    labels = {metrics.content_type_label(f"application/x-made-up-{i}") for i in range(100)}
    assert "other" in labels
    assert len(labels) <= metrics._MAX_CONTENT_TYPES + 1
    assert metrics.content_type_label("Text/CSV; charset=utf-8") in ("text/csv", "other")


def test_an_empty_job_store_reports_every_status_at_zero(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    metrics.watch(store.path)
    try:
        found = samples()
    finally:
        metrics.unwatch(store.path)
        store.close()
    for status in ("InProgress", "Completed", "Failed", "Stopping", "Stopped"):
        assert found[("batchlane_jobs", (("status", status),))] == 0
    assert found[("batchlane_job_records_total", (("outcome", "done"),))] == 0
