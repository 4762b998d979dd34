"""The part planner (``transform.parts.plan_parts``): parts cover the object without gaps, start on record and
mini-batch boundaries of the whole-file batching, and gzip, SplitType=None and small objects are one part."""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import Any

import pytest

from batchlane.storage.local import LocalStore
from batchlane.transform import parts as parts_module
from batchlane.transform.dataprocessing import DataProcessor
from batchlane.transform.file_transform import mini_batches
from batchlane.transform.options import JobOptions
from batchlane.transform.params import EffectiveParams, resolve
from batchlane.transform.part_io import open_range
from batchlane.transform.parts import Part, plan_parts, staging_key
from batchlane.transform.spec import validate_request
from batchlane.transform.split import Record, frame, iter_records
from tests.models import transform_request


def _params(**request: Any) -> EffectiveParams:
    split_type = request.pop("split_type", "Line")
    content_type = request.pop("content_type", "text/plain")
    compression = request.pop("compression", None)
    body = transform_request(
        "plan",
        "s3://bucket/in/",
        "s3://bucket/out/",
        split_type=split_type,
        content_type=content_type,
        compression=compression,
        **request,
    )
    return resolve(validate_request(body))


def _store(tmp_path: Path, data: bytes, key: str = "in/data") -> LocalStore:
    store = LocalStore(tmp_path)
    store.write_bytes(key, data)
    return store


def _batch_starts(data: bytes, params: EffectiveParams, options: JobOptions) -> list[int]:
    processor = DataProcessor.from_params(params, options)
    records = iter_records(io.BytesIO(data), params.split_type)
    header = None
    if options.csv_header != "none":
        first = next(records)
        header = processor.filter_header(first.data) if options.csv_header == "repeat" else None
    return [b.records[0].offset for b in mini_batches(records, header, params, processor, False)]


def _check_cover(parts: list[Part], size: int) -> None:
    assert [p.number for p in parts] == list(range(len(parts)))
    assert all(p.count == len(parts) for p in parts)
    assert parts[0].start == 0 and parts[-1].end == size
    assert all(a.end == b.start for a, b in zip(parts, parts[1:], strict=False))


def test_line_parts_start_on_records_with_global_numbers(tmp_path: Path) -> None:
    data = b"".join(f"record {i:04d} {'x' * (i % 13)}\n".encode() for i in range(400))
    store = _store(tmp_path, data)
    params = _params(BatchStrategy="SingleRecord")
    parts = plan_parts(store, "in/data", len(data), params, JobOptions(), budget=1000)
    assert len(parts) > 5
    _check_cover(parts, len(data))
    records = {r.offset: r for r in iter_records(io.BytesIO(data), "Line")}
    for part in parts:
        first = records[part.start]  # a KeyError would be a cut inside a record
        assert (part.first_index, part.first_line) == (first.index, first.line)
    # Every cut is the first record start at or past the budget from the previous cut.
    for part in parts[1:]:
        previous = parts[part.number - 1]
        assert part.start - previous.start >= 1000
        before = max(offset for offset in records if offset < part.start)
        assert before - previous.start < 1000 or records[before].index < 20
    # The plan is stable.
    assert plan_parts(store, "in/data", len(data), params, JobOptions(), budget=1000) == parts


def test_multirecord_cuts_only_at_whole_file_batch_starts(tmp_path: Path) -> None:
    # 1 MiB payloads: each mini-batch holds many lines, and a cut inside one would change the model's batches.
    line = b"y" * 999 + b"\n"
    data = line * 3500  # ~3.3 MiB
    store = _store(tmp_path, data)
    params = _params(BatchStrategy="MultiRecord", MaxPayloadInMB=1)
    parts = plan_parts(store, "in/data", len(data), params, JobOptions(), budget=100_000)
    starts = _batch_starts(data, params, JobOptions())
    assert len(starts) == 4 and len(parts) == 4
    assert [p.start for p in parts] == starts
    _check_cover(parts, len(data))


@pytest.mark.parametrize("split_type", ["RecordIO", "TFRecord"])
def test_framed_records_are_cut_at_their_framing(tmp_path: Path, split_type: str) -> None:
    records = [f"payload {i} {'z' * (i % 7)}".encode() for i in range(300)]
    data = b"".join(frame(r, split_type) for r in records)  # type: ignore[arg-type]
    store = _store(tmp_path, data)
    params = _params(
        split_type=split_type, content_type="application/x-recordio", BatchStrategy="SingleRecord"
    )
    parts = plan_parts(store, "in/data", len(data), params, JobOptions(), budget=800)
    assert len(parts) > 3
    _check_cover(parts, len(data))
    by_offset = {r.offset: r for r in iter_records(io.BytesIO(data), split_type)}
    for part in parts:
        record: Record = by_offset[part.start]
        assert part.first_index == record.index and part.first_line == record.index + 1


def test_repeated_csv_header_batches_are_respected(tmp_path: Path) -> None:
    data = b"id,value\n" + b"".join(f"{i},{i * 3}\n".encode() for i in range(600))
    store = _store(tmp_path, data)
    params = _params(content_type="text/csv", BatchStrategy="SingleRecord")
    options = JobOptions(csv_header="repeat")
    parts = plan_parts(store, "in/data", len(data), params, options, budget=500)
    assert len(parts) > 3
    assert {p.start for p in parts[1:]} <= set(_batch_starts(data, params, options))
    assert parts[1].first_index >= 20  # part 0 keeps the lines a header sniff reads


