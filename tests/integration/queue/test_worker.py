"""The queue worker on the embedded queue: real SQLite queue and job store files, real `batchlane serve` processes."""

from __future__ import annotations

import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest

from batchlane.engines import get_engine
from batchlane.jobs.state import JobStatus
from batchlane.jobs.store import JobStore
from batchlane.models import ModelRegistry, ModelSpec
from batchlane.queue.launcher import build_request, job_name_for_attempt
from batchlane.queue.message import job_name_for, parse_message
from batchlane.queue.sqlite import SqliteQueue
from batchlane.queue.worker import Action, Worker
from tests.integration.queue.worker_support import (
    CSV_DEFAULTS,
    FakeClock,
    make_inputs,
    make_model,
    release,
    reordered,
    seed_body,
    wait_until,
)


@pytest.fixture()
def store(tmp_path: Path) -> JobStore:
    jobs = JobStore(tmp_path / "state" / "jobs.db")
    yield jobs
    jobs.close()


@pytest.fixture()
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture()
def queue(tmp_path: Path, clock: FakeClock) -> SqliteQueue:
    q = SqliteQueue(tmp_path / "state" / "queue.db", "jobs", visibility_timeout_s=30, clock=clock)
    yield q
    q.close()


@pytest.fixture()
def model(tmp_path: Path) -> ModelSpec:
    return ModelSpec(name="upper", model_data=str(make_model(tmp_path / "model")))


def make_worker(queue: SqliteQueue, store: JobStore, model: ModelSpec | str | None, **options) -> Worker:
    options = {"defaults": CSV_DEFAULTS, "wait_s": 0, "retry_backoff_s": 0, "poll_s": 0.1, **options}
    return Worker(queue, store, model=model, **options)


def all_jobs(store: JobStore) -> list:
    return store.list_jobs(max_results=100)[0]


@pytest.mark.slow
def test_seed_message_runs_its_job_to_completed_and_is_deleted(
    tmp_path: Path, queue: SqliteQueue, store: JobStore, model: ModelSpec
) -> None:
    inputs = make_inputs(tmp_path / "data" / "in")
    body = seed_body(f"{inputs}/", str(tmp_path / "data" / "out") + "/")
    queue.send(body)

    stats = make_worker(queue, store, model).work(burst=True)

    [outcome] = stats.outcomes
    assert (outcome.action, outcome.job_status) == (Action.DONE, "Completed")
    assert outcome.job_name == job_name_for(body)
    assert (tmp_path / "data" / "out" / "part-1.csv.out").read_text() == "ALPHA\nBETA\n"
    record = store.get_job(outcome.job_name)
    assert record.request["TransformInput"]["SplitType"] == "Line"
    assert record.request["TransformResources"] == {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1}
    assert ModelRegistry(store).get("upper").spec == model  # created because it was missing
    attrs = queue.attributes()
    assert (attrs["visible"], attrs["in_flight"], attrs["dead_letters"]) == (0, 0, 0)


