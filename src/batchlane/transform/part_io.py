"""Reading one part of an input object: its byte range (a ranged GET where the store has one, else a seek or a
skip), its records renumbered as in the whole object, and the object's first line (the CSV header a later part
repeats). Writing a file's consolidated results atomically to a local path."""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from batchlane.storage.base import ObjectStore
from batchlane.transform.parts import Part
from batchlane.transform.split import Record, iter_records, open_decompressed


class RangeReader(io.RawIOBase):
    """At most ``size`` bytes of ``stream`` from where it stands; closing it closes ``stream``."""

    def __init__(self, stream: BinaryIO, size: int) -> None:
        super().__init__()
        self._stream = stream
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._left <= 0:
            return 0
        data = self._stream.read(min(len(buffer), self._left))
        buffer[: len(data)] = data
        self._left -= len(data)
        return len(data)

    def close(self) -> None:
        with suppress(Exception):
            self._stream.close()
        super().close()


def open_range(store: ObjectStore, key: str, start: int, end: int) -> BinaryIO:
    """A reader of bytes ``start`` to ``end`` (exclusive) of object ``key``. Uses the store's own
    ``open_range`` when it has one (S3: a ranged GET), else seeks (local files) or skips."""
    ranged = getattr(store, "open_range", None)
    if ranged is not None:
        return ranged(key, start, end)
    stream = store.open(key)
    if start:
        if stream.seekable():
            stream.seek(start)
        else:
            left = start
            while left > 0 and (chunk := stream.read(min(left, 1 << 20))):
                left -= len(chunk)
    return io.BufferedReader(RangeReader(stream, end - start), buffer_size=1 << 16)  # type: ignore[return-value]


@contextmanager
def open_part(store: ObjectStore, key: str, part: Part, compression: str | None) -> Iterator[BinaryIO]:
    """The bytes of ``part`` of object ``key``, decompressed for a whole gzip object (ranged parts are never
    compressed)."""
    if part.whole:
        with store.open(key) as raw:
            yield open_decompressed(raw, compression)
        return
    assert part.end is not None
    with open_range(store, key, part.start, part.end) as raw:
        yield raw


def shifted(records: Iterator[Record], part: Part) -> Iterator[Record]:
    """``records`` read from ``part``'s first byte, numbered as in the whole object (index, line, offset)."""
    if part.whole:
        yield from records
        return
    for record in records:
        yield Record(
            record.data,
            record.index + part.first_index,
            record.line + part.first_line - 1,
            record.offset + part.start,
            record.original,
        )


def first_record(store: ObjectStore, key: str, split_type: str) -> bytes | None:
    """The first record of an uncompressed object (a later part's CSV header), or None for an empty one."""
    with store.open(key) as stream:
        record = next(iter_records(stream, split_type), None)
    return None if record is None else record.data


@contextmanager
def local_atomic(path: Path) -> Iterator[BinaryIO]:
    """A temp file beside ``path`` that replaces it when the block exits cleanly (and is removed otherwise)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp")  # noqa: SIM115
    try:
        with temp:
            yield temp  # type: ignore[misc]
        os.replace(temp.name, path)
    finally:
        with suppress(FileNotFoundError):
            os.unlink(temp.name)
