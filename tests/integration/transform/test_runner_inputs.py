"""The transform runner end to end over local folders: the echo model loaded in the test's process
(``run_job_in_process``), or a real `batchlane serve` started by the runner where the wire matters (chunked
transfer), and a real SQLite job store. Inputs: several files and sub-folders, every split type, payload limits, gzip,
manifests and the CSV header option."""

from __future__ import annotations

import gzip
import json
import re
from datetime import datetime
from pathlib import Path

import pytest

from batchlane.errors import ValidationError
from batchlane.jobs.describe import describe_job
from batchlane.jobs.state import FileState, JobStatus
from batchlane.jobs.store import JobStore
from batchlane.transform.split import frame
from tests.models import echo_calls, job_log, run_job, run_job_in_process, temp_files, transform_request, tree

# Each test starts a `batchlane serve` process or loads a real model: `make test-fast` skips them.

ARN = re.compile(r"arn:aws[a-z\-]*:sagemaker:[a-z0-9-]+:\d{12}:transform-job/(?P<name>[a-z0-9-]+)")


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def test_multi_file_job_with_sub_folders(store: JobStore, tmp_path: Path) -> None:
    lines = [f"record {i}" for i in range(20)]
    _write(tmp_path / "in/a.txt", "".join(f"{line}\n" for line in lines))
    _write(tmp_path / "in/sub/b.txt", "b1\r\nb2\n")
    _write(tmp_path / "in/sub/deeper/c.txt", "no final newline")
    _write(tmp_path / "in/empty.txt", "")
    _write(tmp_path / "in-sibling/x.txt", "not under the prefix folder\n")
    calls = tmp_path / "calls.jsonl"
    request = transform_request(
        "multi-file",
        str(tmp_path / "in") + "/",
        str(tmp_path / "out"),
        BatchStrategy="SingleRecord",
        MaxConcurrentTransforms=4,
        Environment={"ECHO_LOG": str(calls)},
    )

    record = run_job_in_process(store, request)

    assert record.status is JobStatus.COMPLETED, record.failure_reason
    assert tree(tmp_path / "out") == {
        "a.txt.out": "".join(f"echo:{line}\n" for line in lines).encode(),
        "empty.txt.out": b"",
        "sub/b.txt.out": b"echo:b1\necho:b2\n",
        "sub/deeper/c.txt.out": b"echo:no final newline\n",
    }
    # SingleRecord: one record per request, four requests in flight, results reassembled in input order.
    assert all(call["records"] == 1 for call in echo_calls(calls))
    assert len(echo_calls(calls)) == 23

    described = describe_job(store.get_job("multi-file"))
    assert described["TransformJobStatus"] == "Completed"
    assert "FailureReason" not in described
    assert ARN.fullmatch(described["TransformJobArn"])["name"] == "multi-file"
    assert described["ModelName"] == "echo"
    assert described["TransformInput"] == request["TransformInput"]
    assert described["TransformResources"] == request["TransformResources"]
    assert described["BatchStrategy"] == "SingleRecord"
    assert isinstance(described["CreationTime"], datetime)
    assert described["CreationTime"] <= described["TransformStartTime"] <= described["TransformEndTime"]
    assert described["Batchlane"]["Progress"] == {
        "FilesTotal": 4,
        "FilesDone": 4,
        "FilesFailed": 0,
        "RecordsDone": 23,
        "RecordsFailed": 0,
        "BytesTotal": record.bytes_total,
        "BytesDone": record.bytes_total,
    }
    assert record.bytes_total == sum(p.stat().st_size for p in (tmp_path / "in").rglob("*") if p.is_file())
    log = job_log(store, "multi-file")
    assert "[sagemaker logs]: MaxConcurrentTransforms=4, MaxPayloadInMB=6, BatchStrategy=SINGLE_RECORD" in log
    assert "[batchlane]: job Completed" in log


def _recordio_file(records: list[bytes], split_type: str) -> bytes:
    return b"".join(frame(record, split_type) for record in records)


