"""Parts: the work unit of a transform job (docs/parts.md). A part is a whole input object, or a byte range of a
large uncompressed ``SplitType=Line``/``RecordIO``/``TFRecord`` object.

``plan_parts`` streams the object once through the same record splitter, CSV header handling, InputFilter and
mini-batch packer as ``FileTransform`` (no inference) and cuts at the first mini-batch start past each byte budget.
So every part starts where a mini-batch of the whole-file run starts, the model sees exactly the payloads it would
see unsplit, and the parts' outputs concatenated in order are byte for byte the unsplit ``.out``. Gzip objects,
``SplitType=None`` objects, objects at or under the budget and objects whose records cannot be read (the whole-file
run reports the error) are one whole part.

A part's output is staged as its own object (``staging_key``) until every part of the file is committed; then
``part_assembly.assemble`` concatenates them into ``<key>.out``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import BinaryIO

from batchlane import settings
from batchlane.aws_names import BatchStrategy, CompressionType, SplitType, canonical_job_name
from batchlane.errors import BatchlaneError
from batchlane.storage.base import ObjectStore
from batchlane.transform.csv_header import SAMPLE_LINES
from batchlane.transform.dataprocessing import DataProcessor
from batchlane.transform.options import JobOptions
from batchlane.transform.params import EffectiveParams
from batchlane.transform.split import iter_records

DEFAULT_PART_SIZE = 64 << 20
SPLITTABLE = (SplitType.LINE, SplitType.RECORDIO, SplitType.TFRECORD)
STAGING_FOLDER = ".batchlane-parts"
# How often (in mini-batches) the planner calls its ``check`` callback (a stop request aborts planning).
CHECK_EVERY = 256
SCAN_CHUNK = 1 << 20


@dataclass(frozen=True)
class Part:
    """Part ``number`` (0-based) of ``count`` of one input object: bytes ``start`` to ``end`` (exclusive; None =
    the whole object, decompressed if it is gzip) whose first record is record ``first_index`` (0-based) on line
    ``first_line`` (1-based; the record ordinal for RecordIO/TFRecord) of the whole object. Picklable."""

    number: int
    count: int
    start: int
    end: int | None
    first_index: int
    first_line: int

    @property
    def whole(self) -> bool:
        return self.end is None

    @property
    def first(self) -> bool:
        return self.number == 0

    @classmethod
    def whole_object(cls) -> Part:
        return cls(0, 1, 0, None, 0, 1)

    @classmethod
    def of(cls, stored: object) -> Part:
        """A ``Part`` from anything with the same fields (a ``jobs.parts.PartCheckpoint``)."""
        return cls(*(getattr(stored, name) for name in cls.__dataclass_fields__))


def part_size(options: JobOptions, env: Mapping[str, str] | None = None) -> int:
    """The job's part budget in bytes: its ``part_size`` option, else ``BATCHLANE_PART_SIZE``, else 64 MiB."""
    return options.part_size or settings.part_size(env) or DEFAULT_PART_SIZE


def splittable(params: EffectiveParams) -> bool:
    """Whether objects of this job may be cut into byte ranges (uncompressed Line/RecordIO/TFRecord)."""
    return params.compression_type == CompressionType.NONE and params.split_type in SPLITTABLE


def plan_parts(
    in_store: ObjectStore,
    key: str,
    size: int,
    params: EffectiveParams,
    options: JobOptions,
    *,
    budget: int,
    processor: DataProcessor | None = None,
    check: Callable[[], None] | None = None,
) -> list[Part]:
    """The parts of object ``key`` (``size`` bytes, as planned) under a byte ``budget``. Streams the object once;
    holds one mini-batch at a time. ``check`` is called now and then (it may raise to abandon planning)."""
    if not splittable(params) or size <= budget:
        return [Part.whole_object()]
    if params.batch_strategy == BatchStrategy.MULTI_RECORD and params.max_payload_bytes is None:
        # MultiRecord without a payload limit: the whole object is one mini-batch.
        return [Part.whole_object()]
    try:
        with in_store.open(key) as stream:
            processor = processor or DataProcessor.from_params(params, options)
            cuts = _cuts(stream, size, params, options, processor, budget, check)
    except BatchlaneError:
        return [Part.whole_object()]
    if cuts is None:
        return [Part.whole_object()]
    if len(cuts) == 1:
        return [Part.whole_object()]
    ends = [cut[0] for cut in cuts[1:]] + [size]
    return [
        Part(number, len(cuts), start, end, index, line)
        for number, ((start, index, line), end) in enumerate(zip(cuts, ends, strict=True))
    ]


Cut = tuple[int, int, int]  # (byte offset, record index, line) of a part's first record


def _cuts(
    stream: BinaryIO,
    size: int,
    params: EffectiveParams,
    options: JobOptions,
    processor: DataProcessor,
    budget: int,
    check: Callable[[], None] | None,
) -> list[Cut] | None:
    """The part starts by the fastest exact way for the job's settings; None = one whole part."""
    if params.split_type == SplitType.LINE and params.batch_strategy == BatchStrategy.SINGLE_RECORD:
        return line_cuts(stream, size, budget, check)
    limit = params.max_payload_bytes
    if (
        params.split_type == SplitType.LINE
        and limit is not None
        and not processor.filters_input
        and options.csv_header != "repeat"
    ):
        isolate = options.on_record_error != "fail"
        return packed_line_cuts(
            stream, limit, budget, skip_first=options.csv_header == "skip", isolate=isolate, check=check
        )
    return batch_cuts(stream, params, options, processor, budget, check)


