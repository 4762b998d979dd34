"""What the default handler reads from a decoded payload (the texts, blank records, ``parameters``) and how it
writes labels as text lines; the formats are described in ``batchlane.serving.classifier``."""

from __future__ import annotations

from typing import Any

from batchlane.errors import BadInput

_TEXT_FIELDS = ("text", "inputs")
# Hugging Face pipeline parameters a client may send that are meaningless here (we always truncate).
_IGNORED_PARAMETERS = {"truncation", "padding"}


def _text_of(record: Any, index: int, column: int) -> str | None:
    """The record's text, or None for a blank record (module docstring): a blank line of the payload. An explicit
    record with an empty text (``{"text": ""}``) is classified like any other."""
    cells = [record] if isinstance(record, str) else record if isinstance(record, list) else None
    if record is None or (cells is not None and not any(str(cell).strip() for cell in cells)):
        return None
    return _raw_text(record, index, column)


def _raw_text(record: Any, index: int, column: int) -> str:
    if isinstance(record, str):
        return record
    if isinstance(record, dict):
        if "text_pair" in record:
            raise BadInput(f"record {index} is a sentence pair; the default handler classifies single texts")
        for name in _TEXT_FIELDS:
            if isinstance(record.get(name), str):
                return record[name]
        raise BadInput(f"record {index} has no string 'text' or 'inputs' field (keys: {', '.join(record)})")
    if isinstance(record, list):  # a CSV row
        if len(record) <= column or not isinstance(record[column], str):
            raise BadInput(f"record {index} has no text in column {column + 1}")
        return record[column]
    raise BadInput(
        f"record {index} is a {type(record).__name__}; expected a string or an object with a 'text' field"
    )


def payload_texts(data: Any) -> tuple[list[str | None], dict[str, Any]]:
    """The texts to classify (None for a blank record) and the request parameters, from a decoded payload (see the
    module docstring)."""
    parameters: dict[str, Any] = {}
    if isinstance(data, dict) and "inputs" in data:
        parameters = data.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise BadInput("'parameters' must be a JSON object")
        inputs = data["inputs"]
        records = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(records, list):
            raise BadInput("'inputs' must be a string or a list of strings")
    elif isinstance(data, dict | str) or data is None:
        records = [data]
    elif isinstance(data, list):
        records = data
    else:
        raise BadInput(f"cannot find texts in a {type(data).__name__} payload")
    column = 0
    if records and records[0] and all(isinstance(r, list) for r in records):
        header = [str(cell).strip().lower() for cell in records[0]]
        for name in _TEXT_FIELDS:
            if name in header:
                column, records = header.index(name), records[1:]
                break
    if not records:
        raise BadInput("the payload holds no records")
    return [_text_of(record, i, column) for i, record in enumerate(records)], parameters


def _top_k(parameters: dict[str, Any], default: int, labels: int) -> int:
    unknown = set(parameters) - {"top_k"} - _IGNORED_PARAMETERS
    if unknown:
        raise BadInput(
            f"unsupported parameter(s) {', '.join(sorted(unknown))}; the default handler takes top_k"
        )
    if "top_k" not in parameters:
        return default
    value = parameters["top_k"]
    if value is None:  # the transformers pipeline's spelling of "all labels"
        return labels
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadInput(f"top_k must be a positive integer or null, got {value!r}")
    return value


def _label_line(item: Any) -> Any:
    if item is None:
        return ""
    if isinstance(item, dict) and "label" in item:
        return str(item["label"])
    if isinstance(item, list) and item and all(isinstance(x, dict) and "label" in x for x in item):
        return ",".join(str(x["label"]) for x in item)
    return item
