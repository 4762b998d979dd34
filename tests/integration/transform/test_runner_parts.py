"""A large input file cut into parts (docs/parts.md) gives byte for byte the output of the same job run unsplit,
for each BatchStrategy/AssembleWith/DataProcessing/CSV-header combination, error rows, result-count warnings and
consolidated output; its progress counters and per-record log lines equal the unsplit run's."""

from __future__ import annotations

import gzip
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from batchlane.jobs.state import JobStatus
from batchlane.jobs.store import JobStore
from batchlane.storage.s3 import S3Store
from batchlane.storage.uri import open_store
from batchlane.transform.part_io import open_range
from batchlane.transform.split import frame
from tests.models import job_log, register_echo, run_job_in_process, transform_request, tree

HUGE = 1 << 40


@pytest.fixture()
def store(tmp_path: Path) -> JobStore:
    store = JobStore(tmp_path / "jobs.db")
    register_echo(store)
    return store


def _jsonl(count: int, poison_every: int = 0) -> bytes:
    lines = []
    for i in range(count):
        word = "poison" if poison_every and i % poison_every == 7 else "v" * (i % 11)
        lines.append(json.dumps({"id": i, "text": f"{word} {i}", "n": i * 2}))
    return ("\n".join(lines) + "\n").encode()


def _csv(count: int) -> bytes:
    return b"id,value,label\n" + b"".join(
        f"{i},{i * 7 % 13},{'ab' * (i % 4)}\n".encode() for i in range(count)
    )


def _record_lines(store: JobStore, name: str) -> list[str]:
    """The job log's per-record lines (with file-global line numbers), without timestamps."""
    return [
        re.sub(r"^\S+ \S+ ", "", line).replace(f"logs {name}", "logs JOB")
        for line in job_log(store, name).splitlines()
        if "(record " in line or "line " in line.split(": ", 1)[-1][:8]
    ]


def _run_both(
    store: JobStore,
    tmp_path: Path,
    files: dict[str, bytes],
    part_size: int,
    options: dict[str, Any] | None = None,
    *,
    wrote: bool = True,
    **request: Any,
) -> tuple[Any, Any]:
    inputs = tmp_path / "in"
    for key, data in files.items():
        (inputs / key).parent.mkdir(parents=True, exist_ok=True)
        (inputs / key).write_bytes(data)
    records = []
    for name, size in (("whole", HUGE), ("parts", part_size)):
        job_options = {"part_size": size, **(options or {})}
        if "consolidate" in job_options:
            job_options["consolidate"] = str(tmp_path / f"{name}.jsonl")
        # A poisoned record fails at once (no retries): these tests are about where its error row goes.
        body = transform_request(
            name,
            f"{inputs}/",
            f"{tmp_path}/out-{name}/",
            ModelClientConfig={"InvocationsMaxRetries": 0},
            **request,
        )
        records.append(run_job_in_process(store, body, job_options))
    whole, parts = records
    assert tree(tmp_path / "out-parts") == tree(tmp_path / "out-whole")
    assert bool(tree(tmp_path / "out-whole")) is wrote
    for field in ("status", "files_done", "files_failed"):
        assert getattr(parts, field) == getattr(whole, field), field
    assert parts.bytes_done == whole.bytes_done or whole.files_failed
    # A failed file keeps the progress flushed before it failed (timing, not data): compare finished files only.
    if whole.files_failed == 0:
        assert (parts.records_done, parts.records_failed) == (whole.records_done, whole.records_failed)
    assert (parts.failure_reason or "").replace("logs parts", "logs whole") == (whole.failure_reason or "")
    for field in ("bytes_total", "warnings", "first_warning"):
        assert getattr(parts, field) == getattr(whole, field), field
    assert _record_lines(store, "parts") == _record_lines(store, "whole")
    if options and "consolidate" in options:
        assert (tmp_path / "parts.jsonl").read_bytes() == (tmp_path / "whole.jsonl").read_bytes()
    return whole, parts


def _parted(store: JobStore, name: str, key: str) -> int:
    return len(store.parts(name, key))


