"""Per-part checkpoints (``jobs.parts.PartTable``) over a real SQLite file: the plan is recorded once and kept,
commits are fenced by the runner's lease, and a version 4 store gains the ``job_parts`` table."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from batchlane.errors import Conflict, ValidationError
from batchlane.jobs import FileState, JobStore
from batchlane.jobs.db import _SCHEMA_V1, _SCHEMA_V2, _SCHEMA_V3, _SCHEMA_V4
from batchlane.transform.parts import Part
from tests.integration.jobs.test_store import request

PLAN = [Part(0, 3, 0, 100, 0, 1), Part(1, 3, 100, 220, 9, 10), Part(2, 3, 220, 300, 20, 21)]


@pytest.fixture()
def job(tmp_path: Path) -> JobStore:
    store = JobStore(tmp_path / "jobs.db")
    store.create_job("j1", request("j1"))
    assert store.claim("j1", "runner-a", lease_s=60)
    store.add_files("j1", [("in/big.csv", "out/big.csv.out", 300), ("in/small.csv", "out/small.csv.out", 5)])
    return store


def test_the_plan_is_recorded_once_and_a_changed_plan_is_refused(job: JobStore) -> None:
    stored = job.add_parts("j1", "in/big.csv", PLAN, owner="runner-a")
    assert [(p.number, p.start, p.end, p.first_line, p.state) for p in stored] == [
        (0, 0, 100, 1, "pending"),
        (1, 100, 220, 10, "pending"),
        (2, 220, 300, 21, "pending"),
    ]
    assert job.add_parts("j1", "in/big.csv", reversed(PLAN), owner="runner-a") == stored  # idempotent
    moved = [PLAN[0], Part(1, 3, 120, 220, 11, 12), PLAN[2]]
    with pytest.raises(Conflict, match="already planned as 3 parts"):
        job.add_parts("j1", "in/big.csv", moved, owner="runner-a")
    with pytest.raises(ValidationError, match="0..count-1"):
        job.add_parts("j1", "in/small.csv", [Part(1, 1, 0, None, 0, 1)], owner="runner-a")
    assert [Part.of(p) for p in job.parts("j1", "in/big.csv")] == PLAN


def test_parts_are_committed_by_the_lease_holder_only_and_counted(job: JobStore) -> None:
    job.add_parts("j1", "in/big.csv", PLAN, owner="runner-a")
    job.add_parts("j1", "in/small.csv", [Part.whole_object()], owner="runner-a")
    done = job.mark_part(
        "j1", "in/big.csv", 1, records=11, records_failed=1, bytes_read=120, owner="runner-a"
    )
    assert (done.state, done.records, done.records_failed, done.bytes_read) == ("done", 11, 1, 120)
    # A retried commit is a no-op; a runner that lost the lease cannot commit.
    assert job.mark_part("j1", "in/big.csv", 1, records=99, owner="runner-a").records == 11
    with pytest.raises(Conflict):
        job.mark_part("j1", "in/big.csv", 0, records=9, owner="runner-b")
    with pytest.raises(Conflict, match="no part 7"):
        job.mark_part("j1", "in/big.csv", 7, records=9, owner="runner-a")
    assert job.part_counts("j1") == (1, 4)
    assert [(p.input_key, p.number) for p in job.parts("j1")] == [
        ("in/big.csv", 0),
        ("in/big.csv", 1),
        ("in/big.csv", 2),
        ("in/small.csv", 0),
    ]
    # A failed file forgets its committed parts, so a retry redoes them all.
    job.reset_parts("j1", "in/big.csv", owner="runner-a")
    assert job.part_counts("j1") == (0, 4)
    # A file that is no longer pending takes no part commits.
    job.mark_file("j1", "in/small.csv", FileState.DONE, records=1, owner="runner-a")
    with pytest.raises(Conflict, match="not pending"):
        job.mark_part("j1", "in/small.csv", 0, records=1, owner="runner-a")


def test_a_version_4_store_gains_the_parts_table(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (4)")
        for statement in _SCHEMA_V1 + _SCHEMA_V2 + _SCHEMA_V3 + _SCHEMA_V4:
            conn.execute(statement)
    store = JobStore(path)
    store.create_job("j1", request("j1"))
    assert store.parts("j1") == [] and store.part_counts("j1") == (0, 0)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(5,)]
