"""Streaming record splitters (``SplitType`` None, Line, RecordIO, TFRecord), their wire framing, and gzip input.

Everything here reads a binary stream incrementally (``stream.read(n)`` only); no splitter holds more than one
record plus one read chunk in memory. Records carry their position so errors can name ``file:line`` and the byte
offset (docs/reliability.md rows 1, 3, 5, 6).

Rules, per split type (docs/transform.md):

* ``None``: the whole object is one record. An empty object yields **no** record (nothing is sent; the runner
  writes an empty ``.out``), where the SDK's local mode would send an empty payload.
* ``Line``: split on ``\\n``; a ``\\r`` right before it is removed too (``\\r\\n`` files). A lone ``\\r`` is data,
  not a terminator. The last line is a record even without a final newline; a final newline does not start an
  empty record. **Blank lines are records** (``data == b""``), as SageMaker sends them and SDK local mode does;
  pass ``skip_blank_lines=True`` to drop them (they still count for ``line`` numbers). Whitespace-only lines are
  never blank. Bytes are never decoded here, so non-UTF-8 bytes pass through untouched.
* ``RecordIO`` (MXNet framing): uint32 LE magic ``0xCED7230A``, uint32 LE length word (lower 29 bits are the
  length; the 3 continuation-flag bits are ignored as the SDK does, so each part is its own record), the data,
  zero padding to a multiple of 4. Bad magic or a truncated header/data/padding raises ``BadInput`` with the offset.
* ``TFRecord``: uint64 LE length, masked CRC32C of those 8 bytes, data, masked CRC32C of the data. Both checksums
  are verified; a mismatch or truncation raises ``BadInput`` with the record number and offset.

``Record.line`` is the 1-based physical line for ``Line`` and the 1-based record ordinal for the other types, so
``file:line`` is always meaningful; ``offset`` is the byte offset of the record (its framing, for RecordIO/TFRecord)
in the *decompressed* stream.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from batchlane.aws_names import SPLIT_TYPES, CompressionType, SplitType
from batchlane.errors import BadInput, PayloadTooLarge, ValidationError

CHUNK_SIZE = 1 << 16

RECORDIO_MAGIC = 0xCED7230A
_RECORDIO_LENGTH_MASK = (1 << 29) - 1

# Decompression-bomb guard defaults (docs/reliability.md). Deflate cannot exceed ~1032:1, so a ratio cap only
# catches near-pathological input; ordinary CSV/JSON compresses 5-50x. The ratio is only checked once this much
# has been produced, so small, very regular files are fine.
DEFAULT_MAX_DECOMPRESSED_BYTES = 32 << 30
DEFAULT_MAX_RATIO = 500.0
DEFAULT_RATIO_FLOOR_BYTES = 64 << 20


@dataclass(frozen=True, slots=True)
class Record:
    """One record of an input object.

    ``data`` is the record without its terminator or framing. ``index`` is 0-based within the object; ``line`` is
    1-based (see the module docstring); ``offset`` is the byte offset in the decompressed object. ``original`` is
    set by ``DataProcessor.filter_record`` to the bytes before ``InputFilter`` (joins use it); ``None`` otherwise.
    """

    data: bytes
    index: int
    line: int
    offset: int
    original: bytes | None = None

    @property
    def unfiltered(self) -> bytes:
        """The record as read from the input, before any InputFilter."""
        return self.data if self.original is None else self.original

    def where(self) -> str:
        """``"line 3 (record 2, offset 17)"``, for error messages."""
        return f"line {self.line} (record {self.index}, offset {self.offset})"


def normalize_split_type(split_type: SplitType | str | None) -> SplitType:
    """``None``/``"None"``/``"Line"``/``"RecordIO"``/``"TFRecord"`` → ``SplitType``; ``ValidationError`` otherwise.

    For callers holding an unchecked string; ``EffectiveParams.split_type`` is a ``SplitType`` already.
    """
    if split_type is None:
        return SplitType.NONE
    if isinstance(split_type, SplitType):
        return split_type
    if split_type not in SPLIT_TYPES:
        raise ValidationError(
            f"Invalid SplitType {split_type!r}: must be one of {', '.join(SPLIT_TYPES)}",
            field="TransformInput.SplitType",
        )
    return SplitType(split_type)


def iter_records(
    stream: BinaryIO,
    split_type: SplitType | str | None,
    *,
    max_record_bytes: int | None = None,
    skip_blank_lines: bool = False,
    chunk_size: int = CHUNK_SIZE,
) -> Iterator[Record]:
    """Yield the records of ``stream`` (already decompressed) for ``split_type``.

    ``max_record_bytes`` (``None``/0 = no limit) is checked while reading, before a giant record is buffered:
    ``PayloadTooLarge`` names the record. Pass the payload limit here; a record larger than it fails anyway.
    Framing errors raise ``BadInput`` naming the offset.
    """
    kind = normalize_split_type(split_type)
    limit = max_record_bytes or None
    if kind is SplitType.NONE:
        return _whole(stream, limit, chunk_size)
    if kind is SplitType.LINE:
        return _lines(stream, limit, skip_blank_lines, chunk_size)
    if kind is SplitType.RECORDIO:
        return _recordio(stream, limit)
    return _tfrecord(stream, limit)


def _too_large(what: str, size: int | str, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"{what} is {size} bytes, larger than the limit of {limit} bytes (MaxPayloadInMB)")


def _whole(stream: BinaryIO, limit: int | None, chunk_size: int) -> Iterator[Record]:
    parts: list[bytes] = []
    size = 0
    while chunk := stream.read(chunk_size):
        size += len(chunk)
        if limit is not None and size > limit:
            raise _too_large("the object (SplitType None: one record)", f"more than {limit}", limit)
        parts.append(chunk)
    if size:
        yield Record(b"".join(parts), 0, 1, 0)


def _lines(stream: BinaryIO, limit: int | None, skip_blank: bool, chunk_size: int) -> Iterator[Record]:
    pending = bytearray()  # a line that spans chunks
    pending_offset = 0
    position = 0  # stream offset of the current chunk
    line = 0
    index = 0

    def check(size: int, offset: int, partial: bool) -> None:
        if limit is not None and size > limit:
            what = f"line {line + 1} (record {index}, offset {offset})"
            raise _too_large(what, f"more than {limit}" if partial else size, limit)

    while chunk := stream.read(chunk_size):
        start = 0
        while (newline := chunk.find(b"\n", start)) >= 0:
            if pending:
                pending += chunk[start:newline]
                data, offset = bytes(pending), pending_offset
                pending.clear()
            else:
                data, offset = chunk[start:newline], position + start
            if data.endswith(b"\r"):
                data = data[:-1]
            check(len(data), offset, partial=False)
            line += 1
            if data or not skip_blank:
                yield Record(data, index, line, offset)
                index += 1
            start = newline + 1
        if start < len(chunk):
            if not pending:
                pending_offset = position + start
            pending += chunk[start:]
            check(len(pending), pending_offset, partial=True)
        position += len(chunk)
    if pending:
        line += 1
        yield Record(bytes(pending), index, line, pending_offset)


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes: fewer only at end of stream."""
    parts: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = stream.read(min(remaining, 1 << 20))
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def _recordio(stream: BinaryIO, limit: int | None) -> Iterator[Record]:
    offset = 0
    index = 0
    while header := _read_exact(stream, 8):
        if len(header) < 8:
            raise BadInput(f"truncated RecordIO header at offset {offset}: {len(header)} of 8 bytes")
        magic, word = struct.unpack("<II", header)
        if magic != RECORDIO_MAGIC:
            raise BadInput(
                f"bad RecordIO magic 0x{magic:08X} at offset {offset} (record {index}); expected 0x{RECORDIO_MAGIC:08X}"
            )
        length = word & _RECORDIO_LENGTH_MASK
        if limit is not None and length > limit:
            raise _too_large(f"RecordIO record {index} (offset {offset})", length, limit)
        data = _read_exact(stream, length)
        padding = (-length) % 4
        if len(data) < length or len(_read_exact(stream, padding)) < padding:
            raise BadInput(f"truncated RecordIO record {index} at offset {offset}: the stream ends inside it")
        yield Record(data, index, index + 1, offset)
        offset += 8 + length + padding
        index += 1


