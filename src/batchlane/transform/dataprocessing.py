"""Per-record ``DataProcessing`` (CONTRACT §1.7): InputFilter, splitting responses into per-record results,
JoinSource=Input, OutputFilter.

Record values: a CSV record is one RFC 4180 row, a list of ``str`` (parsed with the ``csv`` module, so quoted
commas and doubled quotes work; embedded newlines cannot occur with SplitType=Line). A JSON / JSON Lines record
is one JSON value. Text is decoded as the content type's charset (UTF-8 by default; a leading BOM is ignored);
undecodable bytes raise ``BadInput`` naming the byte.

Serialisation: CSV fields are written with minimal quoting (``str`` as is, ``None`` empty, numbers and booleans as
JSON, nested values as compact JSON); JSON is compact (``ensure_ascii=False``). An identity filter (``$``) never
re-serialises: the bytes pass through unchanged.

Splitting a response (CONTRACT §6 decision): CSV, JSON Lines and ``text/*`` split by line (one trailing newline,
and ``\\r`` before ``\\n``, ignored); ``application/json`` splits a top-level array with exactly one element per
record, falls back to lines for newline-separated documents, and is taken whole for a single record (an object,
or e.g. a top-k list of another length). A different count raises ``BadInput``: "model returned N results for M
records".

Joins: CSV → the input's columns followed by the result's columns (``1,2,3`` + ``1`` → ``1,2,3,1``); JSON → an
input object gets the result under ``SageMakerOutput`` (overwriting a field of that name); any other input becomes
``{"SageMakerInput": <input>, "SageMakerOutput": <result>}``. The join always uses the unfiltered input record.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from batchlane import (
    codecs,  # noqa: F401  (raises csv.field_size_limit: a CSV field may fill a payload)
    content_types,
)
from batchlane.errors import BadInput, UnsupportedContentType
from batchlane.transform import jsonpath
from batchlane.transform.split import Record

if TYPE_CHECKING:
    from batchlane.transform.params import EffectiveParams

JSON_TYPES = frozenset({content_types.JSON, content_types.JSONLINES})


def _family(content_type: str | None) -> str:
    media = content_types.normalize(content_type)
    if media == content_types.CSV:
        return "csv"
    if media in JSON_TYPES:
        return "json"
    raise UnsupportedContentType(
        f"DataProcessing supports text/csv, application/json and application/jsonlines, not {content_type!r}"
    )


def _decode(data: bytes, content_type: str | None) -> str:
    encoding = content_types.charset(content_type)
    if encoding.replace("-", "").replace("_", "") == "utf8":
        encoding = "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise BadInput(f"not valid {exc.encoding} text at byte {exc.start}") from None
    except LookupError:
        raise BadInput(f"unknown charset {encoding!r}") from None


def parse_record(data: bytes, content_type: str | None) -> Any:
    """One record as a value: CSV → ``list[str]`` (an empty line → ``[]``); JSON/JSON Lines → the JSON value."""
    text = _decode(data, content_type)
    if _family(content_type) == "csv":
        try:
            rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
        except csv.Error as exc:
            raise BadInput(f"not a valid CSV row: {exc}") from None
        if len(rows) > 1:
            raise BadInput("a CSV record must be a single row")
        return rows[0] if rows else []
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"not valid JSON: {exc.msg} at column {exc.colno}") from None


def _csv_field(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def serialize_record(value: Any, content_type: str | None) -> bytes:
    """The inverse of ``parse_record`` (without a line terminator). A CSV row is a list (or one scalar field)."""
    if _family(content_type) == "csv":
        if isinstance(value, dict):
            raise BadInput("a JSON object cannot be written as a CSV row; select array elements instead")
        fields = value if isinstance(value, list) else [value]
        out = io.StringIO()
        # The default terminator makes the writer quote fields holding \r or \n; it is then cut off.
        csv.writer(out).writerow([_csv_field(v) for v in fields])
        return out.getvalue()[:-2].encode("utf-8")
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def apply_input_filter(data: bytes, path: jsonpath.JsonPath, content_type: str | None) -> bytes:
    """The record with ``InputFilter`` applied, in its own format; unchanged bytes for ``$``."""
    if path.is_identity:
        return data
    return serialize_record(path.apply(parse_record(data, content_type)), content_type)


def apply_output_filter(data: bytes, path: jsonpath.JsonPath, content_type: str | None) -> bytes:
    """A (joined) output record with ``OutputFilter`` applied; unchanged bytes for ``$``."""
    return apply_input_filter(data, path, content_type)


def _lines(body: bytes) -> list[bytes]:
    if body.endswith(b"\n"):
        body = body[:-1]
    return [line[:-1] if line.endswith(b"\r") else line for line in body.split(b"\n")]


def split_response(body: bytes, content_type: str | None, expected: int) -> list[bytes]:
    """The per-record results of one response for ``expected`` records (module docstring); ``BadInput`` on a count
    mismatch or a type that cannot be split (binary types are only accepted whole, for one record)."""
    media = content_types.normalize(content_type)
    if expected == 1 and not body.strip():
        return [body]
    if media == content_types.JSON:
        try:
            value = json.loads(body)
        except ValueError as exc:
            extra = isinstance(exc, json.JSONDecodeError) and exc.msg == "Extra data"
            if not extra and expected != 1:
                raise BadInput(f"the model's JSON response is not valid JSON: {exc}") from None
            results = _lines(body) if extra else [body]
        else:
            if isinstance(value, list) and len(value) == expected:
                results = [json.dumps(v, ensure_ascii=False, separators=(",", ":")).encode() for v in value]
            elif expected == 1:
                results = [
                    body[:-2] if body.endswith(b"\r\n") else body[:-1] if body.endswith(b"\n") else body
                ]
            else:
                results = value if isinstance(value, list) else [value]
    elif media in (content_types.CSV, content_types.JSONLINES) or media.startswith("text/"):
        results = _lines(body) if body else []
    elif expected == 1:
        return [body]
    else:
        raise BadInput(f"cannot split a {media or 'untyped'} response into {expected} records")
    if len(results) != expected:
        raise BadInput(
            f"model returned {len(results)} result{'s' if len(results) != 1 else ''} for {expected} "
            f"record{'s' if expected != 1 else ''} ({media or 'untyped'} response)"
        )
    return results


def _join_values(input_value: Any, result_value: Any, family: str) -> Any:
    if family == "csv":
        return list(input_value) + (result_value if isinstance(result_value, list) else [result_value])
    if isinstance(input_value, dict):
        return {**input_value, "SageMakerOutput": result_value}
    return {"SageMakerInput": input_value, "SageMakerOutput": result_value}


def join(input_record: bytes, result: bytes, content_type: str | None) -> bytes:
    """JoinSource=Input for one record (module docstring); both sides are parsed as ``content_type``'s family."""
    family = _family(content_type)
    joined = _join_values(
        parse_record(input_record, content_type), parse_record(result, content_type), family
    )
    return serialize_record(joined, content_type)


