"""Record splitters (None, Line, RecordIO, TFRecord), wire framing and streaming gzip input."""

from __future__ import annotations

import gzip
import io
import struct
import zlib

import pytest

from batchlane.errors import BadInput, PayloadTooLarge, ValidationError
from batchlane.transform.split import (
    RECORDIO_MAGIC,
    Record,
    crc32c,
    frame,
    iter_records,
    masked_crc32c,
    open_decompressed,
)


def records(data: bytes, split_type: str | None, **kwargs: object) -> list[Record]:
    return list(iter_records(io.BytesIO(data), split_type, **kwargs))


def triples(data: bytes, split_type: str | None, **kwargs: object) -> list[tuple[bytes, int, int, int]]:
    return [(r.data, r.index, r.line, r.offset) for r in records(data, split_type, **kwargs)]


class CountingStream(io.RawIOBase):
    """A stream that records how many bytes were read and can be endless."""

    def __init__(self, data: bytes = b"", endless: bytes | None = None) -> None:
        self.data = data
        self.pos = 0
        self.endless = endless
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self.endless is not None:
            chunk = (self.endless * (len(buffer) // len(self.endless) + 1))[: len(buffer)]
        else:
            chunk = self.data[self.pos : self.pos + len(buffer)]
            self.pos += len(chunk)
        buffer[: len(chunk)] = chunk
        self.bytes_read += len(chunk)
        return len(chunk)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(b"", [], id="empty stream"),
        pytest.param(b"a\nb\n", [(b"a", 0, 1, 0), (b"b", 1, 2, 2)], id="trailing newline"),
        pytest.param(b"a\nbc", [(b"a", 0, 1, 0), (b"bc", 1, 2, 2)], id="no trailing newline"),
        pytest.param(b"a\r\nb\r\n", [(b"a", 0, 1, 0), (b"b", 1, 2, 3)], id="CRLF"),
        pytest.param(b"a\rb\n", [(b"a\rb", 0, 1, 0)], id="lone CR is data"),
        pytest.param(b"\n\n", [(b"", 0, 1, 0), (b"", 1, 2, 1)], id="blank lines are records"),
        pytest.param(
            b"a\n\nb", [(b"a", 0, 1, 0), (b"", 1, 2, 2), (b"b", 2, 3, 3)], id="blank line in the middle"
        ),
        pytest.param(b"  \n", [(b"  ", 0, 1, 0)], id="whitespace is not blank"),
        pytest.param(b"\r\n", [(b"", 0, 1, 0)], id="CRLF blank line"),
        pytest.param("é,ü\n✓\n".encode(), [("é,ü".encode(), 0, 1, 0), ("✓".encode(), 1, 2, 6)], id="unicode"),
        pytest.param(b"\xff\xfe{}\nok\n", [(b"\xff\xfe{}", 0, 1, 0), (b"ok", 1, 2, 5)], id="non-UTF-8 bytes"),
    ],
)
def test_line_split(data: bytes, expected: list[tuple[bytes, int, int, int]]) -> None:
    assert triples(data, "Line") == expected


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 5, 7, 64, 1 << 16])
def test_line_split_is_independent_of_chunk_boundaries(chunk_size: int) -> None:
    data = b"alpha\r\nbeta\n\n" + b"x" * 100 + b"\r\n\xe2\x9c\x93\nlast"
    expected = triples(data, "Line", chunk_size=1 << 20)
    assert triples(data, "Line", chunk_size=chunk_size) == expected
    assert [r[0] for r in expected] == [b"alpha", b"beta", b"", b"x" * 100, "✓".encode(), b"last"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"a\n\nb\n", [(b"a", 0, 1, 0), (b"b", 1, 3, 3)]),
        (b"\n\n\n", []),
        (b"\r\nx", [(b"x", 0, 2, 2)]),
    ],
)
def test_skip_blank_lines_keeps_line_numbers(
    data: bytes, expected: list[tuple[bytes, int, int, int]]
) -> None:
    assert triples(data, "Line", skip_blank_lines=True) == expected