@pytest.mark.parametrize(
    ("split_type", "strategy", "content_type", "expected_calls", "expected_out"),
    [
        ("None", "MultiRecord", "text/plain", [2], b"echo:r0\necho:r1 two\n"),
        ("Line", "MultiRecord", "text/plain", [2], b"echo:r0\necho:r1 two\n"),
        ("Line", "SingleRecord", "text/plain", [1, 1], b"echo:r0\necho:r1 two\n"),
        ("RecordIO", "SingleRecord", "application/x-recordio", [1, 1], b"bare:r0\nbare:r1 two\n"),
        ("RecordIO", "MultiRecord", "application/x-recordio", [2], b"framed:r0\nframed:r1 two\n"),
        ("TFRecord", "SingleRecord", "application/x-tfrecord", [1, 1], b"bare:r0\nbare:r1 two\n"),
        ("TFRecord", "MultiRecord", "application/x-tfrecord", [2], b"framed:r0\nframed:r1 two\n"),
    ],
)
def test_split_types(
    store: JobStore,
    tmp_path: Path,
    split_type: str,
    strategy: str,
    content_type: str,
    expected_calls: list[int],
    expected_out: bytes,
) -> None:
    records = [b"r0", b"r1 two"]
    framed = split_type in ("RecordIO", "TFRecord")
    body = _recordio_file(records, split_type) if framed else b"r0\nr1 two\n"
    _write(tmp_path / "in/data.bin", body)
    calls = tmp_path / "calls.jsonl"
    request = transform_request(
        f"split-{split_type.lower()}-{strategy.lower()}",
        str(tmp_path / "in/data"),
        f"{tmp_path}/out/",
        content_type=content_type,
        split_type=split_type,
        BatchStrategy=strategy,
        Environment={"ECHO_LOG": str(calls)},
    )

    record = run_job_in_process(store, request)

    assert record.status is JobStatus.COMPLETED, record.failure_reason
    assert (tmp_path / "out/data.bin.out").read_bytes() == expected_out
    sent = echo_calls(calls)
    assert [call["records"] for call in sent] == expected_calls
    if split_type == "None":
        assert sent[0]["body"] == body.decode()  # the whole object is one payload, bytes unchanged
    if framed and strategy == "MultiRecord":
        assert sent[0]["bytes"] == len(body)  # the framing travels with the records
    assert record.records_done == (1 if split_type == "None" else 2)


def test_payload_limit_packs_records_and_fails_an_oversized_record(store: JobStore, tmp_path: Path) -> None:
    mib = 1 << 20
    record_size = 300_000
    _write(tmp_path / "in/a-packed.txt", "".join(f"{i}" + "x" * (record_size - 1) + "\n" for i in range(7)))
    _write(tmp_path / "in/b-oversized.txt", "small\n" + "y" * (mib + 10) + "\nsmall again\n")
    _write(tmp_path / "in/c-after.txt", "fine\n")
    calls = tmp_path / "calls.jsonl"
    request = transform_request(
        "payload-limit",
        f"{tmp_path}/in/",
        f"{tmp_path}/out/",
        MaxPayloadInMB=1,
        BatchStrategy="MultiRecord",
        MaxConcurrentTransforms=1,
        Environment={"ECHO_LOG": str(calls)},
    )

    record = run_job_in_process(store, request)

    # Whole records up to 1 MiB per payload: 3 + 3 + 1 records of 300,001 bytes each.
    packed = [call for call in echo_calls(calls) if call["bytes"] > 100_000]
    assert [call["records"] for call in packed] == [3, 3, 1]
    assert all(call["bytes"] <= mib for call in packed)
    assert (tmp_path / "out/a-packed.txt.out").read_bytes().count(b"\n") == 7
    assert (tmp_path / "out/c-after.txt.out").read_bytes() == b"echo:fine\n"
    assert not (tmp_path / "out/b-oversized.txt.out").exists()
    assert record.status is JobStatus.FAILED
    assert "b-oversized.txt" in record.failure_reason
    assert "line 2" in record.failure_reason
    assert "MaxPayloadInMB" in record.failure_reason
    assert [f.input_key for f in store.files("payload-limit", FileState.FAILED)] == ["b-oversized.txt"]
    assert temp_files(tmp_path / "out") == []


@pytest.mark.slow
def test_payload_limit_zero_streams_one_unbounded_chunked_payload(store: JobStore, tmp_path: Path) -> None:
    line = "z" * (1 << 20)
    _write(
        tmp_path / "in/big.txt", "".join(f"{i}{line}\n" for i in range(7))
    )  # over 7 MiB: above the default 6
    calls = tmp_path / "calls.jsonl"
    request = transform_request(
        "payload-zero",
        str(tmp_path / "in/big.txt"),
        str(tmp_path / "out"),
        MaxPayloadInMB=0,
        BatchStrategy="MultiRecord",
        Environment={"ECHO_LOG": str(calls)},
    )

    record = run_job(store, request)

    assert record.status is JobStatus.COMPLETED, record.failure_reason
    sent = echo_calls(calls)
    assert [call["records"] for call in sent] == [7]
    assert sent[0]["transfer_encoding"] == "chunked"
    assert "MaxPayloadInMB=0" in job_log(store, "payload-zero")
    output = (tmp_path / "out/big.txt.out").read_bytes()
    assert output.count(b"\n") == 7 and output.startswith(b"echo:0zzz")