class DataProcessor:
    """DataProcessing for one job, built once (paths parsed, types normalised).

    Runner use, per file::

        record = processor.filter_record(record)           # before pack(); keeps the original for joins
        outputs = processor.handle(batch.records, body)     # per response: bytes for the Assembler, in order

    ``handle`` returns per-record outputs when a join or OutputFilter is active, else ``[body]`` (after checking,
    when ``verify_count`` applies, that the response holds one result per record). Errors are ``BadInput`` naming
    the record (``Record.where()``). For error-row mode call ``split`` and ``process_one`` per record instead.
    """

    def __init__(
        self,
        *,
        content_type: str | None = None,
        accept: str | None = None,
        input_filter: str = "$",
        output_filter: str = "$",
        join_source: str = "None",
        split_type: str = "None",
        batch_strategy: str = "MultiRecord",
        verify_count: bool = True,
    ) -> None:
        self.content_type = content_type
        self.result_type = accept or content_type
        self.input_path = jsonpath.parse(input_filter)
        self.output_path = jsonpath.parse(output_filter)
        self.join = join_source == "Input"
        self.filters_input = not self.input_path.is_identity
        self.per_record = self.join or not self.output_path.is_identity
        media = content_types.normalize(self.result_type)
        splittable = media in (content_types.CSV, *JSON_TYPES) or media.startswith("text/")
        # Counting only means something when records are lines packed several to a payload (CONTRACT §5.16).
        self.verify_count = (
            verify_count
            and split_type == "Line"
            and batch_strategy in ("MultiRecord", "MULTI_RECORD")
            and splittable
        )

    @classmethod
    def from_params(cls, params: EffectiveParams, *, verify_count: bool = True) -> DataProcessor:
        """Build from ``spec.resolve(request, ...)``."""
        return cls(
            content_type=params.content_type,
            accept=params.accept,
            input_filter=params.input_filter,
            output_filter=params.output_filter,
            join_source=params.join_source,
            split_type=params.split_type,
            batch_strategy=params.batch_strategy,
            verify_count=verify_count,
        )

    @property
    def active(self) -> bool:
        """True when any record-level processing happens (filter, join or count check)."""
        return self.filters_input or self.per_record or self.verify_count

    def filter_record(self, record: Record) -> Record:
        """The record with InputFilter applied (``original`` keeps the input bytes); unchanged for ``$``."""
        if not self.filters_input:
            return record
        try:
            data = apply_input_filter(record.data, self.input_path, self.content_type)
        except BadInput as exc:
            raise BadInput(f"InputFilter {self.input_path}: {record.where()}: {exc}") from None
        return replace(record, data=data, original=record.data)

    def filter_header(self, header: bytes) -> bytes:
        """A CSV header line with InputFilter applied (for ``csv_header="repeat"``)."""
        return apply_input_filter(header, self.input_path, self.content_type)

    def output_header(self, header: bytes) -> bytes | None:
        """The header to write first in a ``.out`` for ``csv_header="skip"``: with a CSV join, the input header plus
        a ``SageMakerOutput`` column, with the OutputFilter applied; None when there is no join (outputs are then
        model results, which the input header does not describe) or the filter does not fit the header."""
        if not self.join or _family(self.content_type) != "csv":
            return None
        try:
            value = self.output_path.apply([*parse_record(header, self.content_type), "SageMakerOutput"])
            return serialize_record(value, self.content_type)
        except BadInput:
            return None

    def split(self, records: Sequence[Record], body: bytes) -> list[bytes]:
        """The response split into one result per record (``BadInput`` on a count mismatch, naming the lines)."""
        try:
            return split_response(body, self.result_type, len(records))
        except BadInput as exc:
            where = f"lines {records[0].line}-{records[-1].line}" if records else "an empty batch"
            raise BadInput(f"{exc} in the mini-batch of {where}") from None

    def process_one(self, record: Record, result: bytes) -> bytes:
        """Join and/or OutputFilter for one record and its result; ``BadInput`` naming the record."""
        try:
            if not self.per_record:
                return result
            family = _family(self.result_type)
            value = parse_record(result, self.result_type)
            if self.join:
                value = _join_values(parse_record(record.unfiltered, self.content_type), value, family)
            if self.output_path.is_identity:
                return serialize_record(value, self.result_type)
            return serialize_record(self.output_path.apply(value), self.result_type)
        except BadInput as exc:
            raise BadInput(f"{record.where()}: {exc}") from None

    def handle(self, records: Sequence[Record], body: bytes) -> list[bytes]:
        """Outputs for one mini-batch response, in record order (see the class docstring)."""
        if self.per_record:
            return [
                self.process_one(r, res) for r, res in zip(records, self.split(records, body), strict=True)
            ]
        if self.verify_count:
            self.split(records, body)
        return [body]
