"""Texts to monitor, read from files, folders or object-store prefixes.

Each ``--data`` is a local path, ``file://`` or ``s3://`` URI; a prefix (or a folder) is listed recursively, as a
transform lists its input. Every object is read by its name (a trailing ``.gz`` is decompressed first) unless a
content type is given:

* ``.jsonl`` / ``.ndjson`` / ``.json``: one JSON value per line: a string, or an object with the text field
  (``text``, or ``inputs``, or ``--text-field``). A line that is a SageMaker data-capture record
  (``captureData.endpointInput``) yields the texts of the captured request: its ``data`` is decoded by its
  ``encoding`` (``BASE64`` or text) and its ``observedContentType``, then read like a request to the default handler
  (``{"inputs": ...}``, a list of strings, JSON Lines, CSV or text). The capture's files are hourly folders of
  ``.jsonl`` files, so a capture destination prefix can be given as it is.
* ``.csv``: the column named like the text field when the first row holds it as a header, else the first column.
* anything else: one text per line.

Blank texts are skipped (they carry nothing to compare). A capture record whose payload cannot be decoded is
skipped and counted, as SageMaker's monitors do; a malformed line in a plain input file is an error naming the file
and line.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from batchlane import codecs, content_types
from batchlane.errors import BadInput, BatchlaneError, NotFound
from batchlane.serving.classifier import payload_texts
from batchlane.storage.base import open_store

logger = logging.getLogger(__name__)

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
DEFAULT_TEXT_FIELDS = ("text", "inputs")


@dataclass
class Texts:
    """The texts read, in source order, with where they came from and what was skipped."""

    texts: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    captured_records: int = 0
    skipped_records: int = 0

    def __len__(self) -> int:
        return len(self.texts)


def _format_of(name: str, content_type: str | None) -> str:
    if content_type:
        media = content_types.normalize(content_type)
        if media in (content_types.JSONLINES, content_types.JSON):
            return "jsonl"
        if media == content_types.CSV:
            return "csv"
        return "text"
    lower = name.lower().removesuffix(".gz")
    if lower.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if lower.endswith(".csv"):
        return "csv"
    return "text"


def _field_text(record: object, fields: tuple[str, ...]) -> str | None:
    if isinstance(record, str):
        return record
    if isinstance(record, dict):
        for name in fields:
            if isinstance(record.get(name), str):
                return record[name]
    return None


def capture_texts(entry: dict) -> list[str]:
    """The texts of one SageMaker data-capture record (its ``endpointInput``); ``BadInput`` if it has none."""
    captured = entry.get("captureData")
    endpoint_input = captured.get("endpointInput") if isinstance(captured, dict) else None
    if not isinstance(endpoint_input, dict) or not isinstance(endpoint_input.get("data"), str):
        raise BadInput("captureData.endpointInput.data is missing")
    data: bytes | str = endpoint_input["data"]
    if str(endpoint_input.get("encoding", "")).upper() == "BASE64":
        try:
            data = base64.b64decode(data, validate=True)
        except ValueError:
            raise BadInput("captureData.endpointInput.data is not valid base64") from None
    content_type = endpoint_input.get("observedContentType") or content_types.JSON
    texts, _ = payload_texts(codecs.decode(data, content_type))
    return [text for text in texts if text is not None]


def _read_object(
    name: str, body: bytes, fields: tuple[str, ...], content_type: str | None, out: Texts
) -> None:
    if name.lower().endswith(".gz"):
        try:
            body = gzip.decompress(body)
        except OSError as exc:
            raise BadInput(f"{name}: not a gzip file ({exc})") from None
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInput(f"{name}: not UTF-8 text (byte {exc.start})") from None
    kind = _format_of(name, content_type)
    if kind == "csv":
        rows = codecs.decode_csv(text)
        column = 0
        if rows and rows[0]:
            header = [cell.strip().lower() for cell in rows[0]]
            for candidate in fields:
                if candidate.lower() in header:
                    column, rows = header.index(candidate.lower()), rows[1:]
                    break
        for row in rows:
            if len(row) > column and row[column].strip():
                out.texts.append(row[column])
                out.sources.append(name)
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if kind == "text":
            out.texts.append(line)
            out.sources.append(name)
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInput(f"{name} line {number}: not JSON ({exc.msg})") from None
        if isinstance(record, dict) and "captureData" in record:
            out.captured_records += 1
            try:
                found = capture_texts(record)
            except BatchlaneError as exc:
                out.skipped_records += 1
                logger.warning("%s line %d: capture record skipped: %s", name, number, exc)
                continue
        else:
            value = _field_text(record, fields)
            if value is None:
                raise BadInput(f"{name} line {number}: no string field {' or '.join(map(repr, fields))}")
            found = [value]
        for value in found:
            if value.strip():
                out.texts.append(value)
                out.sources.append(name)


def read_texts(
    locations: Iterable[str], *, text_field: str | None = None, content_type: str | None = None
) -> Texts:
    """The texts of every object under each location (module docstring), in listing order."""
    fields = (text_field,) if text_field else DEFAULT_TEXT_FIELDS
    out = Texts()
    for location in locations:
        store, prefix = open_store(location, field="data")
        # A file named exactly is read alone, not with its raw-prefix siblings (a.jsonl, a.jsonl.bak).
        objects = [prefix] if prefix and store.exists(prefix) else sorted(i.key for i in store.list(prefix))
        if not objects:
            raise NotFound(f"--data {location}: no file or object found")
        for key in objects:
            _read_object(store.url_for(key), store.read_bytes(key), fields, content_type, out)
    return out
