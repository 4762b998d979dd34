"""Whole transform jobs through the in-process invoker (``JobRunner(invoker="in_process")``): the model's handler
runs in the test's own process, no `batchlane serve`, and a job gives the same bytes, counts and failure reasons as
the same job over HTTP."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from batchlane.examples.user_code import make_model_dir
from batchlane.jobs.state import JobStatus
from batchlane.jobs.store import JobStore
from batchlane.models import ModelRegistry, ModelSpec
from tests.models import ECHO_DIR, ECHO_ENV, register_echo, run_job, transform_request, tree, write_files

CSV_ROWS = 'id,a,b\n1,0.5,0.7\n2,badrequest,0.2\n3,"x,y",0.9\n4,poison,1\n'


def _lines_job(root: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Text lines in sub-folders, a record the model refuses (400) and one it fails on (500), error rows, and
    consolidated results."""
    source = write_files(
        root / "in",
        {"a.txt": "one\ntwo\n", "sub/b.txt": "x\npoison\ny\nbadrequest\n", "sub/deeper/c.txt": "\nlast"},
    )
    request = transform_request(
        "lines", source, f"{root}/out/", ModelClientConfig={"InvocationsMaxRetries": 0}
    )
    return request, {"on_record_error": "error-row", "consolidate": str(root / "all.jsonl")}