def test_giant_line_is_refused_while_streaming() -> None:
    stream = CountingStream(endless=b"y")  # one endless line: never ends, never fits
    with pytest.raises(PayloadTooLarge, match=r"line 1 \(record 0, offset 0\).*limit of 1000 bytes"):
        list(iter_records(stream, "Line", max_record_bytes=1000, chunk_size=256))
    assert stream.bytes_read < 2000


@pytest.mark.parametrize(
    ("data", "limit", "match"),
    [
        (b"ok\n" + b"z" * 11 + b"\nok\n", 10, r"line 2 \(record 1, offset 3\) is 11 bytes"),
        (b"ok\n" + b"z" * 11, 10, r"line 2 \(record 1, offset 3\) is more than 10 bytes"),
    ],
)
def test_line_over_limit_names_the_line(data: bytes, limit: int, match: str) -> None:
    with pytest.raises(PayloadTooLarge, match=match):
        records(data, "Line", max_record_bytes=limit)


def test_line_exactly_at_limit_is_fine() -> None:
    assert triples(b"1234567890\n", "Line", max_record_bytes=10) == [(b"1234567890", 0, 1, 0)]


@pytest.mark.parametrize(
    ("data", "split_type", "expected"),
    [
        (b"", None, []),
        (b"", "None", []),
        (b"this\nis\na\ntest", None, [(b"this\nis\na\ntest", 0, 1, 0)]),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "None", [(b"\xff\xd8\xff\xe0\x00\x10JFIF", 0, 1, 0)]),
    ],
)
def test_none_split_is_the_whole_object(
    data: bytes, split_type: str | None, expected: list[tuple[bytes, int, int, int]]
) -> None:
    assert triples(data, split_type, chunk_size=3) == expected


def test_none_split_over_limit() -> None:
    with pytest.raises(PayloadTooLarge, match="SplitType None"):
        records(b"x" * 11, None, max_record_bytes=10)
    assert triples(b"x" * 10, None, max_record_bytes=10)[0][0] == b"x" * 10


def test_unknown_split_type() -> None:
    with pytest.raises(ValidationError, match="Invalid SplitType 'Lines'"):
        records(b"a", "Lines")


def recordio(*payloads: bytes, flags: int = 0) -> bytes:
    out = b""
    for data in payloads:
        out += (
            struct.pack("<II", RECORDIO_MAGIC, len(data) | (flags << 29))
            + data
            + b"\x00" * ((-len(data)) % 4)
        )
    return out


@pytest.mark.parametrize(
    "payloads",
    [
        [],
        [b""],
        [b"0", b"12", b"345", b"6789", b"abcde"],
        [str(i).encode() for i in range(10)],
        [bytes(range(256)) * 3],
    ],
)
def test_recordio_round_trip(payloads: list[bytes]) -> None:
    data = recordio(*payloads)
    got = records(data, "RecordIO")
    assert [r.data for r in got] == payloads
    assert [r.line for r in got] == list(range(1, len(payloads) + 1))
    assert b"".join(frame(r, "RecordIO") for r in got) == data
    assert all(len(frame(r, "RecordIO")) % 4 == 0 for r in got)


def test_recordio_offsets_and_continuation_flags_ignored() -> None:
    data = recordio(b"abc", b"defgh", flags=1)
    assert [(r.data, r.offset) for r in records(data, "RecordIO")] == [(b"abc", 0), (b"defgh", 12)]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (
            recordio(b"ok") + b"\x00\x00\x00\x00" + struct.pack("<I", 4) + b"abcd",
            r"bad RecordIO magic 0x00000000 at offset 12",
        ),
        (recordio(b"ok") + b"\x0a\x23", r"truncated RecordIO header at offset 12"),
        (
            recordio(b"ok") + struct.pack("<II", RECORDIO_MAGIC, 10) + b"short",
            r"truncated RecordIO record 1 at offset 12",
        ),
        (struct.pack("<II", RECORDIO_MAGIC, 3) + b"abc", r"truncated RecordIO record 0 at offset 0"),
    ],
)
def test_recordio_errors_name_the_offset(data: bytes, match: str) -> None:
    with pytest.raises(BadInput, match=match):
        records(data, "RecordIO")


