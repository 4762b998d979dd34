"""Recovery that needs no human (docs/transform.md, "Recovery"), against a real `batchlane serve` running the echo
model: a hung record, a model server killed mid-job, restarts used up and then `jobs resume` with a fixed model,
and a job-level deadline (`--max-runtime`)."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from batchlane.cli.main import main
from batchlane.errors import Conflict
from batchlane.jobs.db import _MIGRATIONS
from batchlane.jobs.describe import describe_job
from batchlane.jobs.state import FileState, JobStatus
from batchlane.jobs.store import JobStore
from batchlane.models import ModelRegistry, ModelSpec
from batchlane.transform.supervisor import backoff_s, describe_exit
from tests.models import (
    ECHO_DIR,
    ECHO_ENV,
    echo_calls,
    job_log,
    run_job,
    temp_files,
    transform_request,
    tree,
    wait_until,
    write_files,
)

FAST_FAIL = {"InvocationsTimeoutInSeconds": 1, "InvocationsMaxRetries": 0}


def _serve_pids() -> list[int]:
    """The `batchlane serve` processes this test process started (the job's model server runs in-process here)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == os.getpid() and b"serve" in command:
            found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("on_record_error", ["fail", "error-row"])
def test_a_hung_record_fails_only_its_file_and_the_server_is_restarted(
    store: JobStore, tmp_path: Path, on_record_error: str
) -> None:
    """Before: the server stayed stuck in the hung handler, and every later file timed out too (with error rows,
    every later record became an error row after waiting out the timeout)."""
    files = {"a-hangs.txt": "slow\n", "b.txt": "one\ntwo\n", "c.txt": "three\n"}
    request = transform_request(
        "hung",
        write_files(tmp_path / "in", files),
        f"{tmp_path}/out/",
        ModelClientConfig=FAST_FAIL,
        Environment={"ECHO_SLOW_S": "600"},  # hangs far longer than the whole test may take
    )

    started = time.monotonic()
    record = run_job(store, request, {"on_record_error": on_record_error})

    assert time.monotonic() - started < 60
    assert record.status is JobStatus.FAILED  # as SageMaker: a failed file fails the job
    assert tree(tmp_path / "out") == {"b.txt.out": b"echo:one\necho:two\n", "c.txt.out": b"echo:three\n"}
    assert [f.input_key for f in store.files("hung", FileState.FAILED)] == ["a-hangs.txt"]
    assert "no response within 1 s (InvocationsTimeoutInSeconds)" in record.failure_reason
    described = describe_job(record)
    assert described["Batchlane"]["Restarts"] == 1
    assert described["Batchlane"]["Progress"]["FilesDone"] == 2
    log = job_log(store, "hung")
    assert "restarting the model server (restart 1 of 3 in this run) in 1 s: an invocation timed out" in log
    assert "model server restarted: ready after" in log
    assert "restarting the model server" in store.log_path("hung").with_suffix(".container.log").read_text()


@pytest.mark.slow
def test_a_model_server_killed_mid_job_is_restarted_and_the_job_completes(
    store: JobStore, tmp_path: Path
) -> None:
    """Before: the job went Failed at once, leaving the later files pending."""
    files = {f"part-{i}.txt": f"{i}a\n{i}b\n" for i in range(6)}
    request = transform_request(
        "killed",
        write_files(tmp_path / "in", files),
        f"{tmp_path}/out/",
        BatchStrategy="SingleRecord",
        ModelClientConfig={"InvocationsTimeoutInSeconds": 30, "InvocationsMaxRetries": 0},
        Environment={"ECHO_BATCH_SLEEP_S": "0.3"},
    )
    killed: list[int] = []

    def kill_the_server() -> None:
        wait_until(lambda: (job := store.find_job("killed")) is not None and job.files_done >= 1, timeout=90)
        pids = wait_until(_serve_pids, timeout=10)
        os.kill(pids[0], signal.SIGKILL)
        killed.append(pids[0])

    killer = threading.Thread(target=kill_the_server)
    killer.start()
    record = run_job(store, request)
    killer.join()

    assert killed
    assert record.status is JobStatus.COMPLETED, record.failure_reason
    assert tree(tmp_path / "out") == {
        f"part-{i}.txt.out": f"echo:{i}a\necho:{i}b\n".encode() for i in range(6)
    }
    assert temp_files(tmp_path / "out") == []
    extras = describe_job(record)["Batchlane"]
    assert extras["Restarts"] == 1
    assert extras["Progress"]["RecordsDone"] == 12  # the redone file is not counted twice
    assert "the model container was killed by SIGKILL" in job_log(store, "killed")
    assert killed[0] not in _serve_pids()


@pytest.mark.slow
def test_restarts_used_up_fail_the_job_and_resume_with_a_fixed_model_redoes_only_the_failed_files(
    store: JobStore, tmp_path: Path
) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(ECHO_DIR, model_dir)
    ModelRegistry(store).create(ModelSpec(name="crashy", model_data=str(model_dir), environment=ECHO_ENV))
    calls = tmp_path / "calls.jsonl"
    files = {"a.txt": "fine\n", "b.txt": "crash\n", "c.txt": "later\n"}
    source = write_files(tmp_path / "in", files)
    request = transform_request(
        "exhausted",
        source,
        f"{tmp_path}/out/",
        model="crashy",
        ModelClientConfig=FAST_FAIL,
        Environment={"ECHO_LOG": str(calls)},
    )

    record = run_job(store, request, {"max_restarts": 1})

    # b.txt killed the server, was redone once on a fresh one, killed it again: no restart left.
    assert record.status is JobStatus.FAILED
    assert record.failure_reason.startswith(
        f"AlgorithmError: the model container exited with code 3 while transforming {(tmp_path / 'in/b.txt').as_uri()}"
        ", and its 1 restarts are used up (max_restarts=1)"
    )
    assert describe_job(record)["Batchlane"]["Restarts"] == 1
    assert [f.input_key for f in store.files("exhausted", FileState.FAILED)] == ["b.txt"]
    assert [f.input_key for f in store.files("exhausted", FileState.PENDING)] == ["c.txt"]
    assert tree(tmp_path / "out") == {"a.txt.out": b"echo:fine\n"}
    assert [call["body"] for call in echo_calls(calls)] == ["fine\n", "crash\n", "crash\n"]
    committed = (tmp_path / "out/a.txt.out").stat()

    # The user fixes the model, then resumes through the CLI: only the failed and pending files are sent.
    code = model_dir / "code/inference.py"
    code.write_text(code.read_text().replace("os._exit(3)", "pass"))
    calls.unlink()
    with pytest.raises(SystemExit) as resumed:
        main(["jobs", "resume", "exhausted", "--quiet", "--db", str(store.path)])

    assert resumed.value.code == 0
    final = store.get_job("exhausted")
    assert final.status is JobStatus.COMPLETED, final.failure_reason
    assert [call["body"] for call in echo_calls(calls)] == ["crash\n", "later\n"]
    assert (tmp_path / "out/a.txt.out").stat().st_mtime_ns == committed.st_mtime_ns
    clean = run_job(store, transform_request("clean", source, f"{tmp_path}/clean/", model="crashy"))
    assert clean.status is JobStatus.COMPLETED
    assert tree(tmp_path / "out") == tree(tmp_path / "clean")
    assert describe_job(final)["Batchlane"]["Restarts"] == 1


@pytest.mark.slow
def test_max_runtime_stops_a_job_whose_model_hangs_with_the_reason(store: JobStore, tmp_path: Path) -> None:
    """`batchlane transform --max-runtime`: the job ends Stopped (exit 3) at its deadline, even while a request
    waits for an answer that would take an hour; committed files stay, nothing half-written is left."""
    source = write_files(tmp_path / "in", {"a.txt": "fast\n", "b.txt": "slow\n", "c.txt": "never\n"})
    args = ["--model", "echo", "--input", source, "--output", f"{tmp_path}/out/", "--name", "deadline"]
    args += ["--content-type", "text/plain", "--split-type", "Line", "--timeout", "3600", "--retries", "0"]
    args += ["--env", "ECHO_SLOW_S=3600", "--max-runtime", "15", "--quiet", "--db", str(store.path)]

    started = time.monotonic()
    with pytest.raises(SystemExit) as ended:
        main(["transform", *args])

    assert ended.value.code == 3
    assert 15 <= time.monotonic() - started < 45
    record = store.get_job("deadline")
    assert record.status is JobStatus.STOPPED
    assert record.failure_reason == "MaxRuntimeExceeded: the job ran longer than 15 s (max_runtime_s)"
    assert describe_job(record)["FailureReason"] == record.failure_reason
    assert tree(tmp_path / "out") == {"a.txt.out": b"echo:fast\n"}
    assert "MaxRuntimeExceeded" in job_log(store, "deadline")
    assert _serve_pids() == []


def test_the_restart_counter_is_fenced_and_an_older_store_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (2)")
        for statement in _MIGRATIONS[1] + _MIGRATIONS[2]:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO jobs (name, arn, status, request, options, spec_hash, creation_time, last_modified_time)"
            " VALUES ('old', 'arn:x', 'InProgress', '{}', '{}', 'h', '2024-05-01T12:00:00.000000Z',"
            " '2024-05-01T12:00:00.000000Z')"
        )
    conn.close()
    store = JobStore(path)
    assert describe_job(store.get_job("old"))["Batchlane"]["Restarts"] == 0
    assert store.claim("old", "runner-a", 30)
    assert store.add_restart("old", owner="runner-a") == 1
    with pytest.raises(Conflict, match="held by runner-a"):
        store.add_restart("old", owner="zombie")
    assert store.get_job("old").restarts == 1
    store.close()


@pytest.mark.parametrize(("restart", "wait_s"), [(1, 1.0), (2, 2.0), (3, 4.0), (6, 30.0), (60, 30.0)])
def test_restart_backoff_doubles_up_to_a_cap(restart: int, wait_s: float) -> None:
    assert backoff_s(restart) == wait_s


@pytest.mark.parametrize(
    ("code", "text"), [(3, "exited with code 3"), (0, "exited with code 0"), (-9, "was killed by SIGKILL")]
)
def test_an_exit_is_described_by_its_code_or_signal(code: int, text: str) -> None:
    assert describe_exit(code) == text
