"""How job options are stored: fields added later are kept only when set, so older jobs keep their spec hash."""

from __future__ import annotations

from batchlane.transform.options import JobOptions


def test_later_fields_are_stored_only_when_set() -> None:
    assert "part_size" not in JobOptions().stored()
    assert "engine" not in JobOptions().stored()
    assert JobOptions(part_size=1024).stored()["part_size"] == 1024
    assert JobOptions(engine="ray").stored()["engine"] == "ray"
    # what a job stored before these fields existed is still what the store keeps for the defaults
    assert set(JobOptions().stored()) == set(JobOptions.model_fields) - JobOptions._STORED_WHEN_SET
