"""JobStore over a real SQLite file: lifecycle, races, paging, leases, file checkpoints, describe shapes."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from batchlane.errors import AlreadyExists, Conflict, NotFound, StorageError, ValidationError
from batchlane.jobs import FileState, JobStatus, JobStore, describe_job, summarize_job
from batchlane.jobs.db import _SCHEMA_V1, SCHEMA_VERSION

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


class Clock:
    """A settable clock; each reading advances one millisecond so creation times are distinct."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


def request(name: str, **extra: object) -> dict:
    return {
        "TransformJobName": name,
        "ModelName": "m1",
        "MaxPayloadInMB": 6,
        "BatchStrategy": "MultiRecord",
        "Environment": {"A": "1"},
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/in/"}},
            "ContentType": "application/jsonlines",
            "SplitType": "Line",
        },
        "TransformOutput": {"S3OutputPath": "s3://b/out/", "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        "Tags": [{"Key": "k", "Value": "v"}],
        **extra,
    }


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def store(tmp_path: Path, clock: Clock) -> JobStore:
    s = JobStore(tmp_path / "state" / "batchlane.db", clock=clock)
    yield s
    s.close()


def test_create_and_get(store: JobStore) -> None:
    job = store.create_job("job-1", request("job-1"), {"on_record_error": "fail"})
    assert job.status is JobStatus.IN_PROGRESS
    assert job.arn == "arn:aws:sagemaker:us-east-1:000000000000:transform-job/job-1"
    assert job.creation_time.tzinfo is not None and job.creation_time == job.last_modified_time
    assert job.start_time is None and job.end_time is None and job.failure_reason is None
    assert job.model_name == "m1" and job.options == {"on_record_error": "fail"}
    assert store.get_job("job-1") == job
    assert store.get_job("JOB-1") == job, "names are case-insensitive"
    with pytest.raises(NotFound, match="Could not find transform job"):
        store.get_job("nope")
    assert store.find_job("nope") is None


def test_schema_version_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    JobStore(path, region="eu-west-1", account="123456789012").create_job("a", request("a"))
    again = JobStore(path)
    assert again.get_job("a").arn == "arn:aws:sagemaker:eu-west-1:123456789012:transform-job/a"
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(StorageError, match="schema version 99"):
        JobStore(path)


def test_from_env(tmp_path: Path) -> None:
    env = {
        "BATCHLANE_DB": str(tmp_path / "x.db"),
        "BATCHLANE_REGION": "ap-south-1",
        "BATCHLANE_ACCOUNT_ID": "111122223333",
    }
    s = JobStore.from_env(env)
    assert s.path == tmp_path / "x.db"
    assert s.job_arn("J") == "arn:aws:sagemaker:ap-south-1:111122223333:transform-job/j"
    with pytest.raises(ValidationError):
        JobStore(tmp_path / "y.db", account="12")


def test_duplicate_names_and_idempotent_create(store: JobStore) -> None:
    first = store.create_job("job-1", request("job-1"), {"x": 1})
    with pytest.raises(AlreadyExists) as info:
        store.create_job("job-1", request("job-1"), {"x": 1})
    assert isinstance(info.value, Conflict) and info.value.existing == first
    # Same spec with keys in another order: the existing job comes back.
    reordered = dict(reversed(list(request("job-1").items())))
    assert store.create_job("job-1", reordered, {"x": 1}, if_same_spec_ok=True) == first
    with pytest.raises(AlreadyExists, match="different spec") as info:
        store.create_job("job-1", request("job-1", MaxPayloadInMB=1), {"x": 1}, if_same_spec_ok=True)
    assert info.value.existing == first


def test_create_validates(store: JobStore) -> None:
    with pytest.raises(ValidationError, match="TransformJobName"):
        store.create_job("../../etc", request("x"))
    with pytest.raises(ValidationError, match="differs"):
        store.create_job("a", request("b"))
    with pytest.raises(ValidationError, match="JSON"):
        store.create_job("a", {"x": object()})


def test_transitions_and_times(store: JobStore, clock: Clock) -> None:
    store.create_job("j", request("j"))
    assert store.claim("j", "runner-1", 60)
    started = store.get_job("j")
    assert started.start_time is not None and started.attempts == 1
    done = store.transition("j", JobStatus.COMPLETED, owner="runner-1")
    assert done.status is JobStatus.COMPLETED
    assert done.end_time is not None and done.end_time == done.last_modified_time > started.start_time
    assert done.owner is None and done.lease_expires is None
    with pytest.raises(Conflict, match="from Completed to Failed"):
        store.transition("j", "Failed", failure_reason="late")
    assert store.get_job("j").status is JobStatus.COMPLETED


