"""The queue message that asks for a transform: schema, parsing with clear reasons, the job name, error classes.

The seed's clients send ``{"input_path", "output_path", "instance_type", "instance_count"}``; batchlane also accepts
``model_name``, ``job_name`` / ``idempotency_key``, ``content_type``, ``split_type``, ``strategy`` and ``accept``.
Unknown fields are refused, so a typo is an error rather than a silently ignored option.

Paths follow the one URI grammar, ``storage.uri`` (docs/names-and-uris.md), as CreateTransformJob's do: relative
paths are refused (the worker may run in another directory; ``batchlane queue send`` resolves them before sending),
and so is an output prefix that overlaps the input prefix (``storage.uri.prefix_relation``). Names and instance
types follow ``aws_names``.

``job_name_for`` derives the transform job's name without a clock (docs/reliability.md): duplicate deliveries and
reordered JSON keys give the same name, so the second start finds the first job instead of making another.

``is_permanent`` tells a worker which failures to dead-letter at once (bad message, conflicting spec, missing input)
and which to retry (everything else: storage, network, the queue itself).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from batchlane import aws_names
from batchlane.errors import (
    BadInput,
    Conflict,
    NotAcceptable,
    NotFound,
    PayloadTooLarge,
    StaleReceipt,
    UnsupportedContentType,
    ValidationError,
)
from batchlane.queue.base import MAX_BODY_BYTES
from batchlane.storage import uri as uri_grammar

MAX_INSTANCE_COUNT = 100
MEDIA_TYPE_RE = re.compile(r"^[A-Za-z0-9][\w!#$&^.+-]*/[A-Za-z0-9*][\w!#$&^.+*-]*(\s*;.*)?$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def _fail(message: str) -> PydanticCustomError:
    return PydanticCustomError("batchlane", message)


def split_path(value: Any, field: str = "path") -> uri_grammar.Location:
    """The ``Location`` a message path names (unpacks as ``(scheme, bucket, path)``); ``ValidationError`` naming
    ``field`` with the reason if the path is not acceptable (``storage.uri``)."""
    return uri_grammar.parse(value, field=field)


def _check(problem: str | None) -> None:
    if problem is not None:
        raise _fail(problem)


# Fields checked by a rule shared with every other front door: field → its one-line problem finder.
_SHARED_RULES: dict[str, Callable[[Any], str | None]] = {
    "input_path": uri_grammar.problem,
    "output_path": uri_grammar.problem,
    "instance_type": aws_names.instance_type_problem,
    "model_name": aws_names.model_name_problem,
    "job_name": aws_names.job_name_problem,
}


class TransformMessage(BaseModel):
    """A request to run a batch transform, as sent on the queue. Build it with ``parse_message``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_path: str
    output_path: str
    instance_type: str
    instance_count: int
    model_name: str | None = None
    job_name: str | None = None
    idempotency_key: str | None = None
    content_type: str | None = None
    split_type: aws_names.SplitTypeName | None = None
    strategy: aws_names.BatchStrategyName | None = None
    accept: str | None = None

    @field_validator(*_SHARED_RULES, mode="before")
    @classmethod
    def _shared_rule(cls, value: Any, info: ValidationInfo) -> Any:
        # The same rules as CreateTransformJob's fields (storage.uri, aws_names); an optional field may be null.
        if value is not None or cls.model_fields[info.field_name or ""].is_required():
            _check(_SHARED_RULES[info.field_name or ""](value))
        return value

    @field_validator("instance_count", mode="before")
    @classmethod
    def _instance_count(cls, value: Any) -> int:
        # bool is a subclass of int in Python, and JSON true would otherwise pass as 1.
        if isinstance(value, bool):
            raise _fail(f"must be an integer, not a boolean ({str(value).lower()})")
        if not isinstance(value, int):
            raise _fail(f"must be an integer, got {type(value).__name__} {value!r}")
        if not 1 <= value <= MAX_INSTANCE_COUNT:
            raise _fail(f"must be between 1 and {MAX_INSTANCE_COUNT}, got {value}")
        return value

    @field_validator("idempotency_key", mode="before")
    @classmethod
    def _idempotency_key(cls, value: Any) -> Any:
        if value is not None and (
            not isinstance(value, str) or not 1 <= len(value) <= 256 or _CONTROL_RE.search(value)
        ):
            raise _fail("must be 1-256 characters without control characters")
        return value

    @field_validator("content_type", "accept", mode="before")
    @classmethod
    def _media_type(cls, value: Any) -> Any:
        if value is not None and (
            not isinstance(value, str) or len(value) > 256 or not MEDIA_TYPE_RE.match(value)
        ):
            raise _fail(f"must be a media type such as text/csv or application/jsonlines, got {value!r}")
        return value

    @model_validator(mode="after")
    def _no_overlap(self) -> TransformMessage:
        # The same rule as CreateTransformJob's (storage.uri.prefix_relation), on canonical locations.
        relation = uri_grammar.prefix_relation(self.input_path, self.output_path)
        if relation == "inside":
            raise _fail(
                f"output_path {self.output_path!r} is inside input_path {self.input_path!r} (raw prefix "
                "match): outputs would be read back as inputs; choose an output prefix outside the input"
            )
        if relation == "contains":
            raise _fail(
                f"output_path {self.output_path!r} contains input_path {self.input_path!r} (raw prefix "
                "match): outputs could overwrite inputs; choose prefixes that do not overlap"
            )
        return self

    def to_body(self) -> str:
        """The message as compact JSON, leaving out unset optional fields (what ``batchlane queue send`` sends)."""
        return self.model_dump_json(exclude_none=True)