def test_gzip_input_is_decompressed_and_a_corrupt_object_fails_alone(store: JobStore, tmp_path: Path) -> None:
    _write(tmp_path / "in/good.txt.gz", gzip.compress(b"one\ntwo\nthree\n"))
    corrupt = bytearray(gzip.compress(b"".join(b"line %d\n" % i for i in range(200))))
    corrupt[20:30] = b"\xff" * 10  # inside the deflate data
    _write(tmp_path / "in/corrupt.txt.gz", bytes(corrupt))
    _write(tmp_path / "in/truncated.txt.gz", gzip.compress(b"a\nb\n")[:-6])
    request = transform_request("gzip-input", f"{tmp_path}/in/", f"{tmp_path}/out/", compression="Gzip")

    record = run_job_in_process(store, request)

    # Output is written uncompressed under <key>.out (docs/transform.md).
    assert tree(tmp_path / "out") == {"good.txt.gz.out": b"echo:one\necho:two\necho:three\n"}
    assert record.status is JobStatus.FAILED
    failed = {f.input_key: f.error for f in store.files("gzip-input", FileState.FAILED)}
    assert set(failed) == {"corrupt.txt.gz", "truncated.txt.gz"}
    assert "corrupt gzip data" in failed["corrupt.txt.gz"]
    assert "truncated gzip stream" in failed["truncated.txt.gz"]
    assert record.failure_reason.startswith((tmp_path / "in/corrupt.txt.gz").as_uri())
    assert "(1 more files failed)" in record.failure_reason
    assert record.files_done == 1 and record.files_failed == 2


def test_manifest_file_lists_the_objects_and_names_the_outputs(store: JobStore, tmp_path: Path) -> None:
    _write(tmp_path / "data/x/one.txt", "1\n")
    _write(tmp_path / "data/two.txt", "2\n")
    _write(tmp_path / "data/not-listed.txt", "never read\n")
    manifest = _write(
        tmp_path / "manifests/inputs.manifest",
        json.dumps([{"prefix": (tmp_path / "data").as_uri() + "/"}, "two.txt", "x/one.txt"]),
    )
    request = transform_request("manifest", str(manifest), str(tmp_path / "out"), data_type="ManifestFile")

    record = run_job_in_process(store, request)

    assert record.status is JobStatus.COMPLETED, record.failure_reason
    assert tree(tmp_path / "out") == {"two.txt.out": b"echo:2\n", "x/one.txt.out": b"echo:1\n"}
    assert [f.input_key for f in store.files("manifest")] == ["two.txt", "x/one.txt"]


@pytest.mark.parametrize("mode", ["skip", "repeat"])
def test_csv_header_option(store: JobStore, tmp_path: Path, mode: str) -> None:
    _write(tmp_path / "in/rows.csv", "id,text\n1,a\n2,b\n3,c\n")
    calls = tmp_path / "calls.jsonl"
    join = {"DataProcessing": {"JoinSource": "Input"}} if mode == "skip" else {}
    request = transform_request(
        f"csv-header-{mode}",
        f"{tmp_path}/in/",
        f"{tmp_path}/out/",
        content_type="text/csv",
        accept="text/csv",
        BatchStrategy="SingleRecord",
        Environment={"ECHO_LOG": str(calls)},
        **join,
    )

    record = run_job_in_process(store, request, {"csv_header": mode})

    assert record.status is JobStatus.COMPLETED, record.failure_reason
    bodies = sorted(call["body"] for call in echo_calls(calls))  # arrival order varies: 2 requests in flight
    if mode == "skip":
        # The header is never sent; with a join it heads the output, plus a column for the result.
        assert bodies == ["1,a\n", "2,b\n", "3,c\n"]
        assert (
            tmp_path / "out/rows.csv.out"
        ).read_text() == "id,text,SageMakerOutput\n1,a,1|a\n2,b,2|b\n3,c,3|c\n"
    else:
        # The header goes with every mini-batch and is not a record.
        assert bodies == ["id,text\n1,a\n", "id,text\n2,b\n", "id,text\n3,c\n"]
        assert (tmp_path / "out/rows.csv.out").read_text() == "1|a\n2|b\n3|c\n"
    assert record.records_done == 3


def test_raw_prefix_matches_sibling_folders_and_refuses_outputs_it_would_read_back(
    store: JobStore, tmp_path: Path
) -> None:
    _write(tmp_path / "data/a.txt", "a\n")
    _write(tmp_path / "data-2/b.txt", "b\n")
    _write(tmp_path / "other/c.txt", "c\n")
    # Every output key would start with ".../data-out/data", which the raw input prefix ".../data" matches: a later
    # run over the same input would read these outputs back, so the job is refused at create.
    with pytest.raises(ValidationError, match="TransformOutput.S3OutputPath .* is inside the input prefix"):
        run_job_in_process(store, transform_request("overlap", f"{tmp_path}/data", f"{tmp_path}/data-out/"))
    assert store.find_job("overlap") is None
    # S3Prefix is a raw string prefix (docs/transform.md): ".../data" also matches ".../data-2/...".
    request = transform_request("raw-prefix", f"{tmp_path}/data", f"{tmp_path}/results/")

    record = run_job_in_process(store, request)

    assert record.status is JobStatus.COMPLETED, record.failure_reason
    assert tree(tmp_path / "results") == {"data/a.txt.out": b"echo:a\n", "data-2/b.txt.out": b"echo:b\n"}
