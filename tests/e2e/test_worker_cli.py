"""`batchlane worker` as an operator runs it: real processes killed with SIGKILL at each crash point, then restarted.

No test-only flags: each crash point is reached by holding something the worker needs next (the job store's or the
queue's write lock, or the model's predictions) and killing the process while the test can see it waiting there.
Whatever the crash point, a restarted worker ends with exactly one job, Completed, and an empty queue.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from batchlane.jobs.state import JobStatus
from batchlane.jobs.store import JobStore
from batchlane.queue.message import job_name_for
from batchlane.queue.sqlite import SqliteQueue
from tests.integration.queue.worker_support import make_inputs, make_model, release, seed_body, wait_until


class Setup:
    def __init__(self, tmp_path: Path, hold: bool) -> None:
        self.tmp_path = tmp_path
        self.home = tmp_path / "home"
        self.model_dir = make_model(tmp_path / "model", hold=hold)
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("BATCHLANE_", "AWS_ENDPOINT_URL"))
        }
        self.env.update(
            BATCHLANE_HOME=str(self.home),
            BATCHLANE_DEFAULT_CONTENT_TYPE="text/csv",
            BATCHLANE_DEFAULT_SPLIT_TYPE="Line",
            BATCHLANE_DEFAULT_ACCEPT="text/csv",
        )
        # A 2 s lease renewed every ~0.7 s: a killed worker's message comes back within 2 s.
        self.queue = SqliteQueue(self.home / "queue.db", "batchlane-jobs", visibility_timeout_s=2)
        self.store = JobStore(self.home / "batchlane.db")
        self.body = seed_body(f"{make_inputs(tmp_path / 'in')}/", f"{tmp_path}/out/")
        self.job = job_name_for(self.body)
        self.processes: list[subprocess.Popen[str]] = []

    def worker(self, *args: str) -> subprocess.Popen[str]:
        log = open(self.tmp_path / f"worker-{len(self.processes)}.log", "w")  # noqa: SIM115 - closed by the OS
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "batchlane",
                "worker",
                "--model",
                "upper",
                "--model-data",
                str(self.model_dir),
            ]
            + list(args),
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def log(self, index: int) -> str:
        return (self.tmp_path / f"worker-{index}.log").read_text()

    def kill(self, process: subprocess.Popen[str]) -> None:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def job_running(self) -> bool:
        job = self.store.find_job(self.job)
        return job is not None and job.owner is not None

    def finish_with_a_new_worker(self) -> dict:
        """Wait for the message to come back, run `worker --burst --json`, return its stats."""
        wait_until(
            lambda: self.queue.attributes()["visible"] == 1, timeout=10, what="the message to come back"
        )
        restarted = self.worker("--burst", "--wait", "0", "--json")
        out, _ = restarted.communicate(timeout=90)
        assert restarted.returncode == 0, self.log(len(self.processes) - 1)
        return json.loads(out)

    def assert_one_completed_job(self) -> JobStatus:
        [job] = self.store.list_jobs(max_results=100)[0]
        assert (job.name, job.status) == (self.job, JobStatus.COMPLETED)
        assert (self.tmp_path / "out" / "part-1.csv.out").read_text() == "ALPHA\nBETA\n"
        attrs = self.queue.attributes()
        assert (attrs["visible"], attrs["in_flight"], attrs["dead_letters"]) == (0, 0, 0)
        return job

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self.queue.close()
        self.store.close()


@pytest.fixture()
def setup(tmp_path: Path) -> Iterator[Setup]:
    state = Setup(tmp_path, hold=False)
    yield state
    state.close()


@pytest.fixture()
def held(tmp_path: Path) -> Iterator[Setup]:
    """Like ``setup``, but the model's predictions wait until ``release(held.model_dir)``."""
    state = Setup(tmp_path, hold=True)
    yield state
    state.close()