FIELDS = tuple(TransformMessage.model_fields)


def _describe(error: Mapping[str, Any]) -> tuple[str, str]:
    field = ".".join(str(part) for part in error.get("loc", ())) or "message"
    kind = error.get("type")
    if kind == "extra_forbidden":
        return field, f"unknown field (allowed: {', '.join(FIELDS)})"
    if kind == "missing":
        return field, "is required"
    reason = str(error.get("msg", "is invalid"))
    if field == "message":  # a whole-message rule: its reason starts with the field it blames
        blamed = reason.split(" ", 1)[0]
        if blamed in FIELDS:
            return blamed, reason.split(" ", 1)[1]
    return field, reason


def parse_message(data: str | bytes | Mapping[str, Any]) -> TransformMessage:
    """Validate a message body (JSON text, bytes, or an already decoded object) into a ``TransformMessage``.

    Raises ``PayloadTooLarge`` over 1 MiB and ``ValidationError`` otherwise, one line naming every bad field
    (``field`` is set to the first)::

        invalid message: instance_count: must be an integer, not a boolean (true); colour: unknown field (…)
    """
    if isinstance(data, bytes | bytearray):
        if len(data) > MAX_BODY_BYTES:
            raise PayloadTooLarge(
                f"message is {len(data)} bytes; the limit is {MAX_BODY_BYTES} (1 MiB)", field="body"
            )
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValidationError(
                f"message is not UTF-8: {exc.reason} at byte {exc.start}", field="body"
            ) from None
    if isinstance(data, str):
        size = len(data.encode("utf-8", "surrogatepass"))
        if size > MAX_BODY_BYTES:
            raise PayloadTooLarge(
                f"message is {size} bytes; the limit is {MAX_BODY_BYTES} (1 MiB)", field="body"
            )
        try:
            obj = json.loads(data)
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"message is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", field="body"
            ) from None
    else:
        obj = data
    if not isinstance(obj, Mapping):
        raise ValidationError(f"message must be a JSON object, got {_json_type(obj)}", field="body")
    if not isinstance(data, str):
        size = len(json.dumps(obj, default=str).encode("utf-8"))
        if size > MAX_BODY_BYTES:
            raise PayloadTooLarge(
                f"message is {size} bytes; the limit is {MAX_BODY_BYTES} (1 MiB)", field="body"
            )
    try:
        return TransformMessage.model_validate(dict(obj))
    except pydantic.ValidationError as exc:
        problems = [_describe(error) for error in exc.errors()]
        text = "; ".join(f"{field}: {reason}" if field != "message" else reason for field, reason in problems)
        raise ValidationError(f"invalid message: {text}", field=problems[0][0]) from None


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null" if value is None else type(value).__name__


