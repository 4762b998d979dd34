"""Fixtures of the monitoring integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.monitor.tiny_baseline import build_tiny_baseline


@pytest.fixture(scope="module")
def tiny_baseline(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A baseline folder made by the real ``batchlane monitor baseline`` from the tiny BERT classifier over
    ``tests.monitor.tiny_baseline.TEXTS`` (built once per module)."""
    return build_tiny_baseline(tiny_bert_dir, tmp_path_factory.mktemp("tiny-baseline"))
