"""How a transform job fails, retries and stops, against the echo model: in a real `batchlane serve` where the
container is the subject (execution parameters, timeouts, retries, start-up, stop, a dying server), loaded in the
test's process (``run_job_in_process``) where only the data is. Records
containing ``poison`` (HTTP 500), ``badrequest`` (400), ``flaky`` (500, then 200), ``slow`` or ``half`` (too few
results) make the model misbehave on purpose."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest

from batchlane.examples.user_code import make_model_dir
from batchlane.jobs.describe import describe_job
from batchlane.jobs.state import FileState, JobStatus
from batchlane.jobs.store import JobStore
from batchlane.models import ModelRegistry, ModelSpec
from tests.models import (
    ECHO_DIR,
    ECHO_ENV,
    echo_calls,
    job_log,
    register_echo,
    run_job,
    run_job_in_process,
    temp_files,
    transform_request,
    tree,
    wait_until,
    write_files,
)

# Each test starts a `batchlane serve` process or loads a real model: `make test-fast` skips them.


def _no_retries(timeout: int = 30, retries: int = 0) -> dict[str, int]:
    return {"InvocationsTimeoutInSeconds": timeout, "InvocationsMaxRetries": retries}


@pytest.mark.parametrize(
    ("request_fields", "log_line", "records_per_call"),
    [
        # Nothing set: the container's /execution-parameters (from its SAGEMAKER_* variables) decides.
        ({}, "MaxConcurrentTransforms=3, MaxPayloadInMB=2, BatchStrategy=SINGLE_RECORD", [1, 1, 1]),
        # Set in the request: the request wins, field by field.
        (
            {"BatchStrategy": "MultiRecord", "MaxPayloadInMB": 4},
            "MaxConcurrentTransforms=3, MaxPayloadInMB=4, BatchStrategy=MULTI_RECORD",
            [3],
        ),
    ],
    ids=["from-container", "request-wins"],
)
@pytest.mark.slow
def test_execution_parameters_fill_unset_values(
    tmp_path: Path, request_fields: dict, log_line: str, records_per_call: list[int]
) -> None:
    store = JobStore(tmp_path / "jobs.db")
    advertised = {
        "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "3",
        "SAGEMAKER_BATCH_STRATEGY": "SINGLE_RECORD",
        "SAGEMAKER_MAX_PAYLOAD_IN_MB": "2",
    }
    register_echo(store, "advertiser", **advertised)
    calls = tmp_path / "calls.jsonl"
    request = transform_request(
        "exec-params",
        write_files(tmp_path / "in", {"a.txt": "x\ny\nz\n"}),
        f"{tmp_path}/out/",
        model="advertiser",
        Environment={"ECHO_LOG": str(calls)},
        **request_fields,
    )

    record = run_job(store, request)

    assert record.status is JobStatus.COMPLETED, record.failure_reason
    assert f"[sagemaker logs]: {log_line}" in job_log(store, "exec-params")
    assert [call["records"] for call in echo_calls(calls)] == records_per_call
    assert (tmp_path / "out/a.txt.out").read_text() == "echo:x\necho:y\necho:z\n"


@pytest.mark.slow
def test_invocation_timeout_is_retried_then_fails_the_file_naming_the_layer(
    store: JobStore, tmp_path: Path
) -> None:
    request = transform_request(
        "timeout",
        write_files(tmp_path / "in", {"a-fast.txt": "quick\n", "b-slow.txt": "one\nslow one\n"}),
        f"{tmp_path}/out/",
        ModelClientConfig={"InvocationsTimeoutInSeconds": 1, "InvocationsMaxRetries": 1},
        Environment={"ECHO_SLOW_S": "1.5"},
    )

    started = time.monotonic()
    record = run_job(store, request)

    assert time.monotonic() - started < 15
    assert record.status is JobStatus.FAILED
    assert tree(tmp_path / "out") == {"a-fast.txt.out": b"echo:quick\n"}
    reason = record.failure_reason
    assert "b-slow.txt" in reason
    assert "Unable to get response from algorithm" in reason
    assert "no response within 1 s (InvocationsTimeoutInSeconds)" in reason
    assert "after 2 attempts" in reason
    assert "lines 1-2" in reason


@pytest.mark.slow
def test_retries_only_what_can_succeed(store: JobStore, tmp_path: Path) -> None:
    calls = tmp_path / "calls.jsonl"
    state = tmp_path / "model-state"
    state.mkdir()
    files = {
        "a-flaky.txt": "flaky record\n",  # 500, 500, then 200
        "b-bad-request.txt": "badrequest\n",  # 400: the same payload fails the same way
        "c-poison.txt": "poison\n",  # 500 every time
        "d-good.txt": "good\n",
    }
    request = transform_request(
        "retries",
        write_files(tmp_path / "in", files),
        f"{tmp_path}/out/",
        ModelClientConfig={"InvocationsMaxRetries": 3},
        Environment={"ECHO_LOG": str(calls), "ECHO_STATE": str(state), "ECHO_FLAKY_FAILS": "2"},
    )

    record = run_job(store, request)

    sent = [call["body"] for call in echo_calls(calls)]
    assert sent.count("flaky record\n") == 3
    assert sent.count("badrequest\n") == 1
    assert sent.count("poison\n") == 4  # the first attempt and 3 retries
    assert tree(tmp_path / "out") == {
        "a-flaky.txt.out": b"echo:flaky record\n",
        "d-good.txt.out": b"echo:good\n",
    }
    errors = {f.input_key: f.error for f in store.files("retries", FileState.FAILED)}
    assert errors["b-bad-request.txt"].startswith("ClientError: 400: transform_fn raised ClientMistake")
    assert errors["c-poison.txt"].startswith(
        "Bad HTTP status received from algorithm: 500: transform_fn raised ValueError: poisoned record"
    )
    assert "(after 4 attempts)" in errors["c-poison.txt"]
    assert record.status is JobStatus.FAILED
    assert record.failure_reason.startswith(
        (tmp_path / "in/b-bad-request.txt").as_uri() + ": ClientError: 400"
    )
    assert "(1 more files failed)" in record.failure_reason
    log = job_log(store, "retries")
    assert "b-bad-request.txt: ClientError: 400" in log


@pytest.mark.parametrize(("strategy", "where"), [("MultiRecord", "lines 1-4"), ("SingleRecord", "line 3")])
def test_a_bad_record_fails_only_its_file(store: JobStore, tmp_path: Path, strategy: str, where: str) -> None:
    files = {"a.txt": "a1\na2\n", "b.txt": "b1\nb2\npoison b3\nb4\n", "c.txt": "c1\n"}
    request = transform_request(
        f"bad-record-{strategy.lower()}",
        write_files(tmp_path / "in", files),
        f"{tmp_path}/out/",
        BatchStrategy=strategy,
        ModelClientConfig=_no_retries(),
    )

    record = run_job_in_process(store, request)

    # No .out for the failed file (partial order cannot be kept); the others complete.
    assert tree(tmp_path / "out") == {"a.txt.out": b"echo:a1\necho:a2\n", "c.txt.out": b"echo:c1\n"}
    assert temp_files(tmp_path / "out") == []
    described = describe_job(store.get_job(record.name))
    assert described["TransformJobStatus"] == "Failed"
    reason = described["FailureReason"]
    assert reason.startswith((tmp_path / "in/b.txt").as_uri())
    assert f"({where})" in reason
    assert "Bad HTTP status received from algorithm: 500" in reason
    assert len(reason) <= 1024
    assert described["Batchlane"]["Progress"]["FilesDone"] == 2
    assert described["Batchlane"]["Progress"]["FilesFailed"] == 1


def test_error_row_mode_bisects_a_batch_and_writes_the_row_in_place(store: JobStore, tmp_path: Path) -> None:
    rows = [{"n": 1}, {"n": 2}, {"n": "poison"}, {"n": 4}, {"n": 5}]
    calls = tmp_path / "calls.jsonl"
    request = transform_request(
        "error-row",
        write_files(tmp_path / "in", {"rows.jsonl": "".join(json.dumps(r) + "\n" for r in rows)}),
        f"{tmp_path}/out/",
        content_type="application/jsonlines",
        accept="application/jsonlines",
        ModelClientConfig=_no_retries(),
        Environment={"ECHO_LOG": str(calls)},
    )

    record = run_job_in_process(store, request, {"on_record_error": "error-row"})

    assert record.status is JobStatus.COMPLETED, record.failure_reason
    lines = [json.loads(line) for line in (tmp_path / "out/rows.jsonl.out").read_text().splitlines()]
    assert [line.get("echo") for line in lines] == [rows[0], rows[1], None, rows[3], rows[4]]
    error = lines[2]["SageMakerError"]
    assert error["line"] == 3
    assert "Bad HTTP status received from algorithm: 500" in error["message"]
    # Bisection: 5 records fail → 2 succeed, 3 fail → the poison record alone fails, the last 2 succeed.
    assert [call["records"] for call in echo_calls(calls)] == [5, 2, 3, 1, 2]
    assert (record.records_done, record.records_failed) == (4, 1)
    assert "rows.jsonl: line 3 (record 2, offset" in job_log(store, "error-row")


def test_skip_mode_leaves_the_record_out(store: JobStore, tmp_path: Path) -> None:
    request = transform_request(
        "skip",
        write_files(tmp_path / "in", {"a.txt": "one\nbadrequest two\nthree\n"}),
        f"{tmp_path}/out/",
        ModelClientConfig=_no_retries(),
    )

    record = run_job_in_process(store, request, {"on_record_error": "skip"})

    assert record.status is JobStatus.COMPLETED, record.failure_reason
    assert (tmp_path / "out/a.txt.out").read_text() == "echo:one\necho:three\n"
    assert (record.records_done, record.records_failed) == (2, 1)


def test_max_error_ratio_fails_a_file_with_too_many_bad_records(store: JobStore, tmp_path: Path) -> None:
    request = transform_request(
        "error-ratio",
        write_files(tmp_path / "in", {"a.txt": "ok\npoison\nok\n", "b.txt": "poison\npoison\nok\n"}),
        f"{tmp_path}/out/",
        BatchStrategy="SingleRecord",
        ModelClientConfig=_no_retries(),
    )

    record = run_job_in_process(store, request, {"on_record_error": "error-row", "max_error_ratio": 0.5})

    assert record.status is JobStatus.FAILED
    assert (tmp_path / "out/a.txt.out").read_text().splitlines()[1].startswith("ERROR: line 2: ")
    assert not (tmp_path / "out/b.txt.out").exists()
    # The ratio is the file's: a.txt has 1 bad record of 3, b.txt 2 of 3.
    assert "b.txt: 2 of 3 records failed, more than max_error_ratio=0.5" in record.failure_reason


@pytest.mark.parametrize("record_count", ["lenient", "strict"])
def test_result_count_mismatch_warns_or_with_strict_fails_the_file(
    store: JobStore, tmp_path: Path, record_count: str
) -> None:
    request = transform_request(
        f"count-mismatch-{record_count}",
        write_files(tmp_path / "in", {"a.txt": "one\nhalf two\nthree\n"}),
        f"{tmp_path}/out/",
    )

    record = run_job_in_process(store, request, {"record_count": record_count})

    if record_count == "lenient":
        # As SageMaker: the response is written as returned; the mismatch is a warning.
        assert record.status is JobStatus.COMPLETED, record.failure_reason
        assert (tmp_path / "out/a.txt.out").read_text() == "echo:one\necho:half two\n"
        assert "model returned 2 results for 3 records (text/plain response)" in record.first_warning
        return
    assert record.status is JobStatus.FAILED
    assert "model returned 2 results for 3 records" in record.failure_reason
    assert "lines 1-3" in record.failure_reason
    assert not (tmp_path / "out/a.txt.out").exists()


@pytest.mark.parametrize(
    ("example", "deadline_s", "within_s", "reason"),
    [
        # model_fn waits for a file that is never written: /ping stays 503 until the deadline. On a loaded machine
        # the server may not even have opened its port by then: the reason names that last answer instead.
        ("slow_load", 2, 20, r"container failed health check within 2 s: last (status 503|ConnectError)"),
        # model_fn raises: the server exits at once, and the job says so without waiting for the deadline. The
        # reason proves the exit was seen before the deadline; the deadline is long, and the job must end well
        # within half of it, so that a loaded machine, slow to even start Python and import the server, still
        # shows the difference (10 minutes of deadline against seconds of start-up).
        ("broken_model_fn", 600, 300, r"model container exited with code 1 before becoming healthy"),
    ],
)
@pytest.mark.slow
def test_a_container_that_never_becomes_healthy_fails_the_job_quickly(
    store: JobStore, tmp_path: Path, example: str, deadline_s: int, within_s: int, reason: str
) -> None:
    model_dir = make_model_dir(example, ECHO_DIR, tmp_path / "model")
    ModelRegistry(store).create(ModelSpec(name="unhealthy", model_data=str(model_dir), environment=ECHO_ENV))
    request = transform_request(
        "unhealthy", write_files(tmp_path / "in", {"a.txt": "x\n"}), f"{tmp_path}/out/", model="unhealthy"
    )

    started = time.monotonic()
    record = run_job(store, request, {"startup_timeout_s": deadline_s})

    assert record.status is JobStatus.FAILED
    assert re.search(reason, record.failure_reason), record.failure_reason
    assert time.monotonic() - started < within_s
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_stop_mid_job_keeps_committed_files_and_ends_stopped(store: JobStore, tmp_path: Path) -> None:
    files = {f"part-{i}.txt": f"{i}a\n{i}b\n" for i in range(8)}
    request = transform_request(
        "stop-me",
        write_files(tmp_path / "in", files),
        f"{tmp_path}/out/",
        BatchStrategy="SingleRecord",
        Environment={"ECHO_BATCH_SLEEP_S": "0.2"},
    )
    asked: dict[str, float] = {}

    def stop_after_first_file() -> None:
        wait_until(lambda: (job := store.find_job("stop-me")) is not None and job.files_done >= 1, timeout=60)
        asked["at"] = time.monotonic()
        store.request_stop("stop-me")

    stopper = threading.Thread(target=stop_after_first_file)
    stopper.start()
    record = run_job(store, request)
    stopper.join()

    assert record.status is JobStatus.STOPPED
    assert time.monotonic() - asked["at"] < 5  # noticed within a heartbeat, not after the whole job
    done = [f.output_key for f in store.files("stop-me", FileState.DONE)]
    assert 1 <= len(done) < len(files)
    # Committed outputs are kept and complete; the file in progress left nothing behind.
    assert sorted(tree(tmp_path / "out")) == sorted(done)
    for key in done:
        number = key.split("-")[1].split(".")[0]
        assert (tmp_path / "out" / key).read_text() == f"echo:{number}a\necho:{number}b\n"
    assert temp_files(tmp_path / "out") == []
    assert "FailureReason" not in describe_job(record)
    # Stopping a finished job changes nothing.
    assert store.request_stop("stop-me").status is JobStatus.STOPPED


@pytest.mark.slow
def test_with_restarts_off_a_model_server_that_dies_mid_job_fails_the_job_at_once(
    store: JobStore, tmp_path: Path
) -> None:
    """``max_restarts=0``; with restarts (the default) see test_runner_recovery.py."""
    files = {"a.txt": "fine\n", "b.txt": "crash\n", "c.txt": "never sent\n", "d.txt": "never sent\n"}
    request = transform_request(
        "server-died",
        write_files(tmp_path / "in", files),
        f"{tmp_path}/out/",
        ModelClientConfig=_no_retries(),
    )

    record = run_job(store, request, {"max_restarts": 0})

    assert record.status is JobStatus.FAILED
    assert record.failure_reason.startswith("AlgorithmError: the model container exited with code 3")
    assert (tmp_path / "in/b.txt").as_uri() in record.failure_reason
    assert "restarts are off (max_restarts=0)" in record.failure_reason
    assert tree(tmp_path / "out") == {"a.txt.out": b"echo:fine\n"}
    errors = {f.input_key: f.error for f in store.files("server-died", FileState.FAILED)}
    assert errors["b.txt"].startswith("Unable to get response from algorithm")
    assert [f.input_key for f in store.files("server-died", FileState.PENDING)] == ["c.txt", "d.txt"]


def test_an_output_that_cannot_be_written_fails_its_file_only(store: JobStore, tmp_path: Path) -> None:
    """A storage error on one object (here a folder where its .out goes; a full disk looks the same) fails that
    file with the OS's reason; the other files complete and nothing half-written is left."""
    request = transform_request(
        "blocked-output", write_files(tmp_path / "in", {"a.txt": "x\n", "b.txt": "y\n"}), f"{tmp_path}/out/"
    )
    (tmp_path / "out/a.txt.out").mkdir(parents=True)

    record = run_job_in_process(store, request)

    assert record.status is JobStatus.FAILED
    assert "a.txt: Is a directory writing" in record.failure_reason
    assert "AlgorithmError" not in record.failure_reason
    assert (tmp_path / "out/b.txt.out").read_text() == "echo:y\n"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.txt.out", "b.txt.out"]  # no temp files
    assert not any((tmp_path / "out/a.txt.out").iterdir())