def canonical_json(message: TransformMessage) -> str:
    """Sorted keys, every field present (defaults filled), no whitespace: equal requests give equal text."""
    return json.dumps(
        message.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def _slug(text: str, limit: int) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:limit].strip("-")


def job_name_for(message: TransformMessage | str | bytes | Mapping[str, Any]) -> str:
    """The transform job's name for a message; deterministic, never from a clock.

    * ``job_name`` when given, as is;
    * else from ``idempotency_key``: ``bl-<key slug, ≤ 32>-<16 hex of sha256(key)>``;
    * else from the content: ``bl-<last input path segment slug, ≤ 24>-<20 hex of sha256(canonical JSON)>``.

    Always matches SageMaker's ``[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}``.
    """
    if not isinstance(message, TransformMessage):
        message = parse_message(message)
    if message.job_name:
        return message.job_name
    if message.idempotency_key:
        digest = hashlib.sha256(message.idempotency_key.encode("utf-8")).hexdigest()[:16]
        slug = _slug(message.idempotency_key, 32)
    else:
        digest = hashlib.sha256(canonical_json(message).encode("utf-8")).hexdigest()[:20]
        slug = _slug(split_path(message.input_path).path.rstrip("/").rsplit("/", 1)[-1], 24)
    return f"bl-{slug}-{digest}" if slug else f"bl-{digest}"


# Failures that the same message will hit again however often it is retried.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    ValidationError,
    BadInput,
    PayloadTooLarge,
    NotFound,
    Conflict,
    UnsupportedContentType,
    NotAcceptable,
    pydantic.ValidationError,
    json.JSONDecodeError,
    UnicodeDecodeError,
)


def is_permanent(exc: BaseException) -> bool:
    """Whether retrying cannot help: dead-letter the message at once (True) or let it be redelivered (False).

    Permanent: validation (ValidationError, BadInput, PayloadTooLarge, bad JSON/UTF-8), a spec that conflicts with an
    existing model or job (Conflict), something that does not exist (NotFound: input prefix, model), unsupported
    content types. Transient: everything else, including storage and queue outages, model errors and unknown
    exceptions. A StaleReceipt is about the lease, not the message: transient (the new holder will finish it).
    """
    if isinstance(exc, StaleReceipt):
        return False
    return isinstance(exc, PERMANENT_ERRORS)


def check_input_exists(input_path: str, env: Mapping[str, str] | None = None) -> int:
    """Make sure ``input_path`` names at least one object (raw prefix, as transform jobs list inputs).

    Returns how many objects were seen (stops counting at 1 000). Raises ``ValidationError`` (field
    ``input_path``) when nothing is there or the bucket does not exist; storage outages raise their own
    (transient) errors. Local paths and ``file://`` are checked on this machine, ``s3://`` through the S3 endpoint.
    """
    from batchlane.storage import open_store

    split_path(input_path, "input_path")
    try:
        store, prefix = open_store(input_path, env, field="input_path")
        count = 0
        for _ in store.list(prefix):
            count += 1
            if count >= 1000:
                break
    except NotFound as exc:
        raise ValidationError(f"input_path {input_path!r}: {exc}", field="input_path") from None
    if count == 0:
        raise ValidationError(
            f"input_path {input_path!r}: no input objects at or under this prefix", field="input_path"
        )
    return count
