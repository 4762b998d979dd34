"""JobOptions.source_headers (docs/transform.md): each request names its input object and first record, so the
container can tell what it is processing; off by default, as SageMaker sends no such headers. The wire encoding is checked over HTTP; the rest with the
model loaded in the test's process (``run_job_in_process``)."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import pytest

from batchlane.jobs.state import JobStatus
from batchlane.jobs.store import JobStore
from tests.models import echo_calls, run_job, run_job_in_process, transform_request

# Each test starts a `batchlane serve` process or loads a real model: `make test-fast` skips them.


def _inputs(tmp_path: Path) -> None:
    (tmp_path / "in/sub").mkdir(parents=True)
    (tmp_path / "in/a.txt").write_text("a0\na1\na2\n")
    (tmp_path / "in/sub/dé jà.txt").write_text("b0\nb1\n")


@pytest.mark.slow
def test_single_record_requests_name_their_object_and_record(store: JobStore, tmp_path: Path) -> None:
    _inputs(tmp_path)
    calls = tmp_path / "calls.jsonl"
    request = transform_request(
        "headers-single",
        f"{tmp_path}/in/",
        f"{tmp_path}/out/",
        BatchStrategy="SingleRecord",
        Environment={"ECHO_LOG": str(calls)},
    )

    record = run_job(store, request, {"source_headers": True})

    assert record.status is JobStatus.COMPLETED, record.failure_reason
    seen = sorted(
        (urllib.parse.unquote(c["source"][0]), int(c["source"][1]), int(c["source"][2]), c["body"])
        for c in echo_calls(calls)
    )
    # SingleRecord keeps each line's terminator in the body, as SageMaker does.
    assert seen == [
        ("a.txt", 0, 1, "a0\n"),
        ("a.txt", 1, 1, "a1\n"),
        ("a.txt", 2, 1, "a2\n"),
        ("sub/dé jà.txt", 0, 1, "b0\n"),
        ("sub/dé jà.txt", 1, 1, "b1\n"),
    ]
    # Header values are ASCII: the key travels percent-encoded.
    assert {c["source"][0] for c in echo_calls(calls)} == {"a.txt", "sub/d%C3%A9%20j%C3%A0.txt"}
    assert (tmp_path / "out/sub/dé jà.txt.out").read_text() == "echo:b0\necho:b1\n"


def test_multi_record_payloads_carry_the_first_index_and_count(store: JobStore, tmp_path: Path) -> None:
    _inputs(tmp_path)
    calls = tmp_path / "calls.jsonl"
    request = transform_request(
        "headers-multi", f"{tmp_path}/in/", f"{tmp_path}/out/", Environment={"ECHO_LOG": str(calls)}
    )

    record = run_job_in_process(store, request, {"source_headers": True})

    assert record.status is JobStatus.COMPLETED, record.failure_reason
    assert sorted(tuple(c["source"]) for c in echo_calls(calls)) == [
        ("a.txt", "0", "3"),
        ("sub/d%C3%A9%20j%C3%A0.txt", "0", "2"),
    ]


def test_off_by_default(store: JobStore, tmp_path: Path) -> None:
    _inputs(tmp_path)
    calls = tmp_path / "calls.jsonl"
    request = transform_request(
        "headers-off", f"{tmp_path}/in/", f"{tmp_path}/out/", Environment={"ECHO_LOG": str(calls)}
    )

    record = run_job_in_process(store, request)

    assert record.status is JobStatus.COMPLETED, record.failure_reason
    assert [c["source"] for c in echo_calls(calls)] == [[None, None, None]] * 2