def model_servers(model_dir: Path) -> list[int]:
    """PIDs of `batchlane serve` processes serving ``model_dir``."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        if str(model_dir) in (process.info["cmdline"] or []):
            found.append(process.info["pid"])
    return found


def hold_write_lock(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    return conn


def test_killed_right_after_receive(setup: Setup) -> None:
    first = setup.worker("--wait", "1")
    wait_until(lambda: "waiting for messages" in setup.log(0), what="the worker to start")
    lock = hold_write_lock(setup.home / "batchlane.db")  # its next step (registering the model) must wait
    setup.queue.send(setup.body)
    wait_until(lambda: setup.queue.attributes()["in_flight"] == 1, what="the worker to receive the message")
    setup.kill(first)
    lock.execute("ROLLBACK")
    assert setup.store.find_job(setup.job) is None  # killed between receive and job creation

    stats = setup.finish_with_a_new_worker()

    assert stats["actions"] == {"done": 1} and stats["recovered"] == []
    assert setup.assert_one_completed_job().attempts == 1


def test_killed_after_the_job_started(held: Setup) -> None:
    setup = held
    setup.queue.send(setup.body)
    first = setup.worker("--burst", "--wait", "0")
    wait_until(setup.job_running, what="the job to start")
    assert model_servers(setup.model_dir)
    setup.kill(first)
    wait_until(lambda: not model_servers(setup.model_dir), what="the model server to die with its worker")
    assert setup.store.get_job(setup.job).status is JobStatus.IN_PROGRESS
    release(setup.model_dir)

    stats = setup.finish_with_a_new_worker()

    assert stats["recovered"] == [setup.job]  # resumed at start: its runner's process is gone
    assert [(o["action"], o["job_name"]) for o in stats["outcomes"]] == [("done", setup.job)]
    assert setup.assert_one_completed_job().attempts == 2  # two runners, one job


def test_killed_after_the_job_completed_but_before_the_delete(held: Setup) -> None:
    setup = held
    setup.queue.send(setup.body)
    first = setup.worker("--burst", "--wait", "0")
    wait_until(setup.job_running, what="the job to start")
    lock = hold_write_lock(setup.home / "queue.db")  # the delete must wait
    release(setup.model_dir)
    wait_until(lambda: setup.store.get_job(setup.job).status is JobStatus.COMPLETED, what="the job to end")
    setup.kill(first)
    lock.execute("ROLLBACK")

    stats = setup.finish_with_a_new_worker()

    assert [(o["action"], o["job_status"]) for o in stats["outcomes"]] == [("done", "Completed")]
    assert setup.assert_one_completed_job().attempts == 1  # found finished, not run again


def test_sigterm_finishes_the_current_message_then_exits(held: Setup) -> None:
    setup = held
    setup.queue.send(setup.body)
    process = setup.worker("--wait", "1", "--json")
    wait_until(setup.job_running, what="the job to start")
    process.send_signal(signal.SIGTERM)
    wait_until(lambda: "stopping after the current message" in setup.log(0), what="the worker to acknowledge")
    assert process.poll() is None  # still finishing the job
    release(setup.model_dir)
    out, _ = process.communicate(timeout=60)

    assert process.returncode == 0
    assert json.loads(out)["actions"] == {"done": 1}
    setup.assert_one_completed_job()


def test_every_option_has_help_and_bad_combinations_are_one_line_errors(tmp_path: Path) -> None:
    env = {**os.environ, "BATCHLANE_HOME": str(tmp_path), "COLUMNS": "200"}
    shown = subprocess.run(
        [sys.executable, "-m", "batchlane", "worker", "--help"], env=env, capture_output=True, text=True
    )
    assert shown.returncode == 0
    for option in (
        "--queue",
        "--db",
        "--model",
        "--model-data",
        "--burst",
        "--max-messages",
        "--requeue-failed",
        "--detach-jobs",
        "--visibility-timeout",
        "--wait",
        "--retry-backoff",
        "--no-recover",
        "--json",
    ):
        line = next(line for line in shown.stdout.splitlines() if f" {option} " in line)
        assert len(line.split(option, 1)[1].strip(" │")) > 10, f"{option} has no help"
    bad = subprocess.run(
        [sys.executable, "-m", "batchlane", "worker", "--detach-jobs", "--requeue-failed", "2", "--burst"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("error: requeue_failed needs run_jobs=True")