def _tfrecord(stream: BinaryIO, limit: int | None) -> Iterator[Record]:
    offset = 0
    index = 0
    while header := _read_exact(stream, 12):
        if len(header) < 12:
            raise BadInput(f"truncated TFRecord header at offset {offset}: {len(header)} of 12 bytes")
        (length,) = struct.unpack("<Q", header[:8])
        (length_crc,) = struct.unpack("<I", header[8:])
        if masked_crc32c(header[:8]) != length_crc:
            raise BadInput(
                f"TFRecord record {index} at offset {offset}: length checksum mismatch (corrupt framing)"
            )
        if limit is not None and length > limit:
            raise _too_large(f"TFRecord record {index} (offset {offset})", length, limit)
        data = _read_exact(stream, length)
        footer = _read_exact(stream, 4)
        if len(data) < length or len(footer) < 4:
            raise BadInput(f"truncated TFRecord record {index} at offset {offset}: the stream ends inside it")
        if masked_crc32c(data) != struct.unpack("<I", footer)[0]:
            raise BadInput(f"TFRecord record {index} at offset {offset}: data checksum mismatch")
        yield Record(data, index, index + 1, offset)
        offset += 16 + length
        index += 1


def frame(record: Record | bytes, split_type: SplitType) -> bytes:
    """The record as it travels framed: ``Line`` → data + ``\\n``; RecordIO/TFRecord → re-framed (flags cleared);
    ``None`` → the data. This is the MultiRecord wire form (docs/transform.md: framing kept under MultiRecord).

    ``split_type`` is trusted (a ``SplitType``, or its value): this runs once per record, so it is not re-checked."""
    data = record.data if isinstance(record, Record) else record
    if split_type == SplitType.LINE:
        return data + b"\n"
    if split_type == SplitType.RECORDIO:
        if len(data) > _RECORDIO_LENGTH_MASK:
            raise PayloadTooLarge(
                f"a RecordIO record holds at most {_RECORDIO_LENGTH_MASK} bytes, got {len(data)}"
            )
        return struct.pack("<II", RECORDIO_MAGIC, len(data)) + data + b"\x00" * ((-len(data)) % 4)
    if split_type == SplitType.TFRECORD:
        length = struct.pack("<Q", len(data))
        return (
            length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))
        )
    return data


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C (Castagnoli), pure Python. ``crc32c(b"123456789") == 0xE3069283``."""
    table = _CRC32C_TABLE
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC: ``((crc >> 15) | (crc << 17)) + 0xa282ead8`` modulo 2**32."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class GzipReader(io.RawIOBase):
    """Streaming gzip decompression of ``source`` (multi-member files included) with a decompression-bomb guard.

    Use ``open_decompressed`` rather than this class. Corrupt data raises ``BadInput`` naming the compressed offset
    where it was detected; a stream that ends inside a member raises ``BadInput`` saying "truncated"; data after the
    last member must be another member or zero padding. An empty source is an empty object. Exceeding
    ``max_bytes`` decompressed, or ``max_ratio`` × compressed bytes read once ``ratio_floor`` bytes have been
    produced, raises ``PayloadTooLarge``.
    """

    def __init__(
        self,
        source: BinaryIO,
        *,
        max_bytes: int | None = DEFAULT_MAX_DECOMPRESSED_BYTES,
        max_ratio: float | None = DEFAULT_MAX_RATIO,
        ratio_floor: int = DEFAULT_RATIO_FLOOR_BYTES,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        super().__init__()
        self._source = source
        self._max_bytes = max_bytes
        self._max_ratio = max_ratio
        self._ratio_floor = ratio_floor
        self._chunk_size = chunk_size
        self._decompressor = zlib.decompressobj(wbits=31)
        self._feed = b""
        self._read_in = 0  # compressed bytes read from the source
        self._consumed = 0  # compressed bytes the decompressors have used
        self._produced = 0
        self._started = False
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._next(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _pull(self) -> bytes:
        chunk = self._source.read(self._chunk_size) or b""
        self._read_in += len(chunk)
        return chunk

    def _next(self, size: int) -> bytes:
        while not self._done:
            if self._decompressor.eof:
                self._next_member()
                continue
            at_end = False
            if not self._feed:
                self._feed = self._pull()
                if not self._feed:
                    if not self._started:
                        self._done = True  # an empty object is an empty (not a corrupt) input
                        break
                    at_end = True
            self._started = True
            feed = self._feed
            try:
                # An empty feed still flushes output zlib holds back because of max_length.
                out = self._decompressor.decompress(feed, max(size, 1))
            except zlib.error as exc:
                raise BadInput(f"corrupt gzip data near compressed offset {self._consumed}: {exc}") from None
            decompressor = self._decompressor
            self._feed = decompressor.unused_data if decompressor.eof else decompressor.unconsumed_tail
            self._consumed += len(feed) - len(self._feed)
            if out:
                self._account(len(out))
                return out
            if at_end and not decompressor.eof:
                raise BadInput(
                    f"truncated gzip stream: it ends at compressed offset {self._read_in} inside a member"
                )
        return b""

    def _next_member(self) -> None:
        rest = self._feed or self._pull()
        self._feed = b""
        if not rest:
            self._done = True
            return
        if rest[0] == 0:
            # Zero padding after the last member (block padding; gzip(1) accepts it too).
            while rest:
                if rest.strip(b"\x00"):
                    raise BadInput(
                        f"unexpected data after a gzip member at compressed offset {self._consumed}"
                    )
                rest = self._pull()
            self._done = True
            return
        if len(rest) >= 2 and rest[:2] != b"\x1f\x8b":
            raise BadInput(f"unexpected data after a gzip member at compressed offset {self._consumed}")
        self._decompressor = zlib.decompressobj(wbits=31)
        self._feed = rest

    def _account(self, produced: int) -> None:
        self._produced += produced
        if self._max_bytes is not None and self._produced > self._max_bytes:
            raise PayloadTooLarge(
                f"gzip object decompresses to more than {self._max_bytes} bytes (decompression limit)"
            )
        if (
            self._max_ratio is not None
            and self._produced > self._ratio_floor
            and self._produced > self._max_ratio * max(self._read_in, 1)
        ):
            raise PayloadTooLarge(
                f"gzip object expands more than {self._max_ratio:g}x ({self._read_in} compressed bytes gave "
                f"{self._produced}); refusing a likely decompression bomb"
            )


def open_decompressed(
    stream: BinaryIO,
    compression: CompressionType | str | None,
    *,
    max_bytes: int | None = DEFAULT_MAX_DECOMPRESSED_BYTES,
    max_ratio: float | None = DEFAULT_MAX_RATIO,
    ratio_floor: int = DEFAULT_RATIO_FLOOR_BYTES,
) -> BinaryIO:
    """``stream`` itself for ``CompressionType`` None; a streaming, buffered gzip reader for ``"Gzip"``.

    Errors surface while reading (see ``GzipReader``); they are per-file failures, never retried. Closing the
    returned reader does not close ``stream``; the caller owns it.
    """
    if compression in (None, CompressionType.NONE):
        return stream
    if compression != CompressionType.GZIP:
        raise ValidationError(
            f"Invalid CompressionType {compression!r}: must be None or Gzip",
            field="TransformInput.CompressionType",
        )
    raw = GzipReader(stream, max_bytes=max_bytes, max_ratio=max_ratio, ratio_floor=ratio_floor)
    return io.BufferedReader(raw, buffer_size=CHUNK_SIZE)  # type: ignore[return-value]