@pytest.mark.slow
def test_duplicates_and_reordered_keys_make_one_job_even_with_two_workers_at_once(
    tmp_path: Path, queue: SqliteQueue, store: JobStore, model: ModelSpec
) -> None:
    inputs = make_inputs(tmp_path / "in")
    body = seed_body(f"{inputs}/", f"{tmp_path}/out/")
    for text in (body, body, reordered(body)):
        queue.send(text)
    workers = [make_worker(queue, store, model) for _ in range(2)]
    results: list = []
    threads = [threading.Thread(target=lambda w=w: results.append(w.work(burst=True))) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    outcomes = [o for stats in results for o in stats.outcomes]
    assert sorted(o.action for o in outcomes) == [Action.DONE] * 3
    assert {o.job_name for o in outcomes} == {job_name_for(body)}
    [job] = all_jobs(store)
    assert job.status is JobStatus.COMPLETED and job.attempts == 1  # one runner ran it, once
    assert queue.attributes()["visible"] == queue.attributes()["in_flight"] == 0


@pytest.mark.slow
def test_poison_messages_are_dead_lettered_at_once_with_their_reasons(
    tmp_path: Path, queue: SqliteQueue, store: JobStore, model: ModelSpec
) -> None:
    inputs = make_inputs(tmp_path / "in")
    (tmp_path / "empty").mkdir()
    good_out = f"{tmp_path}/out/"
    cases = {
        seed_body(
            str(inputs), good_out, instance_count=True
        ): "instance_count: must be an integer, not a boolean",
        seed_body("in/", good_out): "input_path: 'in/' is a relative path",
        seed_body("http://169.254.169.254/latest", good_out): "http(s) URLs are not fetched",
        seed_body(f"{inputs}/", f"{inputs}/out/"): "is inside input_path",
        seed_body(f"{inputs}/../x/", good_out): "'..' path segments",
        seed_body(f"{tmp_path}/empty/", good_out): "no input objects at or under this prefix",
        seed_body(f"{inputs}/", good_out, model_name="nobody"): "model nobody does not exist",
        seed_body(f"{inputs}/", good_out, colour="red"): "colour: unknown field",
        '{"input_path": ': "message is not valid JSON",
        "[1, 2]": "message must be a JSON object",
    }
    ids = {queue.send(body): reason for body, reason in cases.items()}

    stats = make_worker(queue, store, model).work(burst=True)

    assert stats.actions == {"dead_lettered": len(cases)}
    letters = {letter.message_id: letter for letter in queue.list_dead_letters()}
    assert set(letters) == set(ids)
    for message_id, expected in ids.items():
        assert expected in letters[message_id].reason
        assert letters[message_id].attempts == 1  # parked on the first receive, not after five
    assert all_jobs(store) == []


def test_a_different_model_spec_under_the_default_name_is_a_conflict_not_a_reuse(
    tmp_path: Path, queue: SqliteQueue, store: JobStore, model: ModelSpec
) -> None:
    other = make_model(tmp_path / "other-model")
    ModelRegistry(store).create(ModelSpec(name="upper", model_data=str(other)))
    message_id = queue.send(seed_body(f"{make_inputs(tmp_path / 'in')}/", f"{tmp_path}/out/"))

    stats = make_worker(queue, store, model).work(burst=True)

    assert stats.actions == {"dead_lettered": 1}
    [letter] = queue.list_dead_letters()
    assert letter.message_id == message_id
    assert "model upper already exists with a different spec: model_data" in letter.reason
    assert all_jobs(store) == []


def test_transient_errors_back_off_then_dead_letter_after_max_receives_with_the_last_reason(
    tmp_path: Path, clock: FakeClock, model: ModelSpec
) -> None:
    queue = SqliteQueue(tmp_path / "q.db", "jobs", visibility_timeout_s=30, max_receive_count=3, clock=clock)
    busy_store = JobStore(tmp_path / "jobs.db", busy_timeout_s=0.05)
    blocker = sqlite3.connect(tmp_path / "jobs.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the job store's write lock: a transient fault
    message_id = queue.send(seed_body(f"{make_inputs(tmp_path / 'in')}/", f"{tmp_path}/out/"))
    worker = make_worker(queue, busy_store, model, retry_backoff_s=10, max_retry_backoff_s=15)
    try:
        delays = []
        for _ in range(3):
            [outcome] = worker.work(burst=True).outcomes
            assert outcome.action is Action.RETRY and "is busy" in outcome.reason
            assert queue.attributes()["visible"] == 0  # hidden for the backoff, not released at once
            hidden_at = clock.now
            while queue.attributes()["visible"] == 0:
                clock.advance(1)
            delays.append(clock.now - hidden_at)
        assert delays == [10, 15, 15]  # 10·2^(n-1), capped

        assert worker.work(burst=True).received == 0  # the 4th receive moves it to the dead-letter queue
        [letter] = queue.list_dead_letters()
        assert letter.message_id == message_id and letter.attempts == 3
        assert letter.reason.startswith("maxReceiveCount exceeded: received 3 times without being deleted")
        assert "last error: job store" in letter.reason and "is busy" in letter.reason
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        busy_store.close()
        queue.close()


@pytest.mark.slow
def test_a_zombie_workers_delete_is_refused_after_another_worker_took_the_message_over(
    tmp_path: Path, queue: SqliteQueue, store: JobStore, clock: FakeClock
) -> None:
    model_dir = make_model(tmp_path / "model", hold=True)
    model = ModelSpec(name="upper", model_data=str(model_dir))
    body = seed_body(f"{make_inputs(tmp_path / 'in')}/", f"{tmp_path}/out/")
    queue.send(body)
    name = job_name_for(body)
    # A's heartbeat would come after 60 s: it behaves like a worker paused past its lease.
    zombie = make_worker(queue, store, model, heartbeat_s=60)
    successor = make_worker(queue, store, model)
    results: dict[str, list] = {}
    a = threading.Thread(target=lambda: results.setdefault("a", zombie.work(max_messages=1).outcomes))
    a.start()
    wait_until(lambda: (job := store.find_job(name)) and job.owner, what="A's runner to hold the job")
    clock.advance(31)  # A's 30 s lease runs out
    b = threading.Thread(target=lambda: results.setdefault("b", successor.work(burst=True).outcomes))
    b.start()
    wait_until(lambda: "receive #2" in _lease_holder(queue), what="B to hold the message")
    release(model_dir)
    a.join(timeout=60)
    b.join(timeout=60)

    [a_outcome], [b_outcome] = results["a"], results["b"]
    assert a_outcome.action is Action.LEASE_LOST and a_outcome.job_status == "Completed"
    assert "receipt refused" in a_outcome.reason and "received again" in a_outcome.reason
    assert (b_outcome.action, b_outcome.job_name, b_outcome.job_status) == (Action.DONE, name, "Completed")
    [job] = all_jobs(store)
    assert job.attempts == 1  # B waited for A's runner instead of running the job a second time
    assert queue.attributes()["visible"] == queue.attributes()["in_flight"] == 0
    assert queue.list_dead_letters() == []


def _lease_holder(queue: SqliteQueue) -> str:
    """'receive #N' of the only message (a read of the queue file, as an operator would do)."""
    with sqlite3.connect(queue.path) as conn:
        row = conn.execute("SELECT receive_count FROM messages WHERE queue = 'jobs'").fetchone()
    return f"receive #{row[0]}" if row else ""


@pytest.mark.slow
def test_requeue_failed_reruns_a_failed_job_as_new_attempts_up_to_n_times(
    tmp_path: Path, queue: SqliteQueue, store: JobStore, model: ModelSpec
) -> None:
    registry = ModelRegistry(store)
    # A server that exits at once: every job on it fails fast at container start.
    registry.create(ModelSpec(name="broken", serve_command=[sys.executable, "-c", "raise SystemExit(3)"]))
    # Fails the first time (no marker yet), serves the real model after that.
    marker = tmp_path / "second-time"
    serve = (
        f"{sys.executable} -m batchlane serve --model-dir {model.model_data} --host 127.0.0.1 --port {{port}}"
    )
    script = f"if [ -e {marker} ]; then exec {serve}; else touch {marker}; exit 3; fi"
    registry.create(ModelSpec(name="flaky", serve_command=["sh", "-c", script]))
    inputs = make_inputs(tmp_path / "in")
    broken = seed_body(f"{inputs}/", f"{tmp_path}/out-a/", model_name="broken")
    flaky = seed_body(f"{inputs}/", f"{tmp_path}/out-b/", model_name="flaky")
    queue.send(broken)
    queue.send(flaky)

    stats = make_worker(queue, store, model, requeue_failed=2).work(burst=True)

    by_job = {o.job_name: o for o in stats.outcomes}
    base = parse_message(broken)
    assert [by_job[job_name_for_attempt(base, k)].action for k in range(3)] == [
        Action.REQUEUED,
        Action.REQUEUED,
        Action.DONE,  # the third failure is final: N=2 re-runs were spent
    ]
    for k in range(3):
        job = store.get_job(job_name_for_attempt(base, k))
        assert job.status is JobStatus.FAILED and "AlgorithmError" in job.failure_reason
    second = parse_message(flaky)
    assert by_job[job_name_for_attempt(second, 0)].action is Action.REQUEUED
    assert by_job[job_name_for_attempt(second, 1)].job_status == "Completed"
    assert store.find_job(job_name_for_attempt(second, 2)) is None
    assert (tmp_path / "out-b" / "part-1.csv.out").read_text() == "ALPHA\nBETA\n"
    assert len(all_jobs(store)) == 5 and queue.attributes()["visible"] == 0


@pytest.mark.slow
def test_stop_returns_after_the_current_message_and_abandon_hands_the_job_over(
    tmp_path: Path, queue: SqliteQueue, store: JobStore
) -> None:
    model_dir = make_model(tmp_path / "model", hold=True)
    model = ModelSpec(name="upper", model_data=str(model_dir))
    lines = tuple(f"r{i}" for i in range(100))  # one request per record: many chances to notice the stop
    inputs = make_inputs(tmp_path / "in", lines=lines)
    first = seed_body(f"{inputs}/", f"{tmp_path}/out-1/", strategy="SingleRecord")
    queue.send(first)
    worker = make_worker(queue, store, model, job_lease_s=0.6)
    result: list = []
    thread = threading.Thread(target=lambda: result.append(worker.work()))  # not burst: runs until stopped
    thread.start()
    name = job_name_for(first)
    wait_until(lambda: (job := store.find_job(name)) and job.owner, what="the job to start")

    worker.stop(abandon=True)  # what a server does on a fast shutdown (the CLI: a second Ctrl-C)
    wait_until(lambda: store.get_job(name).owner is None, what="the job lease to be released")
    time.sleep(1.0)  # the runner's heartbeat (every 0.2 s) notices the lost lease before its next batch
    release(model_dir)
    thread.join(timeout=60)

    [outcome] = result[0].outcomes
    assert (outcome.action, outcome.job_status) == (Action.RELEASED, "InProgress")
    assert queue.attributes()["visible"] == 1  # the message is back at once for the next worker
    assert store.get_job(name).status is JobStatus.IN_PROGRESS

    # The next worker resumes the abandoned job at start (committed files kept), then acknowledges the message.
    stats = make_worker(queue, store, model).work(burst=True)
    assert stats.recovered == [name]
    assert [(o.action, o.job_name) for o in stats.outcomes] == [(Action.DONE, name)]
    assert store.get_job(name).status is JobStatus.COMPLETED
    assert (tmp_path / "out-1" / "part-1.csv.out").read_text() == "".join(f"R{i}\n" for i in range(100))


@pytest.mark.slow
def test_graceful_stop_from_another_thread_finishes_the_message_in_hand(
    tmp_path: Path, queue: SqliteQueue, store: JobStore
) -> None:
    model_dir = make_model(tmp_path / "model", hold=True)
    model = ModelSpec(name="upper", model_data=str(model_dir))
    inputs = make_inputs(tmp_path / "in")
    first = seed_body(f"{inputs}/", f"{tmp_path}/out-1/")
    queue.send(first)
    queue.send(seed_body(f"{inputs}/", f"{tmp_path}/out-2/"))
    worker = make_worker(queue, store, model, wait_s=0.2)
    result: list = []
    thread = threading.Thread(target=lambda: result.append(worker.work()))
    thread.start()
    wait_until(lambda: (job := store.find_job(job_name_for(first))) and job.owner, what="the job to start")

    worker.stop()
    release(model_dir)
    thread.join(timeout=60)

    assert not thread.is_alive()
    [outcome] = result[0].outcomes
    assert (outcome.action, outcome.job_status) == (Action.DONE, "Completed")
    assert queue.attributes()["visible"] == 1  # the second message was never received


@pytest.mark.slow
def test_detached_jobs_start_in_the_background_and_the_message_is_deleted_at_once(
    tmp_path: Path, queue: SqliteQueue, store: JobStore, model: ModelSpec
) -> None:
    body = seed_body(f"{make_inputs(tmp_path / 'in')}/", f"{tmp_path}/out/")
    queue.send(body)
    queue.send(body)  # a duplicate must not start a second runner process

    stats = make_worker(queue, store, model, run_jobs=False).work(burst=True)

    assert [o.action for o in stats.outcomes] == [Action.DONE, Action.DONE]
    assert queue.attributes()["visible"] == queue.attributes()["in_flight"] == 0
    name = job_name_for(body)
    final = wait_until(
        lambda: (job := store.get_job(name)).is_terminal and job, timeout=60, what="the background job"
    )
    assert final.status is JobStatus.COMPLETED and final.attempts == 1
    assert (tmp_path / "out" / "part-1.csv.out").read_text() == "ALPHA\nBETA\n"


def test_worker_refuses_bad_settings_with_how_to_fix_them(queue: SqliteQueue, store: JobStore) -> None:
    with pytest.raises(Exception, match="requeue_failed needs run_jobs=True"):
        Worker(queue, store, run_jobs=False, requeue_failed=1)
    with pytest.raises(Exception, match="requeue_failed must be an integer >= 0"):
        Worker(queue, store, requeue_failed=True)
    with pytest.raises(Exception, match="model_data /nonexistent does not exist"):
        Worker(queue, store, model=ModelSpec(name="m", model_data="/nonexistent"))
    with pytest.raises(Exception, match="is not a model name"):
        Worker(queue, store, model="bad name")


def test_request_matches_what_the_local_engine_accepts(
    tmp_path: Path, store: JobStore, model: ModelSpec
) -> None:
    ModelRegistry(store).create(model)
    message = parse_message(
        seed_body(f"{make_inputs(tmp_path / 'in')}/", f"{tmp_path}/out/", strategy="SingleRecord")
    )
    request = build_request(message, job_name="j1", model_name="upper", defaults=CSV_DEFAULTS)
    record = get_engine("local", store).submit(request)
    assert record.request["BatchStrategy"] == "SingleRecord"
    assert record.request["TransformOutput"]["AssembleWith"] == "Line"