@pytest.mark.parametrize(
    ("data", "request_fields"),
    [
        (gzip.compress(b"line\n" * 5000), {"compression": "Gzip", "BatchStrategy": "SingleRecord"}),
        (b"line\n" * 5000, {"split_type": "None"}),
        (b"line\n" * 10, {"BatchStrategy": "SingleRecord"}),  # at or under the budget
        (b"line\n" * 5000, {"BatchStrategy": "MultiRecord", "MaxPayloadInMB": 0}),  # one unlimited mini-batch
        (b"\x00\x01" * 3000, {"split_type": "TFRecord", "BatchStrategy": "SingleRecord"}),  # corrupt framing
    ],
    ids=["gzip", "split-none", "small", "unlimited-payload", "unreadable"],
)
def test_whole_object_is_one_part(tmp_path: Path, data: bytes, request_fields: dict[str, Any]) -> None:
    store = _store(tmp_path, data)
    budget = 50 if "small" not in str(request_fields) else len(data)
    parts = plan_parts(store, "in/data", len(data), _params(**request_fields), JobOptions(), budget=budget)
    assert parts == [Part.whole_object()]
    assert parts[0].whole


def test_staging_keys_are_hidden_beside_the_output_and_fit_any_key_length() -> None:
    long_key = "out/sub/" + "k" * 250 + ".out"
    key = staging_key(long_key, "My-Job", 3)
    assert key.startswith("out/sub/.batchlane-parts/my-job/") and key.endswith("-00003.part")
    assert max(len(segment) for segment in key.split("/")) < 64
    assert staging_key("a.out", "j", 0) != staging_key("b.out", "j", 0)


def test_a_local_byte_range_reads_only_its_bytes(tmp_path: Path) -> None:
    data = bytes(range(256)) * 10
    store = _store(tmp_path, data)
    with open_range(store, "in/data", 300, 700) as part:
        assert part.read(100) == data[300:400]
        assert part.read() == data[400:700]


@pytest.mark.parametrize("chunk", [7, 64, 1 << 20])
@pytest.mark.parametrize("csv_header", ["none", "repeat"])
def test_the_newline_scan_cuts_where_the_batching_does(
    monkeypatch: pytest.MonkeyPatch, chunk: int, csv_header: str
) -> None:
    # SingleRecord Line files take a fast path (newline scan); it must agree with the record-by-record batching,
    # blank lines, CRLF, a line longer than a read chunk and a missing final newline included.
    lines = [f"{i},{'p' * (i % 17)}" for i in range(300)]
    lines[40] = ""
    lines[41] = "x" * 200
    data = ("id,text\n" + "\r\n".join(lines)).encode()
    params = _params(content_type="text/csv", BatchStrategy="SingleRecord")
    options = JobOptions(csv_header=csv_header)
    monkeypatch.setattr(parts_module, "SCAN_CHUNK", chunk)
    for budget in (50, 333, 1000):
        fast = parts_module.line_cuts(io.BytesIO(data), len(data), budget)
        slow = parts_module.batch_cuts(
            io.BytesIO(data), params, options, DataProcessor.from_params(params, options), budget
        )
        assert fast == slow and len(fast) > 1


@pytest.mark.parametrize("chunk", [5, 4096, 1 << 20])
@pytest.mark.parametrize(
    ("csv_header", "on_record_error"), [("none", "fail"), ("skip", "error-row"), ("none", "skip")]
)
def test_the_packing_replay_cuts_where_the_batching_does(
    monkeypatch: pytest.MonkeyPatch, chunk: int, csv_header: str, on_record_error: str
) -> None:
    # MultiRecord Line files without an InputFilter are planned from line lengths alone; the cuts must be those
    # of the record-by-record batching: CRLF, blank lines, a last line without newline (keeping its CR), and
    # with error isolation a line over the 1 MiB payload limit (an error batch of its own).
    import random

    rng = random.Random(7)
    lines = [b"h1,h2"] + [b"v" * rng.randrange(0, 30000) for _ in range(400)]
    lines[50] = b""
    if on_record_error != "fail":
        lines[200] = b"o" * ((1 << 20) + 5)
    data = b"\r\n".join(lines[:300]) + b"\n" + b"\n".join(lines[300:]) + b"\r"
    params = _params(content_type="text/csv", BatchStrategy="MultiRecord", MaxPayloadInMB=1)
    options = JobOptions(csv_header=csv_header, on_record_error=on_record_error)  # type: ignore[arg-type]
    monkeypatch.setattr(parts_module, "SCAN_CHUNK", chunk)
    for budget in (100_000, 1_500_000):
        fast = parts_module.packed_line_cuts(
            io.BytesIO(data),
            params.max_payload_bytes,  # type: ignore[arg-type]
            budget,
            skip_first=csv_header == "skip",
            isolate=on_record_error != "fail",
        )
        slow = parts_module.batch_cuts(
            io.BytesIO(data), params, options, DataProcessor.from_params(params, options), budget
        )
        assert fast == slow and len(fast) > 1


def test_a_line_over_the_payload_limit_without_isolation_is_one_part(tmp_path: Path) -> None:
    data = b"a\n" * 100 + b"x" * ((1 << 20) + 1) + b"\n" + b"b\n" * 100
    store = _store(tmp_path, data)
    params = _params(BatchStrategy="MultiRecord", MaxPayloadInMB=1)
    assert plan_parts(store, "in/data", len(data), params, JobOptions(), budget=100) == [Part.whole_object()]