def test_failed_needs_reason_and_truncates(store: JobStore) -> None:
    store.create_job("j", request("j"))
    with pytest.raises(ValidationError, match="failure reason"):
        store.transition("j", JobStatus.FAILED)
    job = store.transition("j", JobStatus.FAILED, failure_reason="x" * 5000)
    assert len(job.failure_reason) == 1024 and job.failure_reason.endswith("...")


def test_expected_from_and_owner_fencing(store: JobStore) -> None:
    store.create_job("j", request("j"))
    with pytest.raises(Conflict, match="is InProgress, not Stopping"):
        store.transition("j", JobStatus.STOPPED, expected_from=JobStatus.STOPPING)
    assert store.claim("j", "a", 60)
    with pytest.raises(Conflict, match="held by a, not b"):
        store.transition("j", JobStatus.COMPLETED, owner="b")
    assert store.get_job("j").status is JobStatus.IN_PROGRESS


def test_stop_is_idempotent(store: JobStore) -> None:
    store.create_job("j", request("j"))
    first = store.request_stop("j")
    assert first.status is JobStatus.STOPPING
    assert store.request_stop("j") == first
    with pytest.raises(Conflict, match="Stopping to Completed"):
        store.transition("j", JobStatus.COMPLETED)
    stopped = store.transition("j", JobStatus.STOPPED)
    assert store.request_stop("j") == stopped, "stop on a terminal job changes nothing"
    with pytest.raises(NotFound):
        store.request_stop("missing")


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_transitions_exactly_one_wins(tmp_path: Path, round_: int) -> None:
    path = tmp_path / "race.db"
    JobStore(path).create_job("j", request("j"))
    stores = [JobStore(path), JobStore(path)]  # two handles, like two processes
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def attempt(index: int, target: JobStatus) -> None:
        barrier.wait()
        try:
            kwargs = {"failure_reason": "crash"} if target is JobStatus.FAILED else {}
            stores[index].transition("j", target, **kwargs)
            outcomes[target.value] = "won"
        except Conflict:
            outcomes[target.value] = "conflict"

    threads = [
        threading.Thread(target=attempt, args=(0, JobStatus.COMPLETED)),
        threading.Thread(target=attempt, args=(1, JobStatus.FAILED)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes.values()) == ["conflict", "won"]
    winner = next(status for status, outcome in outcomes.items() if outcome == "won")
    assert JobStore(path).get_job("j").status.value == winner


def test_concurrent_claims_one_owner(tmp_path: Path) -> None:
    path = tmp_path / "claims.db"
    JobStore(path).create_job("j", request("j"))
    barrier = threading.Barrier(8)
    wins: list[str] = []

    def attempt(owner: str) -> None:
        store = JobStore(path)
        barrier.wait()
        if store.claim("j", owner, 60):
            wins.append(owner)

    threads = [threading.Thread(target=attempt, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert JobStore(path).get_job("j").owner == wins[0]


def test_lease_fencing_and_resumable(store: JobStore) -> None:
    store.create_job("a", request("a"))
    store.create_job("b", request("b"))
    store.create_job("c", request("c"))
    store.transition("c", JobStatus.COMPLETED)
    assert [j.name for j in store.resumable_jobs(T0)] == ["a", "b"], "never-claimed jobs are resumable"
    assert store.claim("a", "w1", 30, now=T0)
    assert not store.claim("a", "w2", 30, now=T0 + timedelta(seconds=10)), "lease held by w1"
    assert store.claim("a", "w1", 30, now=T0 + timedelta(seconds=10)), "the holder may re-claim"
    assert store.renew("a", "w1", 30, now=T0 + timedelta(seconds=20))
    assert not store.renew("a", "w2", 30, now=T0 + timedelta(seconds=20))
    assert [j.name for j in store.resumable_jobs(T0 + timedelta(seconds=49))] == ["b"]
    later = T0 + timedelta(seconds=51)
    assert [j.name for j in store.resumable_jobs(later)] == ["a", "b"]
    assert store.claim("a", "w2", 30, now=later), "an expired lease can be taken over"
    job = store.get_job("a")
    assert job.owner == "w2" and job.attempts == 2
    assert not store.renew("a", "w1", 30, now=later), "the zombie cannot renew"
    with pytest.raises(Conflict, match="held by w2"):
        store.transition("a", JobStatus.COMPLETED, owner="w1")
    assert not store.claim("c", "w1", 30), "finished jobs cannot be claimed"
    assert store.release("a", "w2") and not store.release("a", "w2")
    assert store.get_job("a").owner is None


def test_stopping_job_with_dead_runner_is_resumable(store: JobStore) -> None:
    store.create_job("a", request("a"))
    assert store.claim("a", "w1", 5, now=T0)
    store.request_stop("a")
    assert [j.status for j in store.resumable_jobs(T0 + timedelta(seconds=6))] == [JobStatus.STOPPING]


PLANS = [
    {"input_key": "in/a.jsonl", "output_key": "out/a.jsonl.out", "size": 100},
    ("in/b.jsonl", "out/b.jsonl.out", 50),
]


class Plan:
    def __init__(self, input_key: str, output_key: str, size: int) -> None:
        self.input_key, self.output_key, self.size = input_key, output_key, size


def test_file_checkpoints_are_idempotent(store: JobStore) -> None:
    store.create_job("j", request("j"))
    assert store.add_files("j", PLANS) == 2
    assert store.add_files("j", [*PLANS, Plan("in/c.jsonl", "out/c.jsonl.out", 10)]) == 1
    assert store.add_files("j", PLANS) == 0
    with pytest.raises(Conflict, match="already planned"):
        store.add_files("j", [("in/a.jsonl", "elsewhere.out", 100)])
    files = store.files("j")
    assert [f.input_key for f in files] == ["in/a.jsonl", "in/b.jsonl", "in/c.jsonl"]
    assert all(f.state is FileState.PENDING for f in files)
    job = store.get_job("j")
    assert (job.files_total, job.bytes_total, job.files_done) == (3, 160, 0)

    store.add_progress("j", "in/a.jsonl", records=3, bytes_read=40)
    store.add_progress("j", "in/a.jsonl", records=2, bytes_read=60)
    assert store.get_job("j").records_done == 5
    done = store.mark_file("j", "in/a.jsonl", FileState.DONE)
    assert (done.state, done.records, done.bytes_done) == (FileState.DONE, 5, 100)
    assert store.mark_file("j", "in/a.jsonl", "done", records=999) == done, "marking again is a no-op"
    failed = store.mark_file(
        "j", "in/b.jsonl", FileState.FAILED, records=1, records_failed=1, error="line 2: bad JSON"
    )
    assert failed.error == "line 2: bad JSON"
    with pytest.raises(Conflict, match="from done to failed"):
        store.mark_file("j", "in/a.jsonl", FileState.FAILED, error="x")
    with pytest.raises(Conflict, match="not pending"):
        store.add_progress("j", "in/a.jsonl", records=1)
    with pytest.raises(NotFound, match="no input file"):
        store.mark_file("j", "in/zzz", FileState.DONE)
    job = store.get_job("j")
    assert (job.files_done, job.files_failed, job.records_done, job.records_failed, job.bytes_done) == (
        1,
        1,
        6,
        1,
        100,
    )
    assert [f.input_key for f in store.files("j", FileState.PENDING)] == ["in/c.jsonl"]

    retried = store.mark_file("j", "in/b.jsonl", FileState.PENDING)
    assert (retried.records, retried.error) == (0, None)
    job = store.get_job("j")
    assert (job.files_failed, job.records_done, job.records_failed) == (0, 5, 0)


def test_resume_resets_progress_of_pending_files_only(store: JobStore) -> None:
    store.create_job("j", request("j"))
    store.add_files("j", PLANS)
    assert store.claim("j", "w1", 10, now=T0)
    store.add_progress("j", "in/a.jsonl", records=4, bytes_read=100, owner="w1")
    store.mark_file("j", "in/a.jsonl", FileState.DONE, owner="w1")
    store.add_progress("j", "in/b.jsonl", records=7, bytes_read=30, owner="w1")
    assert store.get_job("j").records_done == 11
    # w1 dies; w2 takes over and will redo in/b.jsonl from the start.
    assert store.claim("j", "w2", 10, now=T0 + timedelta(seconds=11))
    job = store.get_job("j")
    assert (job.records_done, job.bytes_done, job.files_done) == (4, 100, 1)
    with pytest.raises(Conflict, match="held by w2"):
        store.mark_file("j", "in/b.jsonl", FileState.DONE, owner="w1")
    with pytest.raises(Conflict, match="held by w2"):
        store.add_progress("j", "in/b.jsonl", records=1, owner="w1")
    store.transition("j", JobStatus.COMPLETED, owner="w2")
    with pytest.raises(Conflict, match="can no longer change"):
        store.mark_file("j", "in/b.jsonl", FileState.DONE)


def test_file_warnings_sum_per_job_and_are_redone_with_their_file(store: JobStore) -> None:
    store.create_job("j", request("j"))
    store.add_files("j", PLANS)
    assert store.claim("j", "w1", 10, now=T0)
    assert "Warnings" not in describe_job(store.get_job("j"))["Batchlane"]
    store.set_file_warnings(
        "j", "in/b.jsonl", 2, "in/b.jsonl: model returned 1 result for 3 records", owner="w1"
    )
    store.set_file_warnings(
        "j", "in/a.jsonl", 1, "in/a.jsonl: model returned 2 results for 3 records", owner="w1"
    )
    # Set, not added: a file's warnings recorded twice count once.
    store.set_file_warnings(
        "j", "in/a.jsonl", 1, "in/a.jsonl: model returned 2 results for 3 records", owner="w1"
    )
    job = store.get_job("j")
    # The first warning is the first file's in plan order, not the first written.
    assert (job.warnings, job.first_warning) == (3, "in/a.jsonl: model returned 2 results for 3 records")
    assert describe_job(job)["Batchlane"]["Warnings"] == {"Count": 3, "First": job.first_warning}
    assert [(f.warnings, f.warning is not None) for f in store.files("j")] == [(1, True), (2, True)]
    store.mark_file("j", "in/a.jsonl", FileState.DONE, owner="w1")
    with pytest.raises(Conflict, match="held by w1"):
        store.set_file_warnings("j", "in/b.jsonl", 1, "x", owner="w2")
    # w1 dies; w2 redoes in/b.jsonl, so its warnings go; the committed file keeps its own.
    assert store.claim("j", "w2", 10, now=T0 + timedelta(seconds=11))
    job = store.get_job("j")
    assert (job.warnings, job.first_warning) == (1, "in/a.jsonl: model returned 2 results for 3 records")
    with pytest.raises(Conflict, match="is done, not pending"):
        store.set_file_warnings("j", "in/a.jsonl", 5, "x", owner="w2")


def test_a_version_1_store_is_migrated_keeping_its_jobs(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (1)")
        for statement in _SCHEMA_V1:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO jobs (name, arn, status, request, options, spec_hash, creation_time, last_modified_time)"
            " VALUES ('old', 'arn:x', 'Completed', '{}', '{}', 'h', '2024-05-01T12:00:00.000000Z',"
            " '2024-05-01T12:00:00.000000Z')"
        )
    conn.close()
    store = JobStore(path)
    job = store.get_job("old")
    assert (job.status, job.warnings, job.first_warning) == (JobStatus.COMPLETED, 0, None)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    conn.close()
    store.close()


def test_list_filters_sorting_and_paging(store: JobStore, clock: Clock) -> None:
    names = [f"job-{i:02d}" for i in range(25)]
    for name in names:
        store.create_job(name, request(name))
    store.transition("job-03", JobStatus.FAILED, failure_reason="boom")
    store.request_stop("job-07")
    middle = store.get_job("job-12").creation_time

    page, token = store.list_jobs()
    assert [j.name for j in page] == names[::-1][:10], "default: CreationTime, Descending, 10 per page"
    seen = [j.name for j in page]
    while token:
        page, token = store.list_jobs(next_token=token)
        seen += [j.name for j in page]
    assert seen == names[::-1]

    collected, token = [], None
    while True:
        page, token = store.list_jobs(sort_by="Name", sort_order="Ascending", max_results=7, next_token=token)
        collected += [j.name for j in page]
        if token is None:
            break
    assert collected == names

    # A job created between pages does not shift the pages (keyset paging).
    first, token = store.list_jobs(sort_by="Name", sort_order="Ascending", max_results=5)
    store.create_job("job-00a", request("job-00a"))
    second, _ = store.list_jobs(sort_by="Name", sort_order="Ascending", max_results=5, next_token=token)
    assert [j.name for j in first][-1] == "job-04" and [j.name for j in second][0] == "job-05"

    assert [j.name for j in store.list_jobs(status_equals="Failed")[0]] == ["job-03"]
    assert [j.name for j in store.list_jobs(status_equals=JobStatus.STOPPING)[0]] == ["job-07"]
    assert {j.name for j in store.list_jobs(name_contains="JOB-1", max_results=100)[0]} == {
        f"job-{i}" for i in range(10, 20)
    }
    after = store.list_jobs(creation_time_after=middle, sort_order="Ascending", max_results=100)[0]
    assert after[0].name == "job-13"
    before = store.list_jobs(creation_time_before=middle, max_results=100)[0]
    assert before[0].name == "job-11"
    modified = store.list_jobs(
        last_modified_time_after=store.get_job("job-24").creation_time, max_results=100
    )[0]
    assert {j.name for j in modified} == {"job-03", "job-07", "job-00a"}
    by_status = store.list_jobs(sort_by="Status", sort_order="Ascending", max_results=100)[0]
    assert [j.status.value for j in by_status][:2] == ["Failed", "InProgress"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"next_token": "garbage!!"}, "Invalid pagination token"),
        ({"next_token": "e30"}, "Invalid pagination token"),
        ({"next_token": "x" * 9000}, "Invalid pagination token"),
        ({"max_results": 0}, "MaxResults"),
        ({"max_results": 101}, "MaxResults"),
        ({"max_results": True}, "MaxResults"),
        ({"sort_by": "Size"}, "SortBy"),
        ({"sort_order": "Up"}, "SortOrder"),
        ({"status_equals": "Done"}, "StatusEquals"),
        ({"name_contains": "a_b"}, "NameContains"),
    ],
)
def test_list_validation(store: JobStore, kwargs: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        store.list_jobs(**kwargs)


def test_token_bound_to_its_filters(store: JobStore) -> None:
    for i in range(3):
        store.create_job(f"j{i}", request(f"j{i}"))
    _, token = store.list_jobs(max_results=1)
    assert token is not None
    with pytest.raises(ValidationError, match="other filters or sorting"):
        store.list_jobs(max_results=1, next_token=token, sort_by="Name")


def test_log_path(store: JobStore) -> None:
    path = store.log_path("My-Job")
    assert path == store.folder / "logs" / "my-job.log" and path.parent.is_dir()
    with pytest.raises(ValidationError):
        store.log_path("../x")


def test_describe_shape(store: JobStore) -> None:
    store.create_job("j", request("j"), {"consolidate": "/tmp/x.jsonl"})
    store.add_files("j", PLANS)
    store.claim("j", "w", 60)
    store.add_progress("j", "in/a.jsonl", records=3, bytes_read=10)
    running = describe_job(store.get_job("j"))
    assert running["TransformJobStatus"] == "InProgress"
    for field in ("TransformJobName", "TransformJobArn", "ModelName", "TransformInput", "TransformResources"):
        assert running[field], field
    assert isinstance(running["CreationTime"], datetime) and running["CreationTime"].tzinfo is not None
    assert isinstance(running["TransformStartTime"], datetime)
    assert "TransformEndTime" not in running and "FailureReason" not in running
    assert "LastModifiedTime" not in running and "Tags" not in running
    assert running["Environment"] == {"A": "1"} and running["MaxPayloadInMB"] == 6
    assert running["TransformOutput"]["S3OutputPath"] == "s3://b/out/"
    assert running["Batchlane"]["Progress"] == {
        "FilesTotal": 2,
        "FilesDone": 0,
        "FilesFailed": 0,
        "RecordsDone": 3,
        "RecordsFailed": 0,
        "BytesTotal": 150,
        "BytesDone": 10,
    }
    assert running["Batchlane"]["Options"] == {"consolidate": "/tmp/x.jsonl"}

    failed = store.transition("j", JobStatus.FAILED, failure_reason="in/b.jsonl: line 2: bad JSON")
    described = describe_job(failed)
    assert described["FailureReason"] == "in/b.jsonl: line 2: bad JSON"
    assert described["TransformEndTime"] == failed.end_time
    summary = summarize_job(failed)
    assert summary == {
        "TransformJobName": "j",
        "TransformJobArn": failed.arn,
        "CreationTime": failed.creation_time,
        "TransformEndTime": failed.end_time,
        "LastModifiedTime": failed.last_modified_time,
        "TransformJobStatus": "Failed",
        "FailureReason": "in/b.jsonl: line 2: bad JSON",
    }


def test_active_jobs_writing_to_overlapping_output(store: JobStore) -> None:
    def out(path: str) -> dict:
        return {"TransformOutput": {"S3OutputPath": path}}

    store.create_job("a", request("a", **out("s3://b/out/run1/")))
    store.create_job("b", request("b", **out("s3://b/other/")))
    store.create_job("c", request("c", **out("s3://b/out/run1/")))
    store.transition("c", JobStatus.COMPLETED)
    assert [j.name for j in store.active_jobs_writing_to("s3://b/out/")] == ["a"]
    assert [j.name for j in store.active_jobs_writing_to("s3://b/out/run1/sub")] == ["a"]
    assert store.active_jobs_writing_to("s3://b/out/run1/", exclude="A") == []
    assert store.active_jobs_writing_to("s3://b/out2/") == []
