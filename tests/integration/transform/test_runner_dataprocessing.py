"""DataProcessing end to end (docs/transform.md): InputFilter, JoinSource=Input and OutputFilter applied per record by
the runner around the echo model, loaded in the test's process (``run_job_in_process``: the data is the subject,
not the server; test_runner_in_process.py shows both invokers give the same bytes). The echo model reports exactly
what it was sent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchlane.jobs.state import JobStatus
from batchlane.jobs.store import JobStore
from tests.models import echo_calls, run_job_in_process, transform_request

# Each test starts a `batchlane serve` process or loads a real model: `make test-fast` skips them.

# id, then two features; the last row has a quoted field holding a comma (RFC 4180).
CSV_ROWS = '1,0.5,0.7\n2,0.1,0.2\n3,"x,y",0.9\n'


@pytest.mark.parametrize(
    ("data_processing", "sent", "expected"),
    [
        # InputFilter "$", JoinSource "None", OutputFilter "$": the default output.
        (
            {"InputFilter": "$", "JoinSource": "None", "OutputFilter": "$"},
            CSV_ROWS,
            '1|0.5|0.7\n2|0.1|0.2\n"3|x,y|0.9"\n',
        ),
        # JoinSource "Input": every input column followed by the prediction.
        (
            {"JoinSource": "Input"},
            CSV_ROWS,
            '1,0.5,0.7,1|0.5|0.7\n2,0.1,0.2,2|0.1|0.2\n3,"x,y",0.9,"3|x,y|0.9"\n',
        ),
        # InputFilter "$[1:]": the ID column is not sent, but the join keeps every input column.
        (
            {"InputFilter": "$[1:]", "JoinSource": "Input"},
            '0.5,0.7\n0.1,0.2\n"x,y",0.9\n',
            '1,0.5,0.7,0.5|0.7\n2,0.1,0.2,0.1|0.2\n3,"x,y",0.9,"x,y|0.9"\n',
        ),
        # ... and OutputFilter "$[0,-1]": the ID and the prediction only.
        (
            {"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"},
            '0.5,0.7\n0.1,0.2\n"x,y",0.9\n',
            '1,0.5|0.7\n2,0.1|0.2\n3,"x,y|0.9"\n',
        ),
    ],
    ids=["default", "join", "drop-id-join", "id-and-prediction"],
)
def test_csv_examples_of_the_developer_guide(
    store: JobStore, tmp_path: Path, data_processing: dict[str, str], sent: str, expected: str
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in/rows.csv").write_text(CSV_ROWS)
    calls = tmp_path / "calls.jsonl"
    request = transform_request(
        "csv-dp",
        f"{tmp_path}/in/",
        f"{tmp_path}/out/",
        content_type="text/csv",
        accept="text/csv",
        assemble_with="Line",
        DataProcessing=data_processing,
        Environment={"ECHO_LOG": str(calls)},
    )

    record = run_job_in_process(store, request)

    assert record.status is JobStatus.COMPLETED, record.failure_reason
    # MultiRecord: the filtered rows travel in one payload; the response is split back per record.
    assert [call["body"] for call in echo_calls(calls)] == [sent]
    assert (tmp_path / "out/rows.csv.out").read_text() == expected


def test_inclusive_slice_end(store: JobStore, tmp_path: Path) -> None:
    """docs/transform.md: ``$[1:4]`` over a,b,c,d,e,f selects b,c,d,e (the developer guide's inclusive reading)."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in/letters.csv").write_text("a,b,c,d,e,f\n")
    calls = tmp_path / "calls.jsonl"
    request = transform_request(
        "slice",
        f"{tmp_path}/in/",
        f"{tmp_path}/out/",
        content_type="text/csv",
        DataProcessing={"InputFilter": "$[1:4]"},
        Environment={"ECHO_LOG": str(calls)},
    )

    record = run_job_in_process(store, request)

    assert record.status is JobStatus.COMPLETED, record.failure_reason
    assert [call["body"] for call in echo_calls(calls)] == ["b,c,d,e\n"]


def test_json_lines_join_adds_sagemaker_output(store: JobStore, tmp_path: Path) -> None:
    records = [
        {"id": 1, "text": "card charged twice"},
        {"id": 2, "text": "hello", "SageMakerOutput": "old"},
        [7, 8],
    ]
    (tmp_path / "in").mkdir()
    (tmp_path / "in/records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    request = transform_request(
        "jsonl-join",
        f"{tmp_path}/in/",
        f"{tmp_path}/out/",
        content_type="application/jsonlines",
        accept="application/jsonlines",
        DataProcessing={"JoinSource": "Input"},
    )

    record = run_job_in_process(store, request)

    assert record.status is JobStatus.COMPLETED, record.failure_reason
    lines = [json.loads(line) for line in (tmp_path / "out/records.jsonl.out").read_text().splitlines()]
    assert lines == [
        {"id": 1, "text": "card charged twice", "SageMakerOutput": {"echo": records[0]}},
        # SageMakerOutput is reserved: an input field of that name is overwritten.
        {"id": 2, "text": "hello", "SageMakerOutput": {"echo": records[1]}},
        # A non-object input is wrapped.
        {"SageMakerInput": [7, 8], "SageMakerOutput": {"echo": [7, 8]}},
    ]


def test_json_filters_and_join_split_a_json_array_response(store: JobStore, tmp_path: Path) -> None:
    records = [{"id": "a", "text": "one"}, {"id": "b", "text": "two"}]
    (tmp_path / "in").mkdir()
    (tmp_path / "in/records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    calls = tmp_path / "calls.jsonl"
    request = transform_request(
        "json-filters",
        f"{tmp_path}/in/",
        f"{tmp_path}/out/",
        content_type="application/json",
        accept="application/json",
        assemble_with="Line",
        DataProcessing={
            "InputFilter": "$.text",
            "JoinSource": "Input",
            "OutputFilter": "$['id','SageMakerOutput']",
        },
        Environment={"ECHO_LOG": str(calls)},
    )

    record = run_job_in_process(store, request)

    assert record.status is JobStatus.COMPLETED, record.failure_reason
    # Only the text is sent (one JSON value per line); the model answers one JSON array for the mini-batch.
    assert [call["body"] for call in echo_calls(calls)] == ['"one"\n"two"\n']
    assert (tmp_path / "out/records.jsonl.out").read_text() == (
        '{"id":"a","SageMakerOutput":{"echo":"one"}}\n{"id":"b","SageMakerOutput":{"echo":"two"}}\n'
    )


@pytest.mark.parametrize("on_record_error", ["fail", "error-row"])
def test_an_input_filter_that_does_not_fit_a_record(
    store: JobStore, tmp_path: Path, on_record_error: str
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in/rows.csv").write_text("1,a,x\n2,b\n3,c,z\n")
    request = transform_request(
        f"filter-{on_record_error}",
        f"{tmp_path}/in/",
        f"{tmp_path}/out/",
        content_type="text/csv",
        accept="text/csv",
        DataProcessing={"InputFilter": "$[2]"},
    )

    record = run_job_in_process(store, request, {"on_record_error": on_record_error})

    if on_record_error == "fail":
        assert record.status is JobStatus.FAILED
        assert "InputFilter $[2]: line 2 (record 1, offset 6)" in record.failure_reason
        assert not (tmp_path / "out/rows.csv.out").exists()
    else:
        assert record.status is JobStatus.COMPLETED, record.failure_reason
        out = (tmp_path / "out/rows.csv.out").read_text().splitlines()
        assert out[0] == "x" and out[2] == "z"
        assert out[1].startswith('ERROR,"line 2: InputFilter $[2]: line 2')
        assert (record.records_done, record.records_failed) == (2, 1)
