"""Pure planners: mini-batch packing, the job plan (input objects → output keys), and prefix-overlap warnings.
No I/O.

Packing (docs/transform.md):

* ``SingleRecord``: one record per payload. ``Line`` sends ``data + b"\\n"``; RecordIO/TFRecord framing is
  **removed** (the container gets the bare record bytes).
* ``MultiRecord``: as many whole records as fit, in order, measured as the byte length of their wire form
  (``split.frame``: Line adds ``\\n``, RecordIO/TFRecord framing is **kept**). A payload may be exactly the limit.
* ``SplitType=None``: each record (the whole object) is one payload, whatever the strategy.
* ``max_payload_bytes`` ``None``/0 = unlimited. A record whose wire form (plus the repeated header) exceeds the
  limit raises ``PayloadTooLarge`` naming the record, its size and the limit; an empty payload is never produced.
  Unlike the SDK's local mode we measure bytes, not ``sys.getsizeof``, and check every record.
* ``header`` (``JobOptions.csv_header="repeat"``): the header line is prepended to every payload, counts toward the
  limit, and is not one of ``MiniBatch.records``.

Output keys (docs/transform.md): output key = output prefix as a folder (a ``/`` is added unless it is
empty or already ends with one) + the input key relative to the input prefix's last ``/`` + ``.out``. Sub-folders
are kept; ``s3://b/in/part`` over ``in/part-1.csv`` and ``in/partx/a.csv`` gives ``<out>/part-1.csv.out`` and
``<out>/partx/a.csv.out``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from batchlane.aws_names import BatchStrategy, SplitType
from batchlane.errors import PayloadTooLarge, ValidationError
from batchlane.storage.uri import prefix_relation
from batchlane.transform.params import normalize_batch_strategy
from batchlane.transform.split import Record, frame, normalize_split_type


@dataclass(frozen=True)
class MiniBatch:
    """One ``/invocations`` payload: the records it carries, in order, and the exact body bytes.

    ``error`` is set only by ``pack(..., oversize="isolate")`` for a record that cannot fit: then ``records`` is
    that one record, ``body`` is empty, and the batch must not be sent (write an error row or skip it).
    """

    records: tuple[Record, ...]
    body: bytes
    error: PayloadTooLarge | None = None

    @property
    def first(self) -> Record:
        return self.records[0]

    def where(self) -> str:
        """``"lines 3-9"`` / ``"line 3"``, for log and error messages."""
        first, last = self.records[0].line, self.records[-1].line
        return f"line {first}" if first == last else f"lines {first}-{last}"


def wire(record: Record, split_type: SplitType, strategy: BatchStrategy) -> bytes:
    """The bytes a record contributes to a payload under ``strategy`` (see the module docstring). Runs once per
    record, so its typed arguments are trusted, not re-checked."""
    if strategy == BatchStrategy.SINGLE_RECORD and split_type in (SplitType.RECORDIO, SplitType.TFRECORD):
        return record.data
    return frame(record, split_type)


def pack(
    records: Iterable[Record],
    *,
    split_type: SplitType | str | None,
    strategy: BatchStrategy | str,
    max_payload_bytes: int | None,
    header: bytes | None = None,
    oversize: Literal["raise", "isolate"] = "raise",
) -> Iterator[MiniBatch]:
    """Group ``records`` into payloads (lazily: one payload is buffered at a time).

    ``split_type`` and ``strategy`` are ``EffectiveParams``' enums; strings (either strategy spelling) are
    checked here once, not per record. ``header`` needs ``SplitType=Line``.
    A record that cannot fit first flushes the payload being built (so every earlier record is emitted), then
    raises ``PayloadTooLarge`` (``error.record`` is the record) or, with ``oversize="isolate"``, yields a
    ``MiniBatch`` with ``error`` set and continues.
    """
    kind = normalize_split_type(split_type)
    strategy = strategy if isinstance(strategy, BatchStrategy) else normalize_batch_strategy(strategy)
    multi = strategy is BatchStrategy.MULTI_RECORD and kind is not SplitType.NONE
    limit = max_payload_bytes or None
    if header is not None and kind is not SplitType.LINE:
        raise ValidationError("a repeated CSV header needs SplitType=Line", field="csv_header")
    head = frame(header, SplitType.LINE) if header is not None else b""
    batch: list[Record] = []
    parts: list[bytes] = []
    size = len(head)

    def flush() -> MiniBatch:
        nonlocal size
        out = MiniBatch(tuple(batch), head + b"".join(parts))
        batch.clear()
        parts.clear()
        size = len(head)
        return out

    for record in records:
        piece = wire(record, kind, strategy)
        if limit is not None and len(head) + len(piece) > limit:
            error = _oversize(record, len(piece), len(head), limit)
            if batch:
                yield flush()  # every earlier record is emitted before the error surfaces
            if oversize == "raise":
                raise error
            yield MiniBatch((record,), b"", error)
            continue
        if batch and (not multi or (limit is not None and size + len(piece) > limit)):
            yield flush()
        batch.append(record)
        parts.append(piece)
        size += len(piece)
    if batch:
        yield flush()


def _oversize(record: Record, size: int, header: int, limit: int) -> PayloadTooLarge:
    extra = f" plus the {header}-byte repeated header" if header else ""
    error = PayloadTooLarge(
        f"record at {record.where()} is {size} bytes{extra}, larger than the payload limit of {limit} bytes "
        f"({limit / (1 << 20):g} MB, MaxPayloadInMB)"
    )
    error.record = record  # type: ignore[attr-defined]  # lets callers write an error row for it
    return error


@dataclass(frozen=True)
class FilePlan:
    """One input object and the key its ``.out`` is written to (both relative to their stores)."""

    input_key: str
    output_key: str
    size: int


def output_key_for(input_prefix_key: str, input_key: str, output_prefix_key: str) -> str:
    """The output key for one input key (module docstring). ``ValidationError`` if the key is not under the input
    prefix's folder or its relative part has a ``..`` segment (it would escape the output prefix)."""
    folder = input_prefix_key[: input_prefix_key.rfind("/") + 1]
    if not input_key.startswith(folder):
        raise ValidationError(f"input key {input_key!r} is not under the input prefix {input_prefix_key!r}")
    relative = input_key[len(folder) :]
    if not relative or ".." in relative.replace("\\", "/").split("/"):
        raise ValidationError(
            f"input key {input_key!r} cannot be mapped to an output key (empty or '..' segment)"
        )
    out = (
        output_prefix_key
        if not output_prefix_key or output_prefix_key.endswith("/")
        else output_prefix_key + "/"
    )
    return f"{out}{relative}.out"


