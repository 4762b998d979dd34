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
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from batchlane import settings
from batchlane.aws_names import CompressionType, SplitType, canonical_job_name
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
    from batchlane.transform.file_transform import mini_batches

    processor = processor or DataProcessor.from_params(params, options)
    isolate = options.on_record_error != "fail"
    cuts: list[tuple[int, int, int]] = [(0, 0, 1)]
    try:
        with in_store.open(key) as stream:
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
                # Part 0 keeps the lines a CSV header sniff looks at (csv_header.SAMPLE_LINES), so a header hint
                # is decided as in the unsplit run.
                if record.offset - cuts[-1][0] >= budget and record.index >= SAMPLE_LINES:
                    cuts.append((record.offset, record.index, record.line))
    except BatchlaneError:
        return [Part.whole_object()]
    if len(cuts) == 1:
        return [Part.whole_object()]
    ends = [cut[0] for cut in cuts[1:]] + [size]
    return [
        Part(number, len(cuts), start, end, index, line)
        for number, ((start, index, line), end) in enumerate(zip(cuts, ends, strict=True))
    ]


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
