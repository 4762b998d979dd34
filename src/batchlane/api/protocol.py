"""The AWS wire protocols the control plane speaks: JSON 1.0/1.1 (``X-Amz-Target``) and the SQS query protocol.

* JSON: a ``POST /`` whose ``X-Amz-Target`` is ``<prefix>.<Action>`` and whose body is a JSON object. Answers are
  JSON with ``Content-Type: application/x-amz-json-1.x``; timestamps go out as epoch seconds (what botocore's JSON
  parser reads); errors are ``{"__type": code, "message": text}`` with the code also in ``x-amzn-ErrorType``.
* Query (SQS before botocore moved it to JSON): form-encoded ``Action=…&Version=…`` parameters; answers and errors
  are XML in SQS's namespace. ``sqs.py`` turns the flattened parameters into the JSON shapes, so each action is
  written once.

``AwsError`` is the one error type the API layers raise; ``render_error`` writes it in the request's protocol.
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from xml.etree import ElementTree

from starlette.responses import Response

from batchlane.codecs import json_nesting_error

SQS_XML_NAMESPACE = "http://queue.amazonaws.com/doc/2012-11-05/"


class Protocol(StrEnum):
    JSON_1_0 = "json1.0"
    JSON_1_1 = "json1.1"
    QUERY = "query"

    @property
    def content_type(self) -> str:
        return {
            Protocol.JSON_1_0: "application/x-amz-json-1.0",
            Protocol.JSON_1_1: "application/x-amz-json-1.1",
            Protocol.QUERY: "text/xml",
        }[self]


class AwsError(Exception):
    """An error answered in AWS's shape.

    ``code`` is the error code clients match on (botocore's ``Error.Code`` / exception class), ``status`` the HTTP
    status, ``sender`` whether the caller is at fault (``Sender``/``Receiver`` in query errors). ``type_prefix`` is
    prepended to ``__type`` (SQS answers ``com.amazonaws.sqs#QueueDoesNotExist``); ``query_code`` is the legacy query
    code (``AWS.SimpleQueueService.NonExistentQueue``) sent in ``x-amzn-query-error`` and used in XML errors.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int = 400,
        sender: bool = True,
        type_prefix: str = "",
        query_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.sender = sender
        self.type_prefix = type_prefix
        self.query_code = query_code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def new_request_id() -> str:
    return str(uuid.uuid4())


def to_wire(value: Any) -> Any:
    """``value`` with every datetime turned into epoch seconds (JSON protocol timestamps), recursively."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return round(moment.timestamp(), 3)
    if isinstance(value, dict):
        return {key: to_wire(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_wire(item) for item in value]
    return value


def parse_timestamp(value: Any, field: str) -> datetime:
    """A request timestamp: epoch seconds (what botocore sends for JSON protocols) or ISO 8601 text."""
    from batchlane.errors import ValidationError

    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            pass
    elif isinstance(value, str):
        text = value.strip()
        try:
            return datetime.fromtimestamp(float(text), UTC)
        except (OverflowError, OSError, ValueError):
            pass
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
        except ValueError:
            pass
    raise ValidationError(
        f"1 validation error detected: Value {value!r} at '{field}' failed to satisfy constraint: "
        "Member must be a timestamp (epoch seconds or ISO 8601)",
        field=field,
    )


def decode_json_body(body: bytes) -> dict[str, Any]:
    """The JSON object of a JSON-protocol request (an empty body is ``{}``); ``SerializationException`` otherwise
    (malformed, nested deeper than the parser goes, or not an object), as AWS answers a body it cannot read."""
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise AwsError("SerializationException", f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        nesting = json_nesting_error(body.decode("utf-8", "replace"), "the request body")
        raise AwsError("SerializationException", nesting.message) from None
    if not isinstance(data, dict):
        raise AwsError("SerializationException", "the request body must be a JSON object")
    return data


def json_response(payload: dict[str, Any], protocol: Protocol, request_id: str) -> Response:
    body = json.dumps(to_wire(payload), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return Response(
        body.encode("utf-8"),
        status_code=200,
        media_type=protocol.content_type,
        headers={"x-amzn-RequestId": request_id},
    )


def xml_response(root: ElementTree.Element, request_id: str) -> Response:
    """A query-protocol answer: ``root`` (``<ActionResponse>``) plus its ``ResponseMetadata``."""
    root.set("xmlns", SQS_XML_NAMESPACE)
    metadata = ElementTree.SubElement(root, "ResponseMetadata")
    ElementTree.SubElement(metadata, "RequestId").text = request_id
    body = b'<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(root, encoding="utf-8")
    return Response(body, status_code=200, media_type="text/xml", headers={"x-amzn-RequestId": request_id})


def render_error(error: AwsError, protocol: Protocol, request_id: str) -> Response:
    """``error`` in the request's protocol (JSON ``__type``/``message``, or a query ``<ErrorResponse>``)."""
    headers = {"x-amzn-RequestId": request_id, "x-amzn-ErrorType": error.code}
    if protocol is Protocol.QUERY:
        root = ElementTree.Element("ErrorResponse", xmlns=SQS_XML_NAMESPACE)
        node = ElementTree.SubElement(root, "Error")
        ElementTree.SubElement(node, "Type").text = "Sender" if error.sender else "Receiver"
        ElementTree.SubElement(node, "Code").text = error.query_code or error.code
        ElementTree.SubElement(node, "Message").text = error.message
        ElementTree.SubElement(node, "Detail")
        ElementTree.SubElement(root, "RequestId").text = request_id
        body = b'<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(root, encoding="utf-8")
        return Response(body, status_code=error.status, media_type="text/xml", headers=headers)
    if error.query_code:
        headers["x-amzn-query-error"] = f"{error.query_code};{'Sender' if error.sender else 'Receiver'}"
    payload = {"__type": error.type_prefix + error.code, "message": error.message}
    return Response(
        json.dumps(payload, ensure_ascii=False).encode("utf-8"),
        status_code=error.status,
        media_type=protocol.content_type,
        headers=headers,
    )
