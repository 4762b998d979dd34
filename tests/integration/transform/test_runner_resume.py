"""Resuming a job whose runner died, in-process (the kill -9 of a real `batchlane transform` is in
tests/e2e/test_transform_cli.py): committed files are not redone, the dead runner's half-written output is removed,
and nothing outside the job's output folder is touched."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from batchlane.engines import get_engine
from batchlane.jobs.state import FileState, JobStatus
from batchlane.jobs.store import JobStore
from batchlane.storage.base import ObjectInfo
from batchlane.transform.plan import plan_job
from tests.models import TEMP_SUFFIX, echo_calls, temp_files, transform_request

# Each test starts a `batchlane serve` process or loads a real model: `make test-fast` skips them.
pytestmark = pytest.mark.slow


def test_resume_redoes_only_pending_files_and_cleans_only_its_own_output_folder(
    store: JobStore, tmp_path: Path
) -> None:
    for name, text in {"a.txt": "a1\n", "b.txt": "b1\nb2\n", "c.txt": "c1\n"}.items():
        (tmp_path / "in").mkdir(exist_ok=True)
        (tmp_path / "in" / name).write_text(text)
    calls = tmp_path / "calls.jsonl"
    # The output path has no trailing slash: its store root is tmp_path and its prefix the raw string "out".
    request = transform_request(
        "resumed", f"{tmp_path}/in/", f"{tmp_path}/out", Environment={"ECHO_LOG": str(calls)}
    )
    get_engine("local", store).submit(request)
    # A runner on another host planned the job, committed a.txt, was half-way through b.txt and died.
    dead = "another-host:4242:deadbeef"
    assert store.claim("resumed", dead, lease_s=30, now=datetime.now(UTC) - timedelta(minutes=5))  # expired
    objects = [ObjectInfo("a.txt", 3), ObjectInfo("b.txt", 6), ObjectInfo("c.txt", 3)]
    store.add_files("resumed", plan_job("", objects, "out"), owner=dead)
    (tmp_path / "out").mkdir()
    (tmp_path / "out/a.txt.out").write_text("committed by the dead runner\n")
    store.mark_file("resumed", "a.txt", FileState.DONE, records=1, owner=dead)
    (tmp_path / f"out/.b.txt.out.0123456789abcdef{TEMP_SUFFIX}").write_text("echo:b1\n")
    # Another job is writing next to us right now: its temp files are not ours to remove.
    (tmp_path / "out2").mkdir()
    neighbour = tmp_path / f"out2/.x.out.fedcba9876543210{TEMP_SUFFIX}"
    neighbour.write_text("in flight")
    sibling = tmp_path / f".out-marker.0000000000000000{TEMP_SUFFIX}"
    sibling.write_text("in flight")
    # And an input object was deleted after the job was planned.
    (tmp_path / "in/c.txt").unlink()

    assert [job.name for job in store.resumable_jobs()] == ["resumed"]
    record = get_engine("local", store).recover()[0]

    # The vanished object fails alone; the job ends Failed naming it.
    assert record.status is JobStatus.FAILED
    assert record.failure_reason.startswith(f"{(tmp_path / 'in/c.txt').as_uri()}: object ")
    assert "does not exist" in record.failure_reason
    assert (tmp_path / "out/a.txt.out").read_text() == "committed by the dead runner\n"  # not redone
    assert (tmp_path / "out/b.txt.out").read_text() == "echo:b1\necho:b2\n"
    assert [call["body"] for call in echo_calls(calls)] == ["b1\nb2\n"]
    assert temp_files(tmp_path / "out") == []
    assert neighbour.exists() and sibling.exists()
    assert (record.files_done, record.files_failed, record.records_done, record.attempts) == (2, 1, 3, 2)
