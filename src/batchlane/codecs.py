"""The codec registry: bytes <-> Python values for each supported content type, and Accept negotiation.

One table (``CODECS``) serves the inference container's default ``input_fn``/``output_fn`` and anything else that
needs to read or write payloads. Decoded shapes:

| content type            | ``decode`` returns                                   | ``encode`` accepts                         |
|-------------------------|------------------------------------------------------|--------------------------------------------|
| ``application/json``    | the JSON value; a body of several JSON documents,    | any JSON-able value (numpy/torch included) |
|                         | one per line (JSON Lines), becomes a list of them    |                                            |
| ``application/jsonlines``| a list, one value per line (``None`` if blank)      | a list (one line each) or a single value   |
| ``text/csv``            | a list of rows (``list[str]``), RFC 4180 quoting,    | a list of rows; a row is a dict (values),  |
|                         | ``[]`` for a blank line                              | a list/tuple (fields, nested ones flattened)|
|                         |                                                      | or a scalar (one field)                    |
| ``text/plain``          | a list of lines (``str``), ``""`` for a blank line   | a str, or a list (one line each; non-str   |
|                         |                                                      | items written as JSON)                     |

Blank lines are records (docs/serving.md): a batch transform with ``SplitType=Line`` sends every line of a file,
blank ones included, and expects one result per line back, so dropping them would break the count. A JSON body
with a blank line (SageMaker's MultiRecord of a ``.jsonl`` file sent as ``application/json``) is read as JSON Lines;
a body that is only whitespace but not empty is one blank record per line. An empty body holds no records.

Malformed bodies raise ``BadInput`` (400) naming the line and column, including JSON nested deeper than the parser
can go and JSON strings holding a lone UTF-16 surrogate (``"\\ud800"``, which no UTF-8 text can carry); an unknown
content type raises ``UnsupportedContentType`` (415); an Accept header naming no supported type raises
``NotAcceptable`` (406). Every encoded line-based body ends with a newline.

CSV fields may be as long as the largest payload (``CSV_FIELD_LIMIT``), not just the ``csv`` module's 131,072
characters.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from batchlane import content_types
from batchlane.errors import BadInput, ModelError, NotAcceptable, UnsupportedContentType

# A CSV field may fill a whole payload: MaxPayloadInMB is at most 100, and a character is at least one byte.
# ``csv.field_size_limit`` is process-wide; it is raised once here, at import, to this fixed maximum (never lowered,
# never set per call), so concurrent parsers cannot race on it. Every module that parses CSV imports this one.
CSV_FIELD_LIMIT = 100 * 1024 * 1024
csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))

# A lone surrogate can only enter decoded JSON through a \uD800-\uDFFF escape: look for one before walking escapes.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|.)", re.DOTALL)
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


@dataclass(frozen=True)
class Codec:
    """How one media type is read and written. ``decode`` gets the body as ``str`` (already charset-decoded)."""

    content_type: str
    decode: Callable[[str], Any]
    encode: Callable[[Any], bytes]


def _plain(value: Any) -> Any:
    """``json.dumps`` fallback: numpy arrays/scalars and torch tensors become lists/numbers."""
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"values of type {type(value).__name__} cannot be written as JSON")


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_plain)
    except (TypeError, ValueError) as exc:
        # Raised while encoding a prediction: the model produced something JSON cannot carry (NaN, objects).
        raise ModelError(f"cannot encode the prediction as JSON: {exc}") from exc


def _json_error(exc: json.JSONDecodeError, what: str) -> BadInput:
    return BadInput(f"invalid {what} at line {exc.lineno}, column {exc.colno}: {exc.msg}")


def _position(text: str, offset: int, first_line: int = 1) -> str:
    line = text.count("\n", 0, offset) + first_line
    return f"line {line}, column {offset - (text.rfind(chr(10), 0, offset) + 1) + 1}"


def json_nesting_error(text: str, what: str = "JSON", first_line: int = 1) -> BadInput:
    """The error for a document ``json.loads`` gave up on with ``RecursionError``: its depth and where.

    Python's parser stops near the interpreter's recursion limit, so the accepted depth is about that many levels.
    """
    depth = deepest = where = 0
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > deepest:
                deepest, where = depth, match.start()
        elif token in "]}":
            depth -= 1
    return BadInput(
        f"{what} nested deeper than the parser's limit of about {sys.getrecursionlimit()} levels "
        f"({deepest} levels at {_position(text, where, first_line)})"
    )


def check_json_unicode(text: str, what: str = "JSON", first_line: int = 1) -> None:
    """``BadInput`` naming the place when a JSON text escapes a lone UTF-16 surrogate (``"\\ud800"``).

    Such strings decode in Python but cannot be encoded as UTF-8 (tokenizers and writers then fail with a
    ``TypeError``/``UnicodeEncodeError``); RFC 8259 leaves their meaning undefined. Cheap when there is none.
    """
    if not _SURROGATE_ESCAPE.search(text):
        return
    pending: re.Match[str] | None = None  # a high surrogate waiting for its low half
    for match in _ESCAPE.finditer(text):
        unit = int(match.group(1), 16) if match.group(1) else None
        if pending is not None:
            if unit is not None and 0xDC00 <= unit <= 0xDFFF and match.start() == pending.end():
                pending = None
                continue
            break
        if unit is not None and 0xD800 <= unit <= 0xDBFF:
            pending = match
        elif unit is not None and 0xDC00 <= unit <= 0xDFFF:
            pending = match
            break
    if pending is not None:
        raise BadInput(
            f"invalid unicode in {what}: lone surrogate {pending.group()} at "
            f"{_position(text, pending.start(), first_line)}"
        )


def _loads(text: str, what: str, first_line: int = 1) -> Any:
    try:
        value = json.loads(text)
    except RecursionError:
        raise json_nesting_error(text, what, first_line) from None
    check_json_unicode(text, what, first_line)
    return value


# A whitespace-only line once the body's final line end is set aside (a regex: no copy of a large body).
_BLANK_LINE = re.compile(r"(?:^|\n)[^\S\n]*(?:\n|$)")


def decode_json(text: str) -> Any:
    """One JSON document; several newline-separated documents (JSON Lines sent as JSON) become a list.

    Why the fallback: SageMaker MultiRecord mini-batches of a ``.jsonl`` file arrive as ``application/json``
    with one record per line (docs/serving.md); strict decoders fail them with "Extra data". A body with a blank line
    is read the same way first, since ``json.loads`` would skip the blank record.
    """
    if text and _BLANK_LINE.search(text[:-1] if text.endswith("\n") else text):
        try:
            return decode_jsonlines(text)
        except BadInput:  # a pretty-printed document with a blank line in it
            pass
    try:
        return _loads(text, "JSON")
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and "\n" in text.strip():
            return decode_jsonlines(text)
        raise _json_error(exc, "JSON") from None


def decode_jsonlines(text: str) -> list[Any]:
    """One value per line, ``None`` for a blank one; an error names the line, the column and the 0-based record
    index."""
    records: list[Any] = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            records.append(None)
            continue
        try:
            records.append(_loads(line, f"JSON Lines record {len(records)}", line_number))
        except json.JSONDecodeError as exc:
            raise BadInput(
                f"invalid JSON Lines record {len(records)} at line {line_number}, column {exc.colno}: {exc.msg}"
            ) from None
    return records


def decode_csv(text: str) -> list[list[str]]:
    """RFC 4180 rows (quoted fields may hold commas, quotes and newlines); a blank line is an empty row."""
    try:
        return list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as exc:
        raise BadInput(f"invalid CSV: {exc}") from None


def decode_text(text: str) -> list[str]:
    """One item per line (``""`` for a blank one), line terminators removed."""
    return text.splitlines()


def encode_json(value: Any) -> bytes:
    return _dumps(value).encode("utf-8")


def encode_jsonlines(value: Any) -> bytes:
    items = value if isinstance(value, list | tuple) else [value]
    return "".join(_dumps(item) + "\n" for item in items).encode("utf-8")


def _csv_fields(row: Any) -> list[Any]:
    if isinstance(row, dict):
        return [field for item in row.values() for field in _csv_fields(item)]
    if isinstance(row, list | tuple):
        return [field for item in row for field in _csv_fields(item)]
    if hasattr(row, "tolist"):
        return _csv_fields(row.tolist())
    if isinstance(row, float) and not math.isfinite(row):
        return [repr(row)]
    return [row]


def encode_csv(value: Any) -> bytes:
    """Rows as RFC 4180 fields with ``\\n`` line ends (as the SageMaker toolkit writes; Line splitting expects it)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    rows: Iterable[Any] = value if isinstance(value, list | tuple) else [value]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in rows:
        writer.writerow(_csv_fields(row))
    return out.getvalue().encode("utf-8")


