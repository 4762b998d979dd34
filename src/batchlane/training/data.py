"""Labelled text data for training and evaluation: CSV, JSON Lines, optionally gzip-compressed.

Formats are chosen by file name: ``.csv`` / ``.csv.gz`` (a header row, RFC 4180 quoting, so fields may contain
commas, quotes and newlines) and ``.jsonl`` / ``.ndjson`` / ``.json`` (one JSON object per line), each optionally
``.gz``. Every problem is a :class:`~batchlane.errors.BadInput` (or ``NotFound``) whose message names the file, the
line and the column, so a user can open the file at the right place.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from batchlane.errors import BadInput, NotFound, ValidationError

logger = logging.getLogger(__name__)

CSV_SUFFIXES = (".csv",)
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")


@dataclass(frozen=True)
class LabelledData:
    """Texts with their labels, in file order. ``lines[i]`` is the line on which record ``i`` starts (1-based)."""

    texts: list[str]
    labels: list[str]
    lines: list[int]
    source: str

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def label_set(self) -> list[str]:
        """The distinct labels, sorted."""
        return sorted(set(self.labels))

    def subset(self, indices: list[int] | np.ndarray, source: str | None = None) -> LabelledData:
        """The records at ``indices`` (in that order)."""
        idx = [int(i) for i in indices]
        return LabelledData(
            texts=[self.texts[i] for i in idx],
            labels=[self.labels[i] for i in idx],
            lines=[self.lines[i] for i in idx],
            source=self.source if source is None else source,
        )


def data_format(path: Path) -> str:
    """``"csv"`` or ``"jsonl"`` from the file name (a trailing ``.gz`` is ignored); ValidationError otherwise."""
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    raise ValidationError(
        f"{path}: unknown data format; use .csv or .jsonl (optionally .gz)",
        field="data",
    )


def _open_text(path: Path) -> io.TextIOBase:
    raw = gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")  # noqa: SIM115
    # utf-8-sig: spreadsheets often write a BOM before the header, which would otherwise corrupt the first column name.
    # newline="" lets the csv module see the newlines inside quoted fields as they are (RFC 4180).
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


def load_labelled(
    path: str | Path,
    *,
    text_column: str = "text",
    label_column: str = "label",
    max_rows: int | None = None,
) -> LabelledData:
    """Read ``(text, label)`` records from a CSV/JSONL file (optionally gzip).

    Labels are kept as strings (numbers in JSON become ``"3"``). Raises ``NotFound`` for a missing file and
    ``BadInput`` naming file, line and column for a missing column, a missing/empty label, a missing text, malformed
    CSV/JSON, undecodable bytes, or a file without records. ``max_rows`` keeps only the first records.
    """
    path = Path(path)
    if not path.exists():
        raise NotFound(f"{path}: no such file", field="data")
    if path.is_dir():
        raise BadInput(f"{path}: is a directory, expected a .csv or .jsonl file", field="data")
    fmt = data_format(path)
    texts: list[str] = []
    labels: list[str] = []
    lines: list[int] = []
    reader = _csv_records if fmt == "csv" else _jsonl_records
    try:
        with _open_text(path) as stream:
            for line, text, label in reader(stream, path, text_column, label_column):
                if max_rows is not None and len(texts) >= max_rows:
                    break
                texts.append(text)
                labels.append(label)
                lines.append(line)
    except UnicodeDecodeError as exc:
        raise BadInput(
            f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start} of a chunk)", field="data"
        ) from None
    except (gzip.BadGzipFile, EOFError) as exc:
        raise BadInput(f"{path}: not a valid gzip file ({exc})", field="data") from None
    if not texts:
        raise BadInput(f"{path}: no records (the file has no data rows)", field="data")
    logger.debug("loaded %d records from %s", len(texts), path)
    return LabelledData(texts=texts, labels=labels, lines=lines, source=str(path))


def _csv_records(
    stream: io.TextIOBase, path: Path, text_column: str, label_column: str
) -> Iterator[tuple[int, str, str]]:
    # strict: a stray quote inside an unquoted field or an unterminated quote is an error, not silently merged text.
    reader = csv.reader(stream, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise BadInput(
            f"{path}: empty file (expected a header row with {text_column!r} and {label_column!r})"
        ) from None
    except csv.Error as exc:
        raise BadInput(f"{path}, line {reader.line_num}: malformed CSV header ({exc})") from None
    columns = {name.strip(): i for i, name in reversed(list(enumerate(header)))}
    for wanted in (text_column, label_column):
        if wanted not in columns:
            raise BadInput(
                f"{path}, line 1: no column {wanted!r} in the header (columns: {', '.join(map(repr, header))}); "
                f"choose one with --text-column/--label-column",
                field=wanted,
            )
    text_i, label_i = columns[text_column], columns[label_column]
    last_line = reader.line_num
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise BadInput(f"{path}, line {last_line + 1}: malformed CSV ({exc})") from None
        # line_num counts physical lines, so a record with embedded newlines starts right after the previous one.
        start, last_line = last_line + 1, reader.line_num
        if not row:  # a blank line between records
            continue
        if len(row) != len(header):
            raise BadInput(
                f"{path}, line {start}: expected {len(header)} fields as in the header, found {len(row)}"
            )
        label = row[label_i].strip()
        if not label:
            raise BadInput(f"{path}, line {start}, column {label_column!r} ({label_i + 1}): empty label")
        yield start, row[text_i], label


def _jsonl_records(
    stream: io.TextIOBase, path: Path, text_column: str, label_column: str
) -> Iterator[tuple[int, str, str]]:
    for number, raw in enumerate(stream, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.rstrip("\r\n"))
        except json.JSONDecodeError as exc:
            raise BadInput(f"{path}, line {number}, column {exc.colno}: invalid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise BadInput(f"{path}, line {number}: expected a JSON object, found {type(record).__name__}")
        values = []
        for column in (text_column, label_column):
            if column not in record:
                raise BadInput(
                    f"{path}, line {number}: no field {column!r} (fields: {', '.join(map(repr, record))}); "
                    f"choose one with --text-column/--label-column",
                    field=column,
                )
            value = record[column]
            if value is None or isinstance(value, dict | list):
                raise BadInput(
                    f"{path}, line {number}, column {column!r}: expected a string, found {value!r}"
                )
            values.append(value if isinstance(value, str) else json.dumps(value))
        text, label = values[0], values[1].strip()
        if not label:
            raise BadInput(f"{path}, line {number}, column {label_column!r}: empty label")
        yield number, text, label


def check_labels_known(data: LabelledData, known: list[str] | set[str], label_column: str = "label") -> None:
    """BadInput naming the first record whose label is not in ``known`` (e.g. a label the model was not trained on)."""
    known_set = set(known)
    for label, line in zip(data.labels, data.lines, strict=True):
        if label not in known_set:
            raise BadInput(
                f"{data.source}, line {line}, column {label_column!r}: label {label!r} is not one the model knows "
                f"({', '.join(map(repr, sorted(known_set)))})",
                field=label_column,
            )


def stratified_split(data: LabelledData, fraction: float, seed: int) -> tuple[LabelledData, LabelledData]:
    """Split into ``(train, held_out)`` with about ``fraction`` of each label held out (at least one where a label
    has two or more records, none where it has one), deterministically for a given ``seed``."""
    if not 0.0 < fraction < 1.0:
        raise ValidationError(
            f"eval fraction must be between 0 and 1 (exclusive), got {fraction}", field="eval_fraction"
        )
    rng = np.random.default_rng(seed)
    labels = np.asarray(data.labels, dtype=object)
    held: list[int] = []
    for label in data.label_set:
        idx = np.flatnonzero(labels == label)
        rng.shuffle(idx)
        n_held = min(len(idx) - 1, max(1, round(fraction * len(idx))))
        held.extend(idx[:n_held].tolist())
    held_set = set(held)
    train_idx = [i for i in range(len(data)) if i not in held_set]
    if not held:
        raise BadInput(f"{data.source}: too few records to hold out an evaluation split; pass --eval-data")
    return data.subset(train_idx), data.subset(
        sorted(held), source=f"{data.source} (held-out {fraction:.0%})"
    )