def batch_cuts(
    stream: BinaryIO,
    params: EffectiveParams,
    options: JobOptions,
    processor: DataProcessor,
    budget: int,
    check: Callable[[], None] | None = None,
) -> list[Cut]:
    """The part starts of ``stream``: the first mini-batch start (``file_transform.mini_batches``, the very
    batching of the transform) at least ``budget`` bytes past the previous part's start."""
    from batchlane.transform.file_transform import mini_batches

    isolate = options.on_record_error != "fail"
    cuts: list[Cut] = [(0, 0, 1)]
    records = iter_records(
        stream, params.split_type, max_record_bytes=None if isolate else params.max_payload_bytes
    )
    header = None
    if options.csv_header != "none":
        first = next(records, None)
        if first is not None and options.csv_header == "repeat":
            header = processor.filter_header(first.data)
    for number, batch in enumerate(mini_batches(records, header, params, processor, isolate)):
        if check is not None and number % CHECK_EVERY == 0:
            check()
        record = batch.records[0]
        # Part 0 keeps the lines a CSV header sniff looks at (csv_header.SAMPLE_LINES), so a header hint is
        # decided as in the unsplit run.
        if record.offset - cuts[-1][0] >= budget and record.index >= SAMPLE_LINES:
            cuts.append((record.offset, record.index, record.line))
    return cuts


def line_cuts(stream: BinaryIO, size: int, budget: int, check: Callable[[], None] | None = None) -> list[Cut]:
    """``batch_cuts`` for ``SplitType=Line`` under ``SingleRecord``, where every line is its own mini-batch
    (an InputFilter, a CSV header or an error batch cannot merge two lines): the first line start at least
    ``budget`` bytes past the previous cut, found by scanning for newlines at C speed, not record by record."""
    cuts: list[Cut] = [(0, 0, 1)]
    position = 0  # offset of ``chunk`` in the stream
    newlines = 0  # newlines before ``chunk``
    threshold = budget  # the next cut is the first line start at or after this offset
    while chunk := stream.read(SCAN_CHUNK):
        if check is not None:
            check()
        search = max(threshold - 1 - position, 0)
        while (found := chunk.find(b"\n", search)) >= 0:
            start = position + found + 1
            index = newlines + chunk.count(b"\n", 0, found + 1)
            if start >= size:
                break
            if index < SAMPLE_LINES:
                search = found + 1
                continue
            cuts.append((start, index, index + 1))
            threshold = start + budget
            search = max(threshold - 1 - position, found + 1)
        newlines += chunk.count(b"\n")
        position += len(chunk)
    return cuts


def _line_lengths(stream: BinaryIO) -> Iterator[tuple[int, int]]:
    """``(offset, length)`` of each line's record data (``split._lines``: a ``\\r`` before the ``\\n`` is not
    data; a last line without ``\\n`` keeps its ``\\r``), without building the records."""
    position = 0
    carry_start = -1  # offset of a line that spans chunks
    carry_length = 0
    carry_cr = False
    while chunk := stream.read(SCAN_CHUNK):
        start = 0
        while (newline := chunk.find(b"\n", start)) >= 0:
            cr = chunk[newline - 1] == 13 if newline > start else (carry_start >= 0 and carry_cr)
            if carry_start >= 0:
                yield carry_start, carry_length + newline - start - cr
                carry_start = -1
            else:
                yield position + start, newline - start - cr
            start = newline + 1
        if start < len(chunk):
            if carry_start < 0:
                carry_start, carry_length = position + start, 0
            carry_length += len(chunk) - start
            carry_cr = chunk[-1] == 13
        position += len(chunk)
    if carry_start >= 0:
        yield carry_start, carry_length


def packed_line_cuts(
    stream: BinaryIO,
    limit: int,
    budget: int,
    *,
    skip_first: bool,
    isolate: bool,
    check: Callable[[], None] | None = None,
) -> list[Cut] | None:
    """``batch_cuts`` for ``SplitType=Line`` under ``MultiRecord`` with a payload limit and no InputFilter: the
    greedy packing of ``plan.pack`` replayed on line lengths alone (a line's payload is its data plus ``\\n``).
    ``skip_first``: line 1 is a CSV header that is not sent. None when a line cannot fit and errors are not
    isolated (the transform fails that file; planning it as one part reports it as unsplit)."""
    cuts: list[Cut] = [(0, 0, 1)]
    size = 0
    open_batch = False
    for index, (offset, length) in enumerate(_line_lengths(stream)):
        if check is not None and index % (CHECK_EVERY * 256) == 0:
            check()
        if skip_first and index == 0:
            continue
        piece = length + 1
        if piece > limit:  # an error batch of its own; the next line starts a new batch
            if not isolate:
                return None
            open_batch = False
        elif open_batch and size + piece <= limit:
            size += piece
            continue
        else:
            open_batch, size = True, piece
        if offset - cuts[-1][0] >= budget and index >= SAMPLE_LINES:
            cuts.append((offset, index, index + 1))
    return cuts


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def staging_prefix(output_key: str, job: str) -> str:
    """The folder under which the part objects of ``output_key`` are staged: beside the ``.out``, in a hidden
    ``.batchlane-parts/<job>/`` folder, named by a digest of the output key (any key length fits)."""
    folder = output_key[: output_key.rfind("/") + 1]
    return f"{folder}{STAGING_FOLDER}/{canonical_job_name(job)}/{_digest(output_key)}"


def staging_key(output_key: str, job: str, number: int) -> str:
    """The staged output object of part ``number`` of the file whose output is ``output_key``."""
    return f"{staging_prefix(output_key, job)}-{number:05d}.part"


def consolidated_staging_key(output_key: str, job: str, number: int) -> str:
    """The staged consolidated results (``JobOptions.consolidate``) of part ``number`` of that file."""
    return f"{staging_prefix(output_key, job)}-{number:05d}.jsonl"