def encode_text(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8") if value.endswith("\n") or not value else (value + "\n").encode("utf-8")
    items = value if isinstance(value, list | tuple) else [value]
    return "".join((item if isinstance(item, str) else _dumps(item)) + "\n" for item in items).encode("utf-8")


CODECS: dict[str, Codec] = {
    content_types.JSON: Codec(content_types.JSON, decode_json, encode_json),
    content_types.JSONLINES: Codec(content_types.JSONLINES, decode_jsonlines, encode_jsonlines),
    content_types.CSV: Codec(content_types.CSV, decode_csv, encode_csv),
    content_types.TEXT: Codec(content_types.TEXT, decode_text, encode_text),
}


def register(codec: Codec) -> None:
    """Add or replace the codec for ``codec.content_type`` (a normalised media type)."""
    CODECS[content_types.normalize(codec.content_type)] = codec


def supported_types() -> list[str]:
    """The media types the registry can decode and encode, in registration order."""
    return list(CODECS)


def codec_for(content_type: str | None) -> Codec:
    """The codec for a Content-Type header value (parameters and case ignored); 415 when there is none."""
    media = content_types.normalize(content_type)
    if not media:
        raise UnsupportedContentType(f"the request has no Content-Type; send one of {', '.join(CODECS)}")
    try:
        return CODECS[media]
    except KeyError:
        raise UnsupportedContentType(
            f"content type {media!r} is not supported; send one of {', '.join(CODECS)}"
        ) from None


def body_text(body: bytes | str, content_type: str | None) -> str:
    """The body as text, using the Content-Type's charset (UTF-8 by default, a leading BOM dropped).

    A JSON body is also checked for lone surrogate escapes (``check_json_unicode``), so user ``input_fn``s that
    receive it as ``str`` never see one.
    """
    if isinstance(body, str):
        return body
    encoding = content_types.charset(content_type)
    try:
        text = body.decode(encoding)
    except LookupError:
        raise UnsupportedContentType(
            f"unknown charset {encoding!r} in Content-Type {content_type!r}"
        ) from None
    except UnicodeDecodeError as exc:
        raise BadInput(f"the body is not valid {encoding}: byte {exc.start} cannot be decoded") from None
    text = text.removeprefix("\ufeff")
    if content_types.normalize(content_type) in (content_types.JSON, content_types.JSONLINES):
        check_json_unicode(text, "the body")
    return text


def decode(body: bytes | str, content_type: str | None) -> Any:
    """Decode a request body by its Content-Type (see the module table); 415 unknown type, 400 malformed."""
    codec = codec_for(content_type)
    return codec.decode(body_text(body, content_type))


def negotiate(
    accept: str | None, default: str = content_types.JSON, supported: Iterable[str] | None = None
) -> str:
    """The first type in ``accept`` (best q first) that is supported; ``*/*`` or a missing header -> ``default``.

    ``type/*`` picks the first supported type of that family. Raises ``NotAcceptable`` (406) naming the
    supported types when nothing fits.
    """
    available = list(CODECS if supported is None else supported)
    for media in content_types.parse_accept(accept, default):
        if media in available:
            return media
        if media == content_types.ANY:
            return default if default in available else available[0]
        if media.endswith("/*"):
            family = media[:-1]
            if default.startswith(family) and default in available:
                return default
            for candidate in available:
                if candidate.startswith(family):
                    return candidate
    raise NotAcceptable(f"cannot produce any type in Accept {accept!r}; supported: {', '.join(available)}")


def encode(value: Any, content_type: str) -> bytes:
    """Encode ``value`` as ``content_type`` (a single media type); 406 when the type has no codec."""
    media = content_types.normalize(content_type)
    codec = CODECS.get(media)
    if codec is None:
        raise NotAcceptable(f"cannot produce {media!r}; supported: {', '.join(CODECS)}")
    return codec.encode(value)
