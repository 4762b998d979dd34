"""A job's outputs as rows, joined with their inputs where the split allows (``batchlane jobs results``).

Rows have four columns, ``COLUMNS``: ``input_key``, ``record_index``, ``input``, ``output``.

* ``SplitType=Line`` with ``AssembleWith=Line``: one output line per input line, so each record gets a row with its
  input line and its output line. With ``csv_header`` skip/repeat the input's header line is left out (and an
  output header line too, when the job wrote one).
* Anything else, or a file whose line counts differ (``on_record_error=skip``, a model that answered per
  mini-batch): one row per file, ``record_index`` and ``input`` empty, ``output`` the whole ``.out`` text.

Only committed (``done``) files are read, in plan order. Bytes are decoded as UTF-8 (bad bytes replaced). Parquet
needs pyarrow: the ``results`` extra (``pip install 'batchlane[results]'``).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from batchlane.errors import BatchlaneError, ValidationError
from batchlane.jobs.state import FileState
from batchlane.jobs.store import JobStore
from batchlane.storage.base import ObjectStore
from batchlane.storage.uri import open_store
from batchlane.transform.split import iter_records, open_decompressed

COLUMNS = ("input_key", "record_index", "input", "output")
FORMATS = ("parquet", "csv", "jsonl")
SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
PARQUET_BATCH_ROWS = 10_000


@dataclass(frozen=True)
class ResultRow:
    """One output record (or a whole output file) and, when joined, the input record it answers."""

    input_key: str
    record_index: int | None
    input: str | None
    output: str


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _input_store(request: Mapping, env: Mapping[str, str] | None) -> ObjectStore:
    from batchlane.transform.inputs import list_inputs
    from batchlane.transform.spec import canonical_uri

    source = request["TransformInput"]["DataSource"]["S3DataSource"]
    if source.get("S3DataType", "S3Prefix") == "S3Prefix":
        return open_store(canonical_uri(source["S3Uri"]), env, field="S3Uri")[0]
    return list_inputs(source["S3DataType"], canonical_uri(source["S3Uri"]), env)[0]


def iter_results(store: JobStore, name: str, env: Mapping[str, str] | None = None) -> Iterator[ResultRow]:
    """The rows of job ``name``'s committed outputs, file by file in plan order (see the module docstring)."""
    from batchlane.transform.spec import canonical_uri

    record = store.get_job(name)
    request = record.request
    transform_input = request["TransformInput"]
    split_type = transform_input.get("SplitType") or "None"
    assemble_with = (request.get("TransformOutput") or {}).get("AssembleWith") or (
        "Line" if split_type == "Line" else "None"
    )
    per_line = split_type == "Line" and assemble_with == "Line"
    header = ((record.options.get("job") or {}).get("csv_header") or "none") != "none"
    out_store = open_store(
        canonical_uri(request["TransformOutput"]["S3OutputPath"]), env, field="S3OutputPath"
    )[0]
    in_store = _input_store(request, env) if per_line else None
    for checkpoint in store.files(name, FileState.DONE):
        output = out_store.read_bytes(checkpoint.output_key)
        if in_store is not None:
            rows = _joined(in_store, checkpoint.input_key, output, transform_input, header)
            if rows is not None:
                yield from rows
                continue
        yield ResultRow(checkpoint.input_key, None, None, _text(output))


def _joined(
    in_store: ObjectStore, key: str, output: bytes, transform_input: Mapping, header: bool
) -> list[ResultRow] | None:
    """One row per input line of ``key`` with its output line; None when the counts differ."""
    with in_store.open(key) as raw:
        stream = open_decompressed(raw, transform_input.get("CompressionType"))
        inputs = [r.data for r in iter_records(stream, "Line")]
    lines = output.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if header and inputs:
        inputs = inputs[1:]
        if len(lines) == len(inputs) + 1:
            lines = lines[1:]
    if len(lines) != len(inputs):
        return None
    return [
        ResultRow(key, index, _text(data), _text(line))
        for index, (data, line) in enumerate(zip(inputs, lines, strict=True))
    ]


def format_for(path: Path, fmt: str | None) -> str:
    """The export format: ``fmt`` if given, else from ``path``'s suffix; ``ValidationError`` if neither says."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ValidationError(
                f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}", field="--format"
            )
        return fmt
    try:
        return SUFFIXES[path.suffix.lower()]
    except KeyError:
        raise ValidationError(
            f"cannot tell the format of {path} from its suffix; name it .parquet, .csv or .jsonl, or pass --format",
            field="--to",
        ) from None


def export(rows: Iterable[ResultRow], path: Path, fmt: str) -> int:
    """Write ``rows`` to ``path`` as ``fmt`` (parquet, csv or jsonl), atomically; returns the number of rows."""
    path = Path(path)
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise BatchlaneError(
                "writing parquet needs pyarrow: pip install 'batchlane[results]' (or use a .csv or .jsonl file)"
            ) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    try:
        if fmt == "parquet":
            count = _write_parquet(rows, temp)
        else:
            with open(temp, "w", encoding="utf-8", newline="") as out:
                count = _write_text(rows, out, fmt)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return count


def _write_text(rows: Iterable[ResultRow], out: io.TextIOBase, fmt: str) -> int:
    count = 0
    writer = csv.DictWriter(out, fieldnames=COLUMNS) if fmt == "csv" else None
    if writer is not None:
        writer.writeheader()
    for row in rows:
        if writer is not None:
            writer.writerow(asdict(row))
        else:
            out.write(json.dumps(asdict(row), ensure_ascii=False) + "\n")
        count += 1
    return count


def _write_parquet(rows: Iterable[ResultRow], path: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("input_key", pa.string()),
            ("record_index", pa.int64()),
            ("input", pa.string()),
            ("output", pa.string()),
        ]
    )
    count = 0
    with pq.ParquetWriter(path, schema) as writer:
        batch: list[dict] = []
        for row in rows:
            batch.append(asdict(row))
            if len(batch) >= PARQUET_BATCH_ROWS:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                count, batch = count + len(batch), []
        if batch or not count:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            count += len(batch)
    return count
