"""One orphan sweep (``jobs.lease.find_orphans``) for every front door, and one crash path (``record_crash``).

A job whose runner was SIGKILLed on this host still holds an unexpired lease. The control plane's executor, the
queue worker and ``batchlane jobs resume --all`` must all see it as an orphan at once (before, the executor and
``jobs resume --all`` waited for the lease to run out while the worker did not).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from batchlane.api.executor import JobExecutor
from batchlane.cli.main import main
from batchlane.engines import get_engine
from batchlane.jobs.lease import find_orphans, owner_is_dead, runner_alive, runner_id
from batchlane.jobs.lifecycle import record_crash
from batchlane.jobs.state import JobStatus
from batchlane.jobs.store import JobStore
from batchlane.models import ModelRegistry, ModelSpec
from batchlane.queue.sqlite import SqliteQueue
from batchlane.queue.worker import Worker
from tests.models import transform_request


def _dead_owner() -> str:
    """A runner id of this host whose process has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return f"{socket.gethostname()}:{child.pid}:deadbeef"


def _job(store: JobStore, root: Path, name: str) -> None:
    """A job with an empty input folder: any runner ends it Failed at once ("no input objects"), no model needed."""
    ModelRegistry(store).create(ModelSpec(name="echo", model_data=str(root)), exist_ok=True)
    (root / f"in-{name}").mkdir()
    get_engine("local", store).submit(transform_request(name, f"{root}/in-{name}/", f"{root}/out-{name}/"))


@pytest.fixture
def store_with_dead_runner(tmp_path: Path) -> JobStore:
    store = JobStore(tmp_path / "jobs.db")
    _job(store, tmp_path, "killed")
    owner = _dead_owner()
    assert store.claim("killed", owner, lease_s=600)  # the lease would last ten more minutes
    _job(store, tmp_path, "held")
    assert store.claim("held", runner_id(), lease_s=600)  # a live runner (this process) holds it
    assert owner_is_dead(owner) and not runner_alive(store.get_job("killed"))
    return store


def test_the_sweep_finds_a_killed_runners_job_but_not_a_live_ones(store_with_dead_runner: JobStore) -> None:
    assert [r.name for r in find_orphans(store_with_dead_runner)] == ["killed"]


def test_the_executor_queues_a_killed_runners_job_at_once(store_with_dead_runner: JobStore) -> None:
    executor = JobExecutor(store_with_dead_runner, workers=1)  # not started: scan only queues
    assert executor.scan(grace=True) == ["killed"]


def test_the_worker_resumes_a_killed_runners_job_at_once(
    store_with_dead_runner: JobStore, tmp_path: Path
) -> None:
    worker = Worker(SqliteQueue(tmp_path / "queue.db", "jobs"), store_with_dead_runner, model="echo")
    assert worker.recover_orphans() == ["killed"]
    record = store_with_dead_runner.get_job("killed")
    assert record.status is JobStatus.FAILED and "no input objects" in (record.failure_reason or "")
    assert store_with_dead_runner.get_job("held").status is JobStatus.IN_PROGRESS


def test_jobs_resume_all_resumes_a_killed_runners_job_at_once(
    store_with_dead_runner: JobStore, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as ended:
        main(["jobs", "resume", "--all", "--db", str(store_with_dead_runner.path)])
    assert ended.value.code in (0, None)
    assert capsys.readouterr().out.strip() == "killed: Failed"


def test_an_unclaimed_job_is_left_to_its_creator_during_the_grace(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    _job(store, tmp_path, "fresh")
    assert find_orphans(store, unclaimed_grace_s=60) == []
    assert [r.name for r in find_orphans(store)] == ["fresh"]


def test_a_crashing_runner_gives_the_job_back_then_fails_it(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    _job(store, tmp_path, "crashy")
    for attempt in (1, 2, 3):
        owner = runner_id()
        assert store.claim("crashy", owner, lease_s=600)
        record = record_crash(store, "crashy", owner, RuntimeError("boom"))
        assert record is not None and record.attempts == attempt
        if attempt < 3:
            assert record.status is JobStatus.IN_PROGRESS and record.owner is None  # resumable at once
    assert record.status is JobStatus.FAILED
    assert record.failure_reason == "InternalError: the job runner crashed 3 times; last error: boom"


def test_an_interrupted_runner_only_gives_the_job_back(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    _job(store, tmp_path, "interrupted")
    for _ in range(4):
        owner = runner_id()
        assert store.claim("interrupted", owner, lease_s=600)
        record = record_crash(store, "interrupted", owner, KeyboardInterrupt())
        assert record is not None and record.status is JobStatus.IN_PROGRESS and record.owner is None


def test_a_runner_refused_by_fencing_stops_as_having_lost_its_lease(tmp_path: Path) -> None:
    """The lease is released (a worker's ``stop(abandon=True)``) before the runner's heartbeat notices: the runner's
    next fenced write is refused, and the runner gives the job up instead of crashing (a crash dead-lettered the
    worker's message on a loaded machine)."""
    from batchlane.jobs.state import FileState
    from batchlane.transform.runner import JobRunner

    store = JobStore(tmp_path / "jobs.db")
    _job(store, tmp_path, "abandoned")
    (tmp_path / "in-abandoned" / "a.txt").write_text("x\n")
    store.add_files("abandoned", [("in-abandoned/a.txt", "a.txt.out", 2)])
    store.mark_file("abandoned", "in-abandoned/a.txt", FileState.DONE, records=1)
    runner = JobRunner(store, "abandoned", lease_s=600)

    def abandon(event: str, data: dict) -> None:
        if event == "start":
            assert store.release("abandoned", runner.owner)

    runner.on_progress = abandon
    record = runner.run()  # its last write, the transition to Completed, is refused: nobody holds the job
    assert record.status is JobStatus.IN_PROGRESS and record.owner is None and runner.halted
    assert [r.name for r in find_orphans(store)] == ["abandoned"]
