"""Fixtures shared by the runner tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from batchlane.jobs.store import JobStore
from tests.models import register_echo


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[JobStore]:
    """A fresh SQLite job store with the echo model registered (test modules may define their own ``store``)."""
    store = JobStore(tmp_path / "state" / "jobs.db")
    register_echo(store)
    yield store
    store.close()