def test_recordio_over_limit_before_reading_the_data() -> None:
    data = recordio(b"x" * 100)
    with pytest.raises(PayloadTooLarge, match=r"RecordIO record 0 \(offset 0\) is 100 bytes"):
        records(data, "RecordIO", max_record_bytes=99)


@pytest.mark.parametrize(
    ("data", "crc"),
    [
        (b"", 0x00000000),
        (b"123456789", 0xE3069283),
        (b"\x00" * 32, 0x8A9136AA),
        (b"\xff" * 32, 0x62A8AB43),
        (bytes(range(32)), 0x46DD794E),
    ],
)
def test_crc32c_known_vectors(data: bytes, crc: int) -> None:
    assert crc32c(data) == crc


def test_crc32c_is_incremental() -> None:
    assert crc32c(b"6789", crc32c(b"12345")) == crc32c(b"123456789")


def tfrecord(*payloads: bytes) -> bytes:
    return b"".join(frame(p, "TFRecord") for p in payloads)


def test_tfrecord_framing_layout() -> None:
    framed = frame(b"hello", "TFRecord")
    assert framed[:8] == struct.pack("<Q", 5)
    assert struct.unpack("<I", framed[8:12])[0] == masked_crc32c(struct.pack("<Q", 5))
    assert framed[12:17] == b"hello"
    crc = crc32c(b"hello")
    assert struct.unpack("<I", framed[17:])[0] == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@pytest.mark.parametrize("payloads", [[], [b""], [b"a", b"bc", b"\x00" * 50, "ü".encode()]])
def test_tfrecord_round_trip(payloads: list[bytes]) -> None:
    data = tfrecord(*payloads)
    got = records(data, "TFRecord")
    assert [r.data for r in got] == payloads
    assert b"".join(frame(r, "TFRecord") for r in got) == data


def _flip(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: _flip(d, 21 + 13), r"TFRecord record 1 at offset 21: data checksum mismatch"),
        (lambda d: _flip(d, 21), r"TFRecord record 1 at offset 21: length checksum mismatch"),
        (lambda d: _flip(d, 21 + 12 + 5 + 1), r"data checksum mismatch"),
        (lambda d: d[:-2], r"truncated TFRecord record 1 at offset 21"),
        (lambda d: d[: 21 + 5], r"truncated TFRecord header at offset 21"),
    ],
)
def test_tfrecord_errors(mutate: object, match: str) -> None:
    data = tfrecord(b"first", b"hello")  # record 0: 16 + 5 = 21 bytes
    with pytest.raises(BadInput, match=match):
        records(mutate(data), "TFRecord")  # type: ignore[operator]


def test_tfrecord_over_limit() -> None:
    with pytest.raises(PayloadTooLarge, match="TFRecord record 0"):
        records(tfrecord(b"x" * 20), "TFRecord", max_record_bytes=10)


@pytest.mark.parametrize(
    ("split_type", "expected"),
    [
        ("Line", b"abc\n"),
        ("None", b"abc"),
        (None, b"abc"),
        ("RecordIO", struct.pack("<II", RECORDIO_MAGIC, 3) + b"abc\x00"),
    ],
)
def test_frame(split_type: str | None, expected: bytes) -> None:
    assert frame(b"abc", split_type) == expected
    assert frame(Record(b"abc", 0, 1, 0), split_type) == expected


def test_record_unfiltered_and_where() -> None:
    plain = Record(b"x", 2, 3, 10)
    assert plain.unfiltered == b"x"
    assert plain.where() == "line 3 (record 2, offset 10)"
    assert Record(b"x", 0, 1, 0, original=b"id,x").unfiltered == b"id,x"


# --- gzip -----------------------------------------------------------------------------------------------------


def gunzip(data: bytes, **kwargs: object) -> bytes:
    return open_decompressed(io.BytesIO(data), "Gzip", **kwargs).read()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "payload",
    [b"", b"a\nb\n", "ünïcode\n".encode() * 1000, bytes(range(256)) * 4096],
)
def test_gzip_round_trip(payload: bytes) -> None:
    assert gunzip(gzip.compress(payload)) == payload


