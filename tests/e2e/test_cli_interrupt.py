"""Ctrl-C during `batchlane transform`: the job stops gracefully (Stopped, exit 130, the file in flight abandoned
uncommitted), says how to resume, and `jobs resume` finishes it with the outputs of an uninterrupted run. Errors that
name an existing job say how to resume it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from batchlane.engines import get_engine
from batchlane.jobs.state import FileState, JobStatus
from batchlane.jobs.store import JobStore
from tests.models import (
    CLI,
    ECHO_DIR,
    echo_cli_env,
    run_cli,
    temp_files,
    transform_request,
    tree,
    wait_until,
    write_files,
)

FILES = {f"part-{i}.txt": "".join(f"{i}-{n}\n" for n in range(4)) for i in range(6)}


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, str]:
    """The echo model sleeping 0.1 s per request, so a job of 24 single-record requests takes a few seconds."""
    env = echo_cli_env(tmp_path / "home", "ECHO_BATCH_SLEEP_S=0.1")
    write_files(tmp_path / "in", FILES)
    return env


def _transform_args(tmp_path: Path, name: str, output: str, source: str = "in") -> list[str]:
    return [
        "transform", "--model", "echo", "--name", name, "--input", f"{tmp_path}/{source}/", "--output", output,
        "--content-type", "text/plain", "--split-type", "Line", "--strategy", "SingleRecord", "--concurrency", "1",
    ]  # fmt: skip


def _start_and_interrupt(
    env: dict[str, str], args: list[str], store: JobStore, out: Path, *, presses: int, files_done: int
) -> tuple[int, str, str]:
    """Run ``batchlane transform ARGS``; once ``files_done`` files are committed and the next one is half written,
    press Ctrl-C ``presses`` times. Returns the exit code, stdout and stderr."""
    # A session of its own, signalled as a group: what a terminal's Ctrl-C does to the foreground job.
    runner = subprocess.Popen(
        [*CLI, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        name = args[args.index("--name") + 1]
        wait_until(
            lambda: (
                (job := store.find_job(name)) is not None and job.files_done >= files_done and temp_files(out)
            ),
            timeout=90,
            interval=0.02,
        )
        for press in range(presses):
            if press:
                time.sleep(0.5)  # two signals in one instant would reach Python's handler as one
            os.killpg(runner.pid, signal.SIGINT)
        stdout, stderr = runner.communicate(timeout=60)
    finally:
        if runner.poll() is None:
            runner.kill()
    return runner.returncode, stdout, stderr


def test_ctrl_c_stops_the_job_and_jobs_resume_finishes_it(env: dict[str, str], tmp_path: Path) -> None:
    store = JobStore(env["BATCHLANE_DB"])

    code, stdout, stderr = _start_and_interrupt(
        env,
        _transform_args(tmp_path, "interrupted", f"{tmp_path}/out/"),
        store,
        tmp_path / "out",
        presses=1,
        files_done=1,
    )

    assert code == 130, stdout + stderr
    assert "interrupted: Stopped" in stdout
    assert "resume with: batchlane jobs resume interrupted" in stdout
    assert "stopping: abandoning the file in flight" in stderr
    assert "Traceback" not in stderr
    job = store.get_job("interrupted")
    assert job.status is JobStatus.STOPPED
    done = {f.output_key for f in store.files("interrupted", FileState.DONE)}
    assert 1 <= len(done) < len(FILES)
    assert not store.files("interrupted", FileState.FAILED)  # the file in flight was abandoned, not failed
    assert set(tree(tmp_path / "out")) == done  # no partial .out committed, no temp file left
    assert temp_files(tmp_path / "out") == []
    assert "[batchlane]: job Stopped" in store.log_path("interrupted").read_text()

    # Running it again under the same name says how to resume it instead.
    again = run_cli(_transform_args(tmp_path, "interrupted", f"{tmp_path}/out/"), env)
    assert again.returncode == 1
    (line,) = again.stderr.strip().splitlines()
    assert line.endswith("(it is Stopped: resume it with `batchlane jobs resume interrupted`)")

    resumed = run_cli(["jobs", "resume", "interrupted"], env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (
        f"resuming interrupted (was Stopped): {len(done)} of {len(FILES)} files already done"
        in resumed.stderr
    )
    assert "interrupted: Completed" in resumed.stdout
    assert f"({(len(FILES) - len(done)) * 4} this run)" in resumed.stdout

    reference = run_cli([*_transform_args(tmp_path, "reference", f"{tmp_path}/ref/"), "-q"], env)
    assert reference.returncode == 0, reference.stdout + reference.stderr
    assert tree(tmp_path / "out") == tree(tmp_path / "ref")
    assert len(tree(tmp_path / "out")) == len(FILES)
    final = store.get_job("interrupted")
    assert (final.files_done, final.records_done, final.attempts) == (len(FILES), 24, 2)


def test_a_second_ctrl_c_aborts_at_once_and_the_job_stays_resumable(
    env: dict[str, str], tmp_path: Path
) -> None:
    store = JobStore(env["BATCHLANE_DB"])

    # The graceful stop abandons the request in flight at once, then stops the model server, which here takes 4 s
    # to exit on SIGTERM (ECHO_SLOW_EXIT_S): the second Ctrl-C lands while the stop is still waiting for it.
    for i in range(3):
        (tmp_path / "slow-in" / f"part-{i}.txt").parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "slow-in" / f"part-{i}.txt").write_text(("slow\n" if i == 0 else "") + f"{i}-a\n{i}-b\n")
    slow = [
        *_transform_args(tmp_path, "aborted", f"{tmp_path}/out/", source="slow-in"),
        "--env",
        "ECHO_SLOW_EXIT_S=4",
    ]
    code, stdout, stderr = _start_and_interrupt(env, slow, store, tmp_path / "out", presses=2, files_done=0)

    assert code == 130, stdout + stderr
    assert stderr.strip().endswith(
        "aborted: job aborted was left InProgress; resume with: batchlane jobs resume aborted"
    )
    assert store.get_job("aborted").status is JobStatus.IN_PROGRESS
    assert set(tree(tmp_path / "out")) <= {f.output_key for f in store.files("aborted", FileState.DONE)} | {
        p.relative_to(tmp_path / "out").as_posix() for p in temp_files(tmp_path / "out")
    }

    # The same name, or another job on the same output, points at `jobs resume` (the runner is gone).
    overlap = run_cli(_transform_args(tmp_path, "other", f"{tmp_path}/out/", source="slow-in"), env)
    assert overlap.returncode == 1
    assert (
        "(it is InProgress with no live runner: resume it with `batchlane jobs resume aborted`)"
        in overlap.stderr
    )

    resumed = run_cli(["jobs", "resume", "aborted", "-q"], env)
    assert (resumed.returncode, resumed.stdout.strip()) == (0, "aborted: Completed")
    assert temp_files(tmp_path / "out") == []
    assert tree(tmp_path / "out") == {
        "part-0.txt.out": b"echo:slow\necho:0-a\necho:0-b\n",
        "part-1.txt.out": b"echo:1-a\necho:1-b\n",
        "part-2.txt.out": b"echo:2-a\necho:2-b\n",
    }


def test_resume_refuses_a_job_a_live_runner_holds(env: dict[str, str], tmp_path: Path) -> None:
    store = JobStore(env["BATCHLANE_DB"])
    get_engine("local", store).submit(transform_request("held", f"{tmp_path}/in/", f"{tmp_path}/held/"))
    assert store.claim("held", f"elsewhere:{os.getpid()}:x", lease_s=60)

    result = run_cli(["jobs", "resume", "held"], env)

    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: transform job held is being run by elsewhere:{os.getpid()}:x; `batchlane jobs wait held` waits "
        "for it, `batchlane jobs stop held` stops it"
    )


def test_ctrl_c_while_the_model_starts_stops_the_job_at_once(env: dict[str, str], tmp_path: Path) -> None:
    from batchlane.examples.user_code import make_model_dir

    # model_fn blocks until a file appears that never does: /ping answers 503 for 120 s.
    slow = make_model_dir("slow_load", ECHO_DIR, tmp_path / "slow")
    store = JobStore(env["BATCHLANE_DB"])
    runner = subprocess.Popen(
        [*CLI, "transform", "--model-dir", str(slow), "--name", "starting", "--input", f"{tmp_path}/in/",
         "--output", f"{tmp_path}/out/", "--content-type", "text/plain", "--split-type", "Line"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        log = store.folder / "logs" / "starting.container.log"
        wait_until(
            lambda: log.exists() and "loaded user module" in log.read_text(), timeout=90, interval=0.05
        )
        pressed = time.monotonic()
        os.killpg(runner.pid, signal.SIGINT)
        stdout, stderr = runner.communicate(timeout=60)
    finally:
        if runner.poll() is None:
            runner.kill()

    assert runner.returncode == 130, stdout + stderr
    assert time.monotonic() - pressed < 20
    assert "starting: Stopped" in stdout and "resume with: batchlane jobs resume starting" in stdout
    assert store.get_job("starting").status is JobStatus.STOPPED
    assert not (tmp_path / "out").exists()
