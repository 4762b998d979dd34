"""``JobStore.reopen`` and ``engines.local.reopen``: what `batchlane jobs resume` does to a Stopped or Failed job, and
why it refuses the others."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from batchlane.engines import get_engine
from batchlane.engines.submit import next_step
from batchlane.errors import Conflict
from batchlane.jobs.state import FileState, JobStatus
from batchlane.jobs.store import JobStore
from tests.models import transform_request

PLANS = [
    ("in/a.txt", "out/a.txt.out", 10),
    ("in/b.txt", "out/b.txt.out", 20),
    ("in/c.txt", "out/c.txt.out", 30),
]


def _job(store: JobStore, name: str, tmp_path: Path) -> None:
    get_engine("local", store).submit(transform_request(name, f"{tmp_path}/in/", f"{tmp_path}/out-{name}/"))
    store.add_files(name, PLANS)
    store.mark_file(name, "in/a.txt", FileState.DONE, records=4)
    store.add_progress(name, "in/b.txt", records=2, records_failed=1, bytes_read=5)
    store.mark_file(name, "in/b.txt", FileState.FAILED, error="poisoned record")


def test_reopen_keeps_done_files_and_retries_failed_ones(store: JobStore, tmp_path: Path) -> None:
    _job(store, "failed", tmp_path)
    store.transition("failed", JobStatus.FAILED, failure_reason="in/b.txt: poisoned record")

    record = get_engine("local", store).reopen("failed")

    assert record.status is JobStatus.IN_PROGRESS
    assert record.failure_reason is None and record.end_time is None and record.owner is None
    states = {f.input_key: (f.state, f.records, f.records_failed, f.error) for f in store.files("failed")}
    assert states == {
        "in/a.txt": (FileState.DONE, 4, 0, None),
        "in/b.txt": (FileState.PENDING, 0, 0, None),
        "in/c.txt": (FileState.PENDING, 0, 0, None),
    }
    assert (record.files_done, record.files_failed, record.records_done, record.records_failed) == (
        1,
        0,
        4,
        0,
    )
    assert record.bytes_done == 10
    assert store.resumable_jobs() == [record]


def test_reopen_a_stopped_job(store: JobStore, tmp_path: Path) -> None:
    _job(store, "stopped", tmp_path)
    store.request_stop("stopped")
    store.transition("stopped", JobStatus.STOPPED)

    assert get_engine("local", store).reopen("stopped").status is JobStatus.IN_PROGRESS
    # Once reopened it is an ordinary InProgress job: stop works again, and the state table is unchanged.
    assert store.request_stop("stopped").status is JobStatus.STOPPING


def test_reopen_refuses_completed_and_running_jobs(store: JobStore, tmp_path: Path) -> None:
    get_engine("local", store).submit(transform_request("done", f"{tmp_path}/in/", f"{tmp_path}/done/"))
    store.transition("done", JobStatus.COMPLETED)
    get_engine("local", store).submit(transform_request("running", f"{tmp_path}/in/", f"{tmp_path}/running/"))
    assert store.claim("running", f"another-host:{os.getpid()}:x", lease_s=60)
    get_engine("local", store).submit(transform_request("orphan", f"{tmp_path}/in/", f"{tmp_path}/orphan/"))

    with pytest.raises(Conflict, match="already Completed; nothing to resume"):
        get_engine("local", store).reopen("done")
    with pytest.raises(Conflict, match="is being run by another-host"):
        get_engine("local", store).reopen("running")
    with pytest.raises(Conflict, match="only Stopped or Failed jobs can be reopened"):
        store.reopen("running")
    # An InProgress job nobody runs is resumable as it is.
    assert get_engine("local", store).reopen("orphan").status is JobStatus.IN_PROGRESS
    assert "resume it with `batchlane jobs resume orphan`" in next_step(store.get_job("orphan"))
    assert "`batchlane jobs wait running` waits for it" in next_step(store.get_job("running"))
    assert "`batchlane jobs results done`" in next_step(store.get_job("done"))
