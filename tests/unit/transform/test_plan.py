"""Pure planners: mini-batch packing, output keys, prefix overlap, retry policy."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest

from batchlane.errors import PayloadTooLarge, ValidationError
from batchlane.transform.invoke import RetryPolicy
from batchlane.transform.plan import (
    FilePlan,
    MiniBatch,
    output_key_for,
    pack,
    plan_job,
    prefix_overlap,
)
from batchlane.transform.split import Record, frame, iter_records

MB = 1 << 20


def recs(*payloads: bytes) -> list[Record]:
    return [Record(p, i, i + 1, 0) for i, p in enumerate(payloads)]


def bodies(batches: list[MiniBatch]) -> list[bytes]:
    return [b.body for b in batches]


def rio(data: bytes) -> bytes:
    return frame(data, "RecordIO")


@pytest.mark.parametrize(
    ("payloads", "split_type", "strategy", "limit", "expected"),
    [
        # The SDK's table: three small records pack into one payload (bytes, with their newlines).
        ([b"123", b"456", b"789"], "Line", "MultiRecord", 6 * MB, [b"123\n456\n789\n"]),
        ([b"123", b"456", b"789"], "Line", "SingleRecord", 6 * MB, [b"123\n", b"456\n", b"789\n"]),
        ([b"123", b"456", b"789"], "Line", "MULTI_RECORD", 6 * MB, [b"123\n456\n789\n"]),
        ([b"123", b"456", b"789"], "Line", "SINGLE_RECORD", 6 * MB, [b"123\n", b"456\n", b"789\n"]),
        # Limits: a payload may be exactly the limit; the next record starts a new one.
        ([b"123", b"456", b"789"], "Line", "MultiRecord", 8, [b"123\n456\n", b"789\n"]),
        ([b"123", b"456", b"789"], "Line", "MultiRecord", 7, [b"123\n", b"456\n", b"789\n"]),
        ([b"123", b"456", b"789"], "Line", "MultiRecord", 4, [b"123\n", b"456\n", b"789\n"]),
        # 0 / None: unlimited.
        ([b"x" * 100] * 3, "Line", "MultiRecord", 0, [(b"x" * 100 + b"\n") * 3]),
        ([b"x" * 100] * 3, "Line", "MultiRecord", None, [(b"x" * 100 + b"\n") * 3]),
        ([b"x" * 100], "Line", "SingleRecord", 0, [b"x" * 100 + b"\n"]),
        # Blank lines travel as empty lines.
        ([b"a", b"", b"b"], "Line", "MultiRecord", None, [b"a\n\nb\n"]),
        # RecordIO/TFRecord: framing kept under MultiRecord, removed under SingleRecord.
        ([b"ab", b"cde"], "RecordIO", "MultiRecord", None, [rio(b"ab") + rio(b"cde")]),
        ([b"ab", b"cde"], "RecordIO", "SingleRecord", None, [b"ab", b"cde"]),
        ([b"ab", b"cde"], "RecordIO", "MultiRecord", 12, [rio(b"ab"), rio(b"cde")]),
        (
            [b"ab", b"cde"],
            "TFRecord",
            "MultiRecord",
            None,
            [frame(b"ab", "TFRecord") + frame(b"cde", "TFRecord")],
        ),
        ([b"ab", b"cde"], "TFRecord", "SingleRecord", None, [b"ab", b"cde"]),
        # SplitType None: the whole object is one payload whatever the strategy.
        ([b"whole\nfile"], None, "MultiRecord", 6 * MB, [b"whole\nfile"]),
        ([b"whole\nfile"], "None", "SingleRecord", 10, [b"whole\nfile"]),
        ([], "Line", "MultiRecord", 6 * MB, []),
        ([], None, "MultiRecord", 6 * MB, []),
    ],
)
def test_pack_table(
    payloads: list[bytes], split_type: str | None, strategy: str, limit: int | None, expected: list[bytes]
) -> None:
    batches = list(pack(recs(*payloads), split_type=split_type, strategy=strategy, max_payload_bytes=limit))
    assert bodies(batches) == expected
    assert [r.data for b in batches for r in b.records] == payloads  # every record once, in order


def test_ten_half_megabyte_records_at_one_megabyte() -> None:
    records = recs(*[b"1" * 500_000] * 10)
    batches = list(pack(records, split_type="Line", strategy="MultiRecord", max_payload_bytes=1 * MB))
    assert len(batches) <= 11
    assert all(0 < len(b.body) <= MB for b in batches)
    assert sum(len(b.records) for b in batches) == 10
    exact = recs(*[b"1" * (MB // 2 - 1)] * 10)  # 0.5 MiB with its newline: exactly two per payload
    assert len(list(pack(exact, split_type="Line", strategy="MultiRecord", max_payload_bytes=MB))) == 5


@pytest.mark.parametrize("strategy", ["MultiRecord", "SingleRecord"])
@pytest.mark.parametrize("position", [0, 1, 2])
def test_record_larger_than_the_limit(strategy: str, position: int) -> None:
    payloads = [b"ok", b"ok", b"ok"]
    payloads[position] = b"x" * 20
    records = [Record(p, i, i + 5, i * 3) for i, p in enumerate(payloads)]
    produced: list[MiniBatch] = []
    with pytest.raises(PayloadTooLarge) as caught:
        for batch in pack(records, split_type="Line", strategy=strategy, max_payload_bytes=10):
            produced.append(batch)
    message = str(caught.value)
    assert f"line {position + 5} (record {position}, offset {position * 3})" in message
    assert "is 21 bytes" in message and "payload limit of 10 bytes" in message
    assert caught.value.record is records[position]  # type: ignore[attr-defined]
    assert all(b.body for b in produced)  # never an empty payload
    assert [r.index for b in produced for r in b.records] == list(range(position))


def test_oversize_isolate_keeps_order() -> None:
    records = recs(b"a", b"b", b"x" * 50, b"c")
    batches = list(
        pack(records, split_type="Line", strategy="MultiRecord", max_payload_bytes=10, oversize="isolate")
    )
    assert [(b.body, [r.index for r in b.records], b.error is not None) for b in batches] == [
        (b"a\nb\n", [0, 1], False),
        (b"", [2], True),
        (b"c\n", [3], False),
    ]
    assert "line 3" in str(batches[1].error)


def test_split_none_over_limit() -> None:
    with pytest.raises(PayloadTooLarge, match="is 11 bytes"):
        list(pack(recs(b"x" * 11), split_type=None, strategy="MultiRecord", max_payload_bytes=10))


def test_recordio_limit_counts_the_framing() -> None:
    # 8 bytes of data is 16 bytes framed: fine under SingleRecord (framing removed), too big under MultiRecord.
    records = recs(b"12345678")
    assert bodies(
        list(pack(records, split_type="RecordIO", strategy="SingleRecord", max_payload_bytes=8))
    ) == [b"12345678"]
    with pytest.raises(PayloadTooLarge, match="16 bytes"):
        list(pack(records, split_type="RecordIO", strategy="MultiRecord", max_payload_bytes=8))


@pytest.mark.parametrize(
    ("strategy", "limit", "expected"),
    [
        ("MultiRecord", None, [b"id,x\n1,a\n2,b\n3,c\n"]),
        ("MultiRecord", 13, [b"id,x\n1,a\n2,b\n", b"id,x\n3,c\n"]),
        ("SingleRecord", None, [b"id,x\n1,a\n", b"id,x\n2,b\n", b"id,x\n3,c\n"]),
    ],
)
def test_csv_header_repeat_mode(strategy: str, limit: int | None, expected: list[bytes]) -> None:
    batches = list(
        pack(
            recs(b"1,a", b"2,b", b"3,c"),
            split_type="Line",
            strategy=strategy,
            max_payload_bytes=limit,
            header=b"id,x",
        )
    )
    assert bodies(batches) == expected
    record_lines = [b.body.count(b"\n") - 1 for b in batches]
    assert [len(b.records) for b in batches] == record_lines  # the header is not a record


def test_csv_header_counts_toward_the_limit() -> None:
    with pytest.raises(PayloadTooLarge, match="plus the 5-byte repeated header"):
        list(
            pack(
                recs(b"1234567"),
                split_type="Line",
                strategy="MultiRecord",
                max_payload_bytes=10,
                header=b"id,x",
            )
        )


def test_header_needs_line_split() -> None:
    with pytest.raises(ValidationError, match="SplitType=Line"):
        list(
            pack(
                recs(b"a"), split_type="RecordIO", strategy="MultiRecord", max_payload_bytes=None, header=b"h"
            )
        )


def test_invalid_strategy() -> None:
    with pytest.raises(ValueError, match="BatchStrategy"):
        list(pack(recs(b"a"), split_type="Line", strategy="Batch", max_payload_bytes=None))


def test_pack_is_lazy_over_a_stream() -> None:
    stream = io.BytesIO(b"".join(b"%d\n" % i for i in range(10_000)))
    batches = pack(
        iter_records(stream, "Line"), split_type="Line", strategy="MultiRecord", max_payload_bytes=100
    )
    first = next(batches)
    assert first.where() == f"lines 1-{len(first.records)}"
    assert stream.tell() < 100_000


def test_minibatch_where_and_first() -> None:
    batch = MiniBatch(tuple(recs(b"a")), b"a\n")
    assert batch.where() == "line 1"
    assert batch.first.data == b"a"


# --- the job plan -----------------------------------------------------------------------------------------------


@dataclass
class Info:
    key: str
    size: int


@pytest.mark.parametrize(
    ("input_prefix", "key", "output_prefix", "expected"),
    [
        ("in/part", "in/part-1.csv", "out", "out/part-1.csv.out"),
        ("in/part", "in/partx/sub/a.csv", "out/", "out/partx/sub/a.csv.out"),
        ("in/", "in/a.csv", "out", "out/a.csv.out"),
        ("in/", "in/2024/01/a.csv", "results/job-1", "results/job-1/2024/01/a.csv.out"),
        ("in", "in.csv", "out", "out/in.csv.out"),
        ("in", "input/a.csv", "out", "out/input/a.csv.out"),
        ("", "a.csv", "", "a.csv.out"),
        ("data/in/", "data/in/a.csv.gz", "", "a.csv.gz.out"),
        ("in/file.csv", "in/file.csv", "out", "out/file.csv.out"),
        ("in/", "in/é ü.csv", "out", "out/é ü.csv.out"),
    ],
)
def test_output_keys(input_prefix: str, key: str, output_prefix: str, expected: str) -> None:
    assert output_key_for(input_prefix, key, output_prefix) == expected


@pytest.mark.parametrize(
    ("input_prefix", "key", "match"),
    [
        ("in/", "other/a.csv", "not under the input prefix"),
        ("in/", "in/../../etc/passwd", r"'\.\.' segment"),
        ("in/", "in/a/..", r"'\.\.' segment"),
        ("in/", "in/a\\..\\b", r"'\.\.' segment"),
        ("in/", "in/", "empty"),
    ],
)
def test_output_key_errors(input_prefix: str, key: str, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        output_key_for(input_prefix, key, "out")


def test_plan_job() -> None:
    objects = [Info("in/p-1.csv", 10), ("in/p/", 0), ("in/p/x.csv", 5), Info("in/p-1.csv", 10)]
    assert plan_job("in/p", objects, "out") == [
        FilePlan("in/p-1.csv", "out/p-1.csv.out", 10),
        FilePlan("in/p/x.csv", "out/p/x.csv.out", 5),
    ]
    assert plan_job("in/", [], "out") == []


@pytest.mark.parametrize(
    ("input_uri", "output_uri", "overlaps"),
    [
        ("s3://bucket/data/", "s3://bucket/data/", True),
        ("s3://bucket/data/", "s3://bucket/data/out", True),
        # Raw prefix: every output key starts with "data-out/data", which starts with "data".
        ("s3://bucket/data", "s3://bucket/data-out", True),
        ("s3://bucket/in", "s3://bucket/in-out/", True),
        ("s3://bucket/in/part", "s3://bucket/in", True),
        ("s3://bucket/in/", "s3://bucket/out/", False),
        ("s3://bucket/data/in/x", "s3://bucket/data", False),
        ("s3://bucket/in/", "s3://other/in/", False),
        ("s3://bucket/in/", "/data/in/", False),
        ("/data/in/", "/data/in/out", True),
        ("/data/in/", "file:///data/in/out", True),
        ("file:///data/in/", "/data/out", False),
        # Refused by the URI rules: no warning here, validation reports it.
        ("/data/in/", "/data/in/../out", False),
        ("https://bucket.s3.us-east-1.amazonaws.com/in/", "s3://bucket/in/out", True),
        ("s3://bucket/in/", "http://x/y", False),
    ],
)
def test_prefix_overlap(input_uri: str, output_uri: str, overlaps: bool) -> None:
    warning = prefix_overlap(input_uri, output_uri)
    assert (warning is not None) == overlaps
    if warning:
        assert "overlaps the input prefix" in warning and output_uri in warning


def test_prefix_overlap_relative_paths_are_left_to_validation(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The URI grammar refuses relative paths in requests (storage.uri), so the runner never sees one.
    monkeypatch.chdir(str(tmp_path))
    assert prefix_overlap("data/in/", f"{tmp_path}/data/in/out") is None


# --- retry policy -----------------------------------------------------------------------------------------------


def test_retry_delays_are_deterministic_and_bounded() -> None:
    policy = RetryPolicy(max_retries=6, base_delay=0.5, max_delay=4.0, seed="job-1/a.csv")
    delays = policy.delays()
    assert delays == RetryPolicy(max_retries=6, base_delay=0.5, max_delay=4.0, seed="job-1/a.csv").delays()
    assert delays != RetryPolicy(max_retries=6, base_delay=0.5, max_delay=4.0, seed="job-1/b.csv").delays()
    caps = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert len(delays) == 6
    assert all(cap * 0.5 <= d <= cap for d, cap in zip(delays, caps, strict=True))


def test_no_retries_no_delays() -> None:
    assert RetryPolicy(max_retries=0).delays() == []
    assert len(RetryPolicy().delays()) == 3


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (None, "timeout", True),
        (None, "connection", True),
        (500, "server", True),
        (502, "server", True),
        (503, "server", True),
        (599, "server", True),
        (None, "server", True),
        (408, "client", True),
        (429, "client", True),
        (400, "client", False),
        (404, "client", False),
        (413, "client", False),
        (415, "client", False),
        (None, "client", False),
        (200, "bad-response", False),
        (None, "bad-response", False),
    ],
)
def test_is_retryable(status: int | None, kind: str, retryable: bool) -> None:
    assert RetryPolicy.is_retryable(status, kind) is retryable