def test_gzip_multi_member_and_zero_padding() -> None:
    data = gzip.compress(b"one\n") + gzip.compress(b"two\n")
    assert gunzip(data) == b"one\ntwo\n"
    assert gunzip(data + b"\x00" * 100) == b"one\ntwo\n"


def test_gzip_empty_source_is_an_empty_object() -> None:
    assert gunzip(b"") == b""


def test_compression_none_returns_the_stream() -> None:
    stream = io.BytesIO(b"raw")
    assert open_decompressed(stream, "None") is stream
    assert open_decompressed(stream, None) is stream


def test_unknown_compression() -> None:
    with pytest.raises(ValidationError, match="CompressionType"):
        open_decompressed(io.BytesIO(b""), "Zip")


PAYLOAD = b"".join(b"line %d with some text\n" % i for i in range(5000))


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        pytest.param(
            lambda d: d[: len(d) // 2],
            r"truncated gzip stream: it ends at compressed offset \d+",
            id="truncated",
        ),
        pytest.param(lambda d: d[:-1], "truncated", id="trailer cut"),
        pytest.param(
            lambda d: _flip(d, len(d) - 6), "corrupt gzip data near compressed offset", id="crc flipped"
        ),
        pytest.param(lambda d: _flip(d, len(d) - 2), "corrupt gzip data.*length", id="size flipped"),
        pytest.param(lambda d: b"PK" + d[2:], "corrupt gzip data near compressed offset 0", id="bad magic"),
        pytest.param(lambda d: d + b"garbage", "unexpected data after a gzip member", id="trailing garbage"),
        pytest.param(
            lambda d: d + b"\x00\x00x", "unexpected data after a gzip member", id="garbage after padding"
        ),
    ],
)
def test_gzip_errors(mutate: object, match: str) -> None:
    data = mutate(gzip.compress(PAYLOAD))  # type: ignore[operator]
    with pytest.raises(BadInput, match=match):
        gunzip(data)


def test_gzip_corrupt_deflate_data_names_an_offset() -> None:
    data = bytearray(gzip.compress(PAYLOAD))
    for position in range(40, 60):
        data[position] ^= 0xFF
    with pytest.raises(BadInput, match=r"corrupt gzip data near compressed offset \d+"):
        gunzip(bytes(data))


def test_gzip_decompressed_size_cap() -> None:
    with pytest.raises(PayloadTooLarge, match="more than 1000 bytes"):
        gunzip(gzip.compress(b"x" * 5000), max_bytes=1000)


@pytest.mark.slow
def test_gzip_ratio_cap_stops_a_bomb_early() -> None:
    bomb = zlib.compressobj(9, zlib.DEFLATED, 31)
    data = bomb.compress(b"\x00" * (50 << 20)) + bomb.flush()  # ~50 KB that expands to 50 MB
    source = CountingStream(data)
    reader = open_decompressed(source, "Gzip", max_ratio=100, ratio_floor=1 << 20)  # type: ignore[arg-type]
    produced = 0
    with pytest.raises(PayloadTooLarge, match="expands more than 100x"):
        while chunk := reader.read(1 << 16):
            produced += len(chunk)
    assert produced <= 100 * len(data) + (1 << 16)  # stopped at the ratio, not after 50 MB


def test_gzip_ratio_cap_ignores_small_regular_files() -> None:
    assert gunzip(gzip.compress(b"\x00" * 100_000), max_ratio=2, ratio_floor=1 << 20) == b"\x00" * 100_000


def test_gzip_is_streamed() -> None:
    data = gzip.compress(PAYLOAD * 20)
    source = CountingStream(data)
    stream = open_decompressed(source, "Gzip")  # type: ignore[arg-type]
    first = next(iter_records(stream, "Line"))
    assert first.data == b"line 0 with some text"
    assert source.bytes_read < len(data)


@pytest.mark.parametrize("split_type", ["Line", "RecordIO", "TFRecord"])
def test_split_after_gzip(split_type: str) -> None:
    payloads = [b"r%d" % i for i in range(100)]
    raw = b"".join(frame(p, split_type) for p in payloads)
    stream = open_decompressed(io.BytesIO(gzip.compress(raw)), "Gzip")
    assert [r.data for r in iter_records(stream, split_type)] == payloads