CASES = {
    "jsonlines-single-join-filters": (
        {"big.jsonl": _jsonl(600)},
        1500,
        {},
        {
            "content_type": "application/jsonlines",
            "accept": "application/jsonlines",
            "assemble_with": "Line",
            "BatchStrategy": "SingleRecord",
            "DataProcessing": {
                "InputFilter": "$.text",
                "JoinSource": "Input",
                "OutputFilter": "$.SageMakerOutput",
            },
        },
    ),
    "json-array-per-batch-multirecord": (
        # The echo answers application/json with one array per mini-batch: a cut inside a whole-file batch would
        # change the arrays. 1 MiB payloads over ~2.5 MiB.
        {"big.json": b"".join(b'{"row": %d, "pad": "%s"}\n' % (i, b"q" * 180) for i in range(13000))},
        300_000,
        {},
        {"content_type": "application/json", "BatchStrategy": "MultiRecord", "MaxPayloadInMB": 1},
    ),
    "csv-skip-header-join": (
        {"big.csv": _csv(700)},
        1200,
        {"csv_header": "skip"},
        {
            "content_type": "text/csv",
            "accept": "text/csv",
            "assemble_with": "Line",
            "BatchStrategy": "SingleRecord",
            "DataProcessing": {"JoinSource": "Input"},
        },
    ),
    "csv-repeat-header-consolidated": (
        {"big.csv": _csv(700), "sub/small.csv": _csv(3)},
        1200,
        {"csv_header": "repeat", "consolidate": "x"},
        {"content_type": "text/csv", "assemble_with": "Line", "BatchStrategy": "SingleRecord"},
    ),
    "error-rows-warnings-no-assembly": (
        {"big.jsonl": _jsonl(600, poison_every=37) + b'{"id": "half", "text": "half"}\n' * 3},
        1500,
        {"on_record_error": "error-row", "max_error_ratio": 0.5, "consolidate": "x"},
        {"content_type": "text/plain", "assemble_with": "None", "BatchStrategy": "SingleRecord"},
    ),
    "text-multi-file-sub-folders": (
        {
            "big.txt": b"".join(f"t{i}\n".encode() for i in range(900)),
            "sub/other.txt": b"".join(f"z{i}\n".encode() for i in range(900)),
            "sub/deeper/tiny.txt": b"one\n",
        },
        700,
        {},
        {"content_type": "text/plain", "BatchStrategy": "SingleRecord"},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_file_in_parts_equals_the_unsplit_run(store: JobStore, tmp_path: Path, case: str) -> None:
    files, part_size, options, request = CASES[case]
    whole, parts = _run_both(store, tmp_path, files, part_size, options, **request)
    assert whole.status is JobStatus.COMPLETED
    big = next(key for key in files if key.startswith("big"))
    assert _parted(store, "whole", big) == 1
    assert _parted(store, "parts", big) > 2
    # Every part is committed, the staged objects are gone, and the parts' counts add up to the file's.
    stored = store.parts("parts", big)
    assert all(part.done for part in stored)
    assert sum(part.records + part.records_failed for part in stored) == next(
        f.records + f.records_failed for f in store.files("parts") if f.input_key == big
    )
    assert not [p for p in (tmp_path / "out-parts").rglob("*") if ".batchlane-parts" in p.as_posix()]
    if "sub/other.txt" in files:
        assert _parted(store, "parts", "sub/other.txt") > 2
        assert _parted(store, "parts", "sub/deeper/tiny.txt") == 1


def test_a_large_gzip_file_is_one_part(store: JobStore, tmp_path: Path) -> None:
    data = gzip.compress(b"".join(f"z{i}\n".encode() for i in range(900)))
    whole, parts = _run_both(
        store, tmp_path, {"big.txt.gz": data}, 100, compression="Gzip", BatchStrategy="SingleRecord"
    )
    assert parts.status is JobStatus.COMPLETED and parts.records_done == 900
    assert _parted(store, "parts", "big.txt.gz") == 1


@pytest.mark.parametrize("split_type", ["RecordIO", "TFRecord"])
@pytest.mark.parametrize("strategy", ["SingleRecord", "MultiRecord"])
def test_framed_records_in_parts_equal_the_unsplit_run(
    store: JobStore, tmp_path: Path, split_type: str, strategy: str
) -> None:
    data = b"".join(frame(f"rec {i} {'w' * (i % 9)}".encode(), split_type) for i in range(500))  # type: ignore[arg-type]
    content_type = "application/x-recordio" if split_type == "RecordIO" else "application/x-tfrecord"
    whole, parts = _run_both(
        store,
        tmp_path,
        {"big.rec": data},
        900,
        content_type=content_type,
        split_type=split_type,
        BatchStrategy=strategy,
        assemble_with="Line",
    )
    assert whole.status is JobStatus.COMPLETED and whole.records_done == 500
    # MultiRecord: the whole file is one 6 MiB mini-batch, so one part.
    count = _parted(store, "parts", "big.rec")
    assert count == 1 if strategy == "MultiRecord" else count > 5


def test_a_file_failing_its_error_ratio_in_a_late_part_has_no_output_and_no_staged_parts(
    store: JobStore, tmp_path: Path
) -> None:
    data = b"".join(f"ok {i}\n".encode() for i in range(300)) + b"poison\n" * 200
    whole, parts = _run_both(
        store,
        tmp_path,
        {"big.txt": data},
        500,
        {"on_record_error": "skip", "max_error_ratio": 0.3},
        wrote=False,
        content_type="text/plain",
        MaxConcurrentTransforms=1,  # no answer in flight past the failing one: the same log lines
        BatchStrategy="SingleRecord",
    )
    assert parts.status is JobStatus.FAILED and "more than max_error_ratio=0.3" in parts.failure_reason
    assert not (tmp_path / "out-parts" / "big.txt.out").exists()
    assert not [p for p in (tmp_path / "out-parts").rglob("*") if p.is_file()]
    assert not any(part.done for part in store.parts("parts", "big.txt"))


def test_parts_through_s3_use_ranged_reads_and_leave_no_staged_objects(
    store: JobStore, tmp_path: Path, moto_server: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    data = _jsonl(500)
    s3.put_object(Bucket=s3_bucket, Key="in/big.jsonl", Body=data)
    s3.put_object(Bucket=s3_bucket, Key="in/sub/small.jsonl", Body=_jsonl(3))
    outputs = {}
    for name, size in (("whole", HUGE), ("parts", 2000)):
        body = transform_request(
            name,
            f"s3://{s3_bucket}/in/",
            f"s3://{s3_bucket}/out-{name}/",
            content_type="application/jsonlines",
            BatchStrategy="SingleRecord",
        )
        record = run_job_in_process(store, body, {"part_size": size})
        assert record.status is JobStatus.COMPLETED and record.records_done == 503
        listed = s3.list_objects_v2(Bucket=s3_bucket, Prefix=f"out-{name}/")["Contents"]
        outputs[name] = {
            item["Key"].split("/", 1)[1]: s3.get_object(Bucket=s3_bucket, Key=item["Key"])["Body"].read()
            for item in listed
        }
    assert _parted(store, "parts", "in/big.jsonl") > 5
    assert outputs["parts"] == outputs["whole"]
    # A part is one ranged GET (S3Store.open_range), not a read from the object's start.
    s3_store, _ = open_store(f"s3://{s3_bucket}/")
    assert isinstance(s3_store, S3Store)
    with open_range(s3_store, "in/big.jsonl", 1000, 1500) as part:
        assert part.read() == data[1000:1500]
    assert sorted(outputs["parts"]) == ["big.jsonl.out", "sub/small.jsonl.out"]  # no staged part is left


def test_a_stop_mid_file_keeps_its_committed_parts_for_jobs_resume(store: JobStore, tmp_path: Path) -> None:
    from batchlane.engines import get_engine
    from batchlane.jobs.state import FileState

    (tmp_path / "in").mkdir()
    (tmp_path / "in/big.txt").write_bytes(b"".join(f"s{i:03d}\n".encode() for i in range(300)))
    body = transform_request(
        "stopped",
        f"{tmp_path}/in/",
        f"{tmp_path}/out/",
        BatchStrategy="SingleRecord",
        MaxConcurrentTransforms=1,
    )
    engine = get_engine("local", store, invoker="in_process")
    engine.submit(body, {"part_size": 150})

    def stop_after_three_parts(event: str, data: dict[str, Any]) -> None:
        if event == "part" and data["number"] == 2:
            store.request_stop("stopped")
            time.sleep(1.5)  # the runner's heartbeat sees the stop before the next part starts

    record = engine.run("stopped", on_progress=stop_after_three_parts)
    assert record.status is JobStatus.STOPPED
    committed = [part.number for part in store.parts("stopped", "big.txt") if part.done]
    assert committed[:3] == [0, 1, 2] and len(committed) < len(store.parts("stopped", "big.txt"))
    assert not (tmp_path / "out/big.txt.out").exists()
    staged = sorted(p.name for p in (tmp_path / "out").rglob("*.part"))
    assert len(staged) == len(committed)  # the committed parts wait, staged, for the resume

    engine.reopen("stopped")
    seen: list[int] = []
    resumed = engine.run(
        "stopped", on_progress=lambda e, d: seen.append(d["number"]) if e == "part" else None
    )
    assert resumed.status is JobStatus.COMPLETED
    assert seen == [n for n in range(len(store.parts("stopped", "big.txt"))) if n not in committed]
    assert (tmp_path / "out/big.txt.out").read_bytes() == b"".join(
        f"echo:s{i:03d}\n".encode() for i in range(300)
    )
    assert [p.name for p in (tmp_path / "out").rglob("*") if p.is_file()] == ["big.txt.out"]
    assert store.files("stopped", FileState.DONE)[0].records == 300 == resumed.records_done
