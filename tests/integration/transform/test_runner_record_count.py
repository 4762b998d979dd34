"""Result counts and response types end to end, with the models loaded in the test's process (``run_job_in_process``): responses are read as their own
Content-Type (Accept unset is the SageMaker SDK's default), a response with another number of results than records
is written as returned with a warning (``record_count="lenient"``), and only strict mode or a feature that lines
results up with records (a join, error rows) fails on it, saying why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from batchlane.examples.user_code import make_model_dir
from batchlane.jobs.describe import describe_job
from batchlane.jobs.state import FileState, JobStatus
from batchlane.jobs.store import JobStore
from batchlane.models import ModelRegistry, ModelSpec
from tests.models import ECHO_DIR, ECHO_ENV, job_log, run_job_in_process, transform_request, write_files

# Each test starts a `batchlane serve` process or loads a real model: `make test-fast` skips them.

CSV_ROWS = "1,0.5,0.7\n2,0.1,0.2\n3,1.5,2\n"
THREE_LINES = {"a.txt": "one\ntwo\nthree\n"}


def _example_model(store: JobStore, tmp_path: Path, example: str) -> str:
    """Register user-code example ``example`` (``batchlane.examples.user_code``) as a model named after it."""
    model_dir = make_model_dir(example, ECHO_DIR, tmp_path / example)
    name = example.replace("_", "-")
    ModelRegistry(store).create(ModelSpec(name=name, model_data=str(model_dir), environment=ECHO_ENV))
    return name


def _example_request(
    store: JobStore, tmp_path: Path, example: str, name: str, files: dict[str, str], **fields: Any
) -> dict[str, Any]:
    """A request for user-code example ``example`` over ``files`` (written under tmp_path/in), out to tmp_path/out."""
    model = _example_model(store, tmp_path, example)
    inputs = write_files(tmp_path / "in", files)
    return transform_request(name, inputs, f"{tmp_path}/out/", model=model, **fields)


@pytest.mark.parametrize("record_count", ["lenient", "strict"])
def test_a_json_answer_to_a_csv_job_without_accept_completes(
    store: JobStore, tmp_path: Path, record_count: str
) -> None:
    """The AWS guide's request: ContentType text/csv, no Accept. The user's output_fn answers application/json (the
    container's default), one array element per row; read as JSON the counts agree, so even strict completes."""
    request = _example_request(
        store,
        tmp_path,
        "json_answers",
        f"no-accept-{record_count}",
        {"rows.csv": CSV_ROWS},
        content_type="text/csv",
        accept=None,
    )

    record = run_job_in_process(store, request, {"record_count": record_count})

    assert record.status is JobStatus.COMPLETED, record.failure_reason
    # As SageMaker: the response bytes, as returned, one body per mini-batch (AssembleWith=Line adds the newline).
    out = (tmp_path / "out/rows.csv.out").read_text()
    assert json.loads(out) == [["high", 1.2], ["low", 0.3], ["high", 3.5]]
    assert out.endswith("]\n") and out.count("\n") == 1
    assert record.warnings == 0 and "warning" not in job_log(store, record.name)


def test_a_csv_join_spreads_a_multi_column_result(store: JobStore, tmp_path: Path) -> None:
    request = _example_request(
        store,
        tmp_path,
        "json_answers",
        "csv-join",
        {"rows.csv": CSV_ROWS},
        content_type="text/csv",
        accept="text/csv",
        DataProcessing={"JoinSource": "Input", "OutputFilter": "$[0,-1]"},
    )

    record = run_job_in_process(store, request)

    assert record.status is JobStatus.COMPLETED, record.failure_reason
    # Each input row joined with its `label,score` line, then the ID and the last column kept.
    assert (tmp_path / "out/rows.csv.out").read_text() == "1,1.2\n2,0.3\n3,3.5\n"


def test_a_handler_answering_once_per_mini_batch_completes_with_one_warning_per_file(
    store: JobStore, tmp_path: Path
) -> None:
    # b.txt is about 2.6 MB: with MaxPayloadInMB=1 it goes in 3 mini-batches, each answered with one result.
    long_lines = "".join(f"{i:02d}" + "x" * 110_000 + "\n" for i in range(24))
    files = {"a.txt": "one\ntwo\nthree\n", "b.txt": long_lines}
    request = _example_request(
        store, tmp_path, "per_batch", "per-batch", files, content_type="text/plain", MaxPayloadInMB=1
    )

    record = run_job_in_process(store, request)

    assert record.status is JobStatus.COMPLETED, record.failure_reason
    assert (tmp_path / "out/a.txt.out").read_text() == '{"predictions": [3, 3, 5]}\n'
    b_out = [json.loads(line) for line in (tmp_path / "out/b.txt.out").read_text().splitlines()]
    assert [len(body["predictions"]) for body in b_out] == [9, 9, 6]
    assert (record.records_done, record.records_failed) == (27, 0)

    warnings = [line for line in job_log(store, record.name).splitlines() if "warning" in line]
    a_url, b_url = (tmp_path / "in/a.txt").as_uri(), (tmp_path / "in/b.txt").as_uri()
    assert len(warnings) == 2, warnings  # once per file, not once per mini-batch
    assert (
        f"[batchlane]: warning: {a_url}: model returned 1 result for 3 records (application/json response) in the "
        "mini-batch of lines 1-3; the output holds the responses as returned" in warnings[0]
    )
    assert f"{b_url}: model returned 1 result for 9 records" in warnings[1]
    assert "lines 1-9 (3 mini-batches of this file differ)" in warnings[1]

    extras = describe_job(store.get_job(record.name))["Batchlane"]
    assert extras["Warnings"] == {
        "Count": 4,
        "First": f"{a_url}: model returned 1 result for 3 records (application/json response) in the mini-batch "
        "of lines 1-3",
    }
    assert [f.warnings for f in store.files(record.name)] == [1, 3]


def test_strict_record_count_fails_the_file_naming_both_counts(store: JobStore, tmp_path: Path) -> None:
    request = _example_request(
        store, tmp_path, "per_batch", "per-batch-strict", THREE_LINES, content_type="text/plain"
    )

    record = run_job_in_process(store, request, {"record_count": "strict"})

    assert record.status is JobStatus.FAILED
    assert "\n" not in record.failure_reason
    assert (
        "a.txt: model returned 1 result for 3 records (application/json response) in the mini-batch of lines 1-3; "
        "record_count=strict needs one result per record (lines 1-3)" in record.failure_reason
    )
    assert not (tmp_path / "out/a.txt.out").exists()


@pytest.mark.parametrize(
    ("data_processing", "options", "reason"),
    [
        ({"JoinSource": "Input"}, {}, "JoinSource=Input needs one result per record"),
        ({"OutputFilter": "$.predictions"}, {}, "OutputFilter $.predictions needs one result per record"),
        ({}, {"consolidate": "all.jsonl"}, "consolidate needs one result per record"),
    ],
    ids=["join", "output-filter", "consolidate"],
)
def test_a_feature_that_lines_results_up_fails_on_a_count_mismatch_saying_why(
    store: JobStore, tmp_path: Path, data_processing: dict, options: dict, reason: str
) -> None:
    options = {
        key: str(tmp_path / value) for key, value in options.items()
    }  # consolidate: a file under tmp_path
    request = _example_request(
        store,
        tmp_path,
        "per_batch",
        "per-batch-aligned",
        {"a.jsonl": '{"t":"one"}\n{"t":"two"}\n{"t":"three"}\n'},
        content_type="application/jsonlines",
        accept="application/jsonlines",
        DataProcessing=data_processing,
    )

    record = run_job_in_process(store, request, options)

    assert record.status is JobStatus.FAILED
    # The response is read as what it says it is (application/json), not as the Accept that was asked for.
    assert (
        f"model returned 1 result for 3 records (application/json response) in the mini-batch of lines 1-3; {reason}"
        in record.failure_reason
    )


def test_error_rows_isolate_the_records_of_a_mismatched_mini_batch(store: JobStore, tmp_path: Path) -> None:
    """Error rows need one result per record: the mini-batch is bisected down to single records, which the
    per-batch handler answers one each, so every line of the output belongs to its record."""
    request = _example_request(
        store, tmp_path, "per_batch", "per-batch-error-rows", THREE_LINES, content_type="text/plain"
    )

    record = run_job_in_process(store, request, {"on_record_error": "error-row"})

    assert record.status is JobStatus.COMPLETED, record.failure_reason
    assert (tmp_path / "out/a.txt.out").read_text().splitlines() == [
        '{"predictions": [3]}',
        '{"predictions": [3]}',
        '{"predictions": [5]}',
    ]
    assert record.warnings == 0


def test_a_csv_header_is_named_in_the_error_and_the_warning(store: JobStore, tmp_path: Path) -> None:
    """The echo model gives a header row no result (as a header-reading CSV decoder would): 2 results for 3
    records. Lenient: a warning with the hint; with a join: a failure with the hint."""
    inputs = write_files(tmp_path / "in", {"rows.csv": "id,text\n1,a\n2,b\n"})
    lenient = run_job_in_process(
        store,
        transform_request(
            "header-lenient", inputs, f"{tmp_path}/out1/", content_type="text/csv", accept="text/csv"
        ),
    )
    joined = run_job_in_process(
        store,
        transform_request(
            "header-join",
            inputs,
            f"{tmp_path}/out2/",
            content_type="text/csv",
            accept="text/csv",
            DataProcessing={"JoinSource": "Input"},
        ),
    )

    hint = "line 1 looks like a CSV header; pass --csv-header skip"
    assert lenient.status is JobStatus.COMPLETED, lenient.failure_reason
    assert lenient.first_warning.endswith(
        f"model returned 2 results for 3 records (text/csv response) in the mini-batch of lines 1-3; {hint}"
    )
    assert joined.status is JobStatus.FAILED
    assert (
        hint in joined.failure_reason
        and "JoinSource=Input needs one result per record" in joined.failure_reason
    )
    assert store.files("header-join")[0].state is FileState.FAILED


def test_no_header_hint_for_a_csv_without_one(store: JobStore, tmp_path: Path) -> None:
    request = _example_request(
        store, tmp_path, "per_batch", "plain-rows", {"rows.csv": "1,a\n2,b\n3,c\n"}, content_type="text/csv"
    )

    record = run_job_in_process(store, request, {"record_count": "strict"})

    assert record.status is JobStatus.FAILED
    assert "model returned 1 result for 3 records" in record.failure_reason
    assert "looks like a CSV header" not in record.failure_reason


@pytest.mark.parametrize(
    ("output_filter", "header"),
    [("$", "id,f1,f2,SageMakerOutput_1,SageMakerOutput_2"), ("$[0,-1]", "id,SageMakerOutput_2")],
)
def test_csv_header_skip_with_a_join_lines_the_header_up_with_the_columns(
    store: JobStore, tmp_path: Path, output_filter: str, header: str
) -> None:
    """A model answering two columns per row (``[label, score]``): the header names both, then the filter applies."""
    request = _example_request(
        store,
        tmp_path,
        "json_answers",
        "header-skip-join",
        {"rows.csv": "id,f1,f2\n1,0.5,0.7\n2,0.1,0.2\n"},
        content_type="text/csv",
        accept="text/csv",
        DataProcessing={"JoinSource": "Input", "OutputFilter": output_filter},
    )

    record = run_job_in_process(store, request, {"csv_header": "skip"})

    assert record.status is JobStatus.COMPLETED, record.failure_reason
    lines = (tmp_path / "out/rows.csv.out").read_text().splitlines()
    assert lines[0] == header
    assert len(lines) == 3
    assert all(len(line.split(",")) == len(header.split(",")) for line in lines)
