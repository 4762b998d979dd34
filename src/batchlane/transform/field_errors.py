"""Pydantic validation errors in AWS's wording, naming the field path: shared by the request (``spec``) and
batchlane's job options (``options``)::

    1 validation error detected: Value 'Lines' at 'TransformInput.SplitType' failed to satisfy constraint:
    Member must satisfy enum value set: [None, Line, RecordIO, TFRecord]
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, get_args

import pydantic
from pydantic import BaseModel

from batchlane.errors import ValidationError


def _find_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _find_model(arg)
        if found is not None:
            return found
    return None


def _fields_at(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] | None = root
    for part in loc:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part) if model else None
        model = _find_model(info.annotation) if info else None
    return list(model.model_fields) if model else []


def show_value(value: Any) -> str:
    """A value as AWS messages print it: null, true, 42, or a quoted (and shortened) text."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
    return "'" + (text if len(text) <= 200 else text[:200] + "...") + "'"


def _constraint(error: Mapping[str, Any], root: type[BaseModel]) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind in ("aws_constraint", "aws_rule"):
        return ctx["message"]
    if kind == "missing":
        return "Member must not be null"
    if kind == "extra_forbidden":
        return "Unknown field; must be one of: " + ", ".join(_fields_at(root, tuple(error["loc"][:-1])))
    if kind == "literal_error":
        values = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        return f"Member must satisfy enum value set: [{', '.join(values)}]"
    bounds = {
        "greater_than_equal": ("value greater than or equal to", "ge"),
        "greater_than": ("value greater than", "gt"),
        "less_than_equal": ("value less than or equal to", "le"),
        "less_than": ("value less than", "lt"),
        "too_long": ("length less than or equal to", "max_length"),
        "too_short": ("length greater than or equal to", "min_length"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"Member must have {words} {ctx.get(key)}"
    for prefix, noun in (
        ("int", "an integer"),
        ("float", "a number"),
        ("string", "a string"),
        ("bool", "a boolean"),
        ("list", "a list"),
        ("dict", "an object"),
        ("model", "an object"),
    ):
        if kind.startswith(prefix):
            return f"Member must be {noun}"
    return str(error.get("msg", kind))


def to_validation_error(exc: pydantic.ValidationError, root: type[BaseModel]) -> ValidationError:
    """One ``ValidationError`` listing every problem of ``exc``; ``field`` is the first problem's path."""
    items: list[tuple[str, str]] = []
    for error in exc.errors():
        ctx = error.get("ctx") or {}
        parts = [*error["loc"], *([ctx["field"]] if ctx.get("field") else [])]
        path = ""
        for part in parts:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        value = (
            ctx["value"] if "value" in ctx else (None if error["type"] == "missing" else error.get("input"))
        )
        items.append(
            (
                path or "request",
                f"Value {show_value(value)} at '{path or 'request'}' failed to satisfy "
                f"constraint: {_constraint(error, root)}",
            )
        )
    count = len(items)
    message = f"{count} validation error{'s' if count != 1 else ''} detected: " + "; ".join(
        m for _, m in items
    )
    return ValidationError(message, field=items[0][0])
