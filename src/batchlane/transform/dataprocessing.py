"""Per-record ``DataProcessing`` (docs/transform.md): InputFilter, splitting responses into per-record results,
JoinSource=Input, OutputFilter.

Record values: a CSV record is one RFC 4180 row, a list of ``str`` (parsed with the ``csv`` module, so quoted
commas and doubled quotes work; embedded newlines cannot occur with SplitType=Line). A JSON / JSON Lines record
is one JSON value. Text is decoded as the content type's charset (UTF-8 by default; a leading BOM is ignored);
undecodable bytes raise ``BadInput`` naming the byte.

Serialisation: CSV fields are written with minimal quoting (``str`` as is, ``None`` empty, numbers and booleans as
JSON, nested values as compact JSON); JSON is compact (``ensure_ascii=False``). An identity filter (``$``) never
re-serialises: the bytes pass through unchanged.

Splitting a response (docs/transform.md decision) goes by the **response's own Content-Type** (else Accept, else
ContentType, when the response declares none): CSV, JSON Lines and ``text/*`` split by line (one trailing newline,
and ``\\r`` before ``\\n``, ignored); ``application/json`` splits a top-level array with exactly one element per
record, falls back to lines for newline-separated documents, and is taken whole for a single record (an object,
or e.g. a top-k list of another length). A different count raises ``ResultCountMismatch``: "model returned N results
for M records".

Result counts (``record_count``): like SageMaker, a response is written as returned and never needs to hold one
result per record, unless something must line results up with records (``alignment``: a join, an OutputFilter,
error rows, consolidation) or ``record_count="strict"``. Otherwise a checkable mismatch is only reported to the
caller's ``warn`` callback.

Joins: CSV → the input's columns followed by the result's columns (``1,2,3`` + ``1`` → ``1,2,3,1``); JSON → an
input object gets the result under ``SageMakerOutput`` (overwriting a field of that name); any other input becomes
``{"SageMakerInput": <input>, "SageMakerOutput": <result>}``. The join always uses the unfiltered input record.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
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
    from batchlane.transform.options import JobOptions
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


class ResultCountMismatch(BadInput):
    """A response holds another number of results than the records it answers."""

    def __init__(self, got: int, expected: int, media: str, detail: str = "") -> None:
        super().__init__(
            f"model returned {got} result{'s' if got != 1 else ''} for {expected} "
            f"record{'s' if expected != 1 else ''} ({media or 'untyped'} response){detail}"
        )
        self.got = got
        self.expected = expected
        self.media = media


def countable(content_type: str | None) -> bool:
    """Whether responses of this type can be split into results: CSV, JSON, JSON Lines and ``text/*``."""
    media = content_types.normalize(content_type)
    return media in (content_types.CSV, *JSON_TYPES) or media.startswith("text/")


def split_response(body: bytes, content_type: str | None, expected: int) -> list[bytes]:
    """The per-record results of one response for ``expected`` records (module docstring). ``content_type`` is the
    response's. ``ResultCountMismatch`` on a count mismatch; ``BadInput`` for a body that cannot be split (invalid
    JSON, or a binary type, which is only accepted whole, for one record)."""
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
    elif countable(media):
        results = _lines(body) if body else []
    elif expected == 1:
        return [body]
    else:
        raise BadInput(f"cannot split a {media or 'untyped'} response into {expected} records")
    if len(results) != expected:
        raise ResultCountMismatch(len(results), expected, media)
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


def _lines_where(records: Sequence[Record]) -> str:
    return f"the mini-batch of lines {records[0].line}-{records[-1].line}" if records else "an empty batch"


class DataProcessor:
    """DataProcessing and result counting for one job, built once (paths parsed, types normalised).

    Runner use, per file::

        record = processor.filter_record(record)                  # before pack(); keeps the original for joins
        outputs = processor.handle(records, body, response_type, warn=log_once)  # bytes for the Assembler, in order

    ``handle`` returns per-record outputs when a join or OutputFilter is active, else ``[body]``. ``response_type`` is
    the response's Content-Type (module docstring). ``count_required_by`` names what needs one result per record (a
    join, an OutputFilter, ``alignment`` from the job's options, or ``record_count="strict"``); with it a mismatch is
    a ``BadInput`` saying so, without it a mismatch goes to ``warn``. Errors name the record (``Record.where()``) or
    the mini-batch's lines. For error-row mode call ``split`` and ``process_one`` per record instead.
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
        record_count: str = "lenient",
        alignment: str | None = None,
    ) -> None:
        self.content_type = content_type
        self.result_type = accept or content_type
        self.input_path = jsonpath.parse(input_filter)
        self.output_path = jsonpath.parse(output_filter)
        self.join = join_source == "Input"
        self.filters_input = not self.input_path.is_identity
        self.per_record = self.join or not self.output_path.is_identity
        # Counting only means something when records are lines packed several to a payload (docs/transform.md).
        self.counting = split_type == "Line" and batch_strategy in ("MultiRecord", "MULTI_RECORD")
        reasons = [
            "JoinSource=Input" if self.join else None,
            None if self.output_path.is_identity else f"OutputFilter {self.output_path}",
            alignment,
            "record_count=strict" if record_count == "strict" else None,
        ]
        self.count_required_by = next((reason for reason in reasons if reason), None)

    @classmethod
    def from_params(cls, params: EffectiveParams, options: JobOptions | None = None) -> DataProcessor:
        """Build from ``spec.resolve(request, ...)`` and the job's options (``record_count``; error rows and
        consolidation need one result per record)."""
        alignment = None
        if options is not None and options.on_record_error != "fail":
            alignment = f"on_record_error={options.on_record_error}"
        elif options is not None and options.consolidate:
            alignment = "consolidate"
        return cls(
            content_type=params.content_type,
            accept=params.accept,
            input_filter=params.input_filter,
            output_filter=params.output_filter,
            join_source=params.join_source,
            split_type=params.split_type,
            batch_strategy=params.batch_strategy,
            record_count=options.record_count if options is not None else "lenient",
            alignment=alignment,
        )

    @property
    def active(self) -> bool:
        """True when any record-level processing happens (filter, join or count check)."""
        return self.filters_input or self.per_record or self.counting

    def response_type(self, declared: str | None) -> str | None:
        """What a response is parsed as: its own Content-Type, else Accept, else ContentType."""
        return declared or self.result_type

    def output_type(self, response_type: str | None) -> str | None:
        """The format of ``handle``'s outputs for a response of this type: a join is written like Accept/ContentType
        (the input's family); a filtered result in its own type when that is CSV or JSON, else like Accept/ContentType;
        anything else is the response as returned."""
        rtype = self.response_type(response_type)
        if self.join or (
            self.per_record and content_types.normalize(rtype) not in (content_types.CSV, *JSON_TYPES)
        ):
            return self.result_type
        return rtype

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

    def output_header(self, header: bytes, result_columns: int = 1) -> bytes | None:
        """The header to write first in a ``.out`` for ``csv_header="skip"``: with a CSV join, the input header plus
        one column per result column (``SageMakerOutput``, or ``SageMakerOutput_1``... when a result has several;
        see ``result_columns``), with the OutputFilter applied; None when there is no join (outputs are then model
        results, which the input header does not describe) or the filter does not fit the header."""
        if not self.join or _family(self.content_type) != "csv":
            return None
        names = (
            ["SageMakerOutput"]
            if result_columns == 1
            else [f"SageMakerOutput_{n}" for n in range(1, result_columns + 1)]
        )
        try:
            value = self.output_path.apply([*parse_record(header, self.content_type), *names])
            return serialize_record(value, self.content_type)
        except BadInput:
            return None

    def result_columns(self, result: bytes, response_type: str | None = None) -> int:
        """How many columns one result adds to a CSV join row (a list is spread over columns, anything else is one)."""
        value = self._result_value(result, self.response_type(response_type))
        return len(value) if isinstance(value, list) else 1

    def split(self, records: Sequence[Record], body: bytes, response_type: str | None = None) -> list[bytes]:
        """The response split into one result per record; ``BadInput`` naming the lines on a count mismatch (and
        what needs one result per record) or a body that cannot be split."""
        try:
            return split_response(body, self.response_type(response_type), len(records))
        except ResultCountMismatch as exc:
            need = f"; {self.count_required_by} needs one result per record" if self.count_required_by else ""
            raise ResultCountMismatch(
                exc.got, exc.expected, exc.media, f" in {_lines_where(records)}{need}"
            ) from None
        except BadInput as exc:
            raise BadInput(f"{exc} in {_lines_where(records)}") from None

    def _result_value(self, result: bytes, response_type: str | None) -> Any:
        media = content_types.normalize(response_type)
        if media == content_types.CSV or media in JSON_TYPES:
            return parse_record(result, response_type)
        if media.startswith("text/"):
            return _decode(result, response_type)
        raise BadInput(f"a {media or 'untyped'} result cannot be read as a record")

    def process_one(self, record: Record, result: bytes, response_type: str | None = None) -> bytes:
        """Join and/or OutputFilter for one record and its result (read as ``response_type``); ``BadInput`` naming
        the record. A join is written in the input's format; a filtered result in its own (CSV or JSON), else as
        Accept/ContentType."""
        if not self.per_record:
            return result
        rtype = self.response_type(response_type)
        try:
            value = self._result_value(result, rtype)
            if self.join:
                input_value = parse_record(record.unfiltered, self.content_type)
                value = _join_values(input_value, value, _family(self.content_type))
            if not self.output_path.is_identity:
                value = self.output_path.apply(value)
            return serialize_record(value, self.output_type(rtype))
        except BadInput as exc:
            raise BadInput(f"{record.where()}: {exc}") from None

    def handle(
        self,
        records: Sequence[Record],
        body: bytes,
        response_type: str | None = None,
        *,
        warn: Callable[[str], None] | None = None,
    ) -> list[bytes]:
        """Outputs for one mini-batch response, in record order (see the class docstring)."""
        if self.per_record:
            results = self.split(records, body, response_type)
            return [self.process_one(r, res, response_type) for r, res in zip(records, results, strict=True)]
        if self.counting and countable(self.response_type(response_type)):
            try:
                self.split(records, body, response_type)
            except ResultCountMismatch as exc:
                if self.count_required_by:
                    raise
                if warn is not None:
                    warn(str(exc))
            except BadInput:
                # Not countable (e.g. invalid JSON): SageMaker writes it as returned, and so do we unless asked.
                if self.count_required_by:
                    raise
        return [body]