def _csv_job(root: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A CSV join with both filters, the header line skipped, bad records left out, one record per request."""
    source = write_files(root / "in", {"rows.csv": CSV_ROWS, "more/rows2.csv": "id,a,b\n9,8,7\n"})
    request = transform_request(
        "csv",
        source,
        f"{root}/out/",
        content_type="text/csv",
        accept="text/csv",
        BatchStrategy="SingleRecord",
        MaxConcurrentTransforms=2,
        DataProcessing={"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"},
        ModelClientConfig={"InvocationsMaxRetries": 0},
    )
    return request, {"on_record_error": "skip", "csv_header": "skip"}


def _gzip_job(root: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Gzip JSON Lines, a corrupt object that fails alone, and an object whose answer is over the container's
    response limit (a 413 from the model)."""
    folder = root / "in"
    folder.mkdir(parents=True)
    (folder / "good.jsonl.gz").write_bytes(gzip.compress(b'{"t": 1}\n{"t": [2, 3]}\n'))
    (folder / "corrupt.jsonl.gz").write_bytes(b"not gzip at all")
    (folder / "big.jsonl.gz").write_bytes(gzip.compress(b'{"t": "' + b"z" * (1 << 20) + b'"}\n'))
    request = transform_request(
        "gzipped",
        f"{folder}/",
        f"{root}/out/",
        content_type="application/jsonlines",
        accept="application/jsonlines",
        compression="Gzip",
        MaxPayloadInMB=2,
        Environment={"BATCHLANE_MAX_RESPONSE_MB": "1"},
        ModelClientConfig={"InvocationsMaxRetries": 0},
    )
    return request, {}


def _outcome(
    store: JobStore, root: Path, request: dict[str, Any], options: dict[str, Any], invoker: str
) -> dict:
    record = run_job(store, request, options, invoker=invoker)
    files = {f.input_key: (f.state, f.records, f.records_failed, f.error) for f in store.files(record.name)}
    consolidated = root / "all.jsonl"
    return {
        "status": record.status,
        "reason": record.failure_reason,
        "counts": (record.records_done, record.records_failed, record.files_done, record.files_failed),
        "warnings": (record.warnings, record.first_warning),
        "files": files,
        "outputs": tree(root / "out") if (root / "out").exists() else {},
        "consolidated": consolidated.read_bytes() if consolidated.exists() else None,
    }


@pytest.mark.parametrize("job", [_lines_job, _csv_job, _gzip_job], ids=["lines", "csv-join", "gzip-limits"])
def test_a_job_gives_the_same_bytes_counts_and_errors_in_process_as_over_http(
    tmp_path: Path, job: Any
) -> None:
    results = {}
    for invoker in ("http", "in_process"):
        # The same paths for both runs, so failure reasons naming files compare as they are.
        root = tmp_path / "job"
        store = JobStore(tmp_path / f"{invoker}.db")
        register_echo(store)
        request, options = job(root)
        results[invoker] = _outcome(store, root, request, options, invoker)
        store.close()
        shutil.rmtree(root)

    assert results["in_process"] == results["http"]
    assert results["http"]["outputs"], "the job wrote nothing to compare"


def test_the_lines_job_in_process_starts_no_process(
    store: JobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"a process was started: {args[0] if args else kwargs}")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    request, options = _lines_job(tmp_path)

    record = run_job(store, request, options, invoker="in_process")

    assert record.status is JobStatus.COMPLETED, record.failure_reason
    assert (tmp_path / "out/a.txt.out").read_bytes() == b"echo:one\necho:two\n"
    assert (tmp_path / "out/sub/b.txt.out").read_bytes() == (
        b"echo:x\n"
        b"ERROR: line 2: Bad HTTP status received from algorithm: 500: transform_fn raised ValueError: "
        b"poisoned record\n"
        b"echo:y\n"
        b"ERROR: line 4: ClientError: 400: transform_fn raised ClientMistake: bad request: a record says "
        b"badrequest\n"
    )
    assert (record.records_done, record.records_failed) == (6, 2)


@pytest.mark.parametrize(
    ("example", "deadline_s", "reason"),
    [
        ("slow_load", 1, "the model did not load within 1 s"),
        ("broken_model_fn", 600, "the model failed to load: model_fn raised"),
    ],
)
def test_a_model_that_does_not_load_in_process_fails_the_job(
    store: JobStore, tmp_path: Path, example: str, deadline_s: int, reason: str
) -> None:
    model_dir = make_model_dir(example, ECHO_DIR, tmp_path / "model")
    ModelRegistry(store).create(ModelSpec(name="unloadable", model_data=str(model_dir), environment=ECHO_ENV))
    request = transform_request(
        "unloadable", write_files(tmp_path / "in", {"a.txt": "x\n"}), f"{tmp_path}/out/", model="unloadable"
    )

    started = time.monotonic()
    record = run_job(store, request, {"startup_timeout_s": deadline_s}, invoker="in_process")

    assert time.monotonic() - started < max(30, deadline_s / 2)
    assert record.status is JobStatus.FAILED
    assert reason in record.failure_reason
    assert not (tmp_path / "out").exists()


def test_a_model_served_by_url_cannot_run_in_process(store: JobStore, tmp_path: Path) -> None:
    ModelRegistry(store).create(ModelSpec(name="remote", serve_url="http://127.0.0.1:9"))
    request = transform_request(
        "remote", write_files(tmp_path / "in", {"a.txt": "x\n"}), f"{tmp_path}/out/", model="remote"
    )

    record = run_job(store, request, invoker="in_process")

    assert record.status is JobStatus.FAILED
    assert "model remote has no model_data" in record.failure_reason


def test_a_hung_request_in_process_fails_at_the_timeout_and_the_job_still_ends(
    store: JobStore, tmp_path: Path
) -> None:
    source = write_files(tmp_path / "in", {"a-hangs.txt": "slow\n", "b-after.txt": "fine\n"})
    request = transform_request(
        "hung",
        source,
        f"{tmp_path}/out/",
        Environment={"ECHO_SLOW_S": "30"},
        ModelClientConfig={"InvocationsTimeoutInSeconds": 1, "InvocationsMaxRetries": 0},
    )

    started = time.monotonic()
    record = run_job(store, request, invoker="in_process")

    # The job is not held up by the request still sleeping in its thread. Nothing restarts an in-process model,
    # and user handlers run one at a time, so the next file waits behind the hung one and times out too
    # (over HTTP the server would be restarted: test_runner_recovery.py).
    assert time.monotonic() - started < 20
    assert record.status is JobStatus.FAILED
    timeout = "Unable to get response from algorithm: no response within 1 s (InvocationsTimeoutInSeconds)"
    assert f"a-hangs.txt: {timeout}" in record.failure_reason
    assert {f.input_key: f.error for f in store.files("hung")} == {
        "a-hangs.txt": f"{timeout} (line 1)",
        "b-after.txt": f"{timeout} (line 1)",
    }
    assert record.restarts == 0
    assert tree(tmp_path / "out") == {}  # no output, and no temp file left behind