def plan_job(input_prefix_key: str, objects: Iterable[Any], output_prefix_key: str) -> list[FilePlan]:
    """One ``FilePlan`` per input object, in the order given.

    ``objects`` are ``ObjectInfo``-like (``.key``, ``.size``) or ``(key, size)`` pairs, e.g. a raw-prefix listing
    or an expanded manifest (pass the manifest's prefix as ``input_prefix_key``). Keys ending in ``/`` (folder
    markers) are skipped; a key listed twice is planned once.
    """
    plans: list[FilePlan] = []
    seen: set[str] = set()
    for item in objects:
        key, size = (item.key, item.size) if hasattr(item, "key") else item
        if key.endswith("/") or key in seen:
            continue
        seen.add(key)
        plans.append(FilePlan(key, output_key_for(input_prefix_key, key, output_prefix_key), size))
    return plans


def prefix_overlap(input_uri: str, output_uri: str) -> str | None:
    """A warning when outputs would match the raw input prefix (``storage.uri.prefix_relation`` is ``"inside"``),
    else None; also None for URIs the URI grammar refuses (validation reports those)."""
    try:
        relation = prefix_relation(input_uri, output_uri)
    except ValidationError:
        return None
    if relation != "inside":
        return None
    return (
        f"TransformOutput.S3OutputPath {output_uri!r} overlaps the input prefix {input_uri!r}: output keys would "
        "match the input prefix, so a later job over the same input would read this job's outputs as input"
    )
