"""The CloudWatch Logs actions of the control plane (``X-Amz-Target: Logs_20140328.<Action>``, AWS JSON 1.1).

What the SageMaker Python SDK's ``Transformer.transform()`` / ``wait()`` (``logs=True``) and ``aws logs`` read, served
from the job logs batchlane writes (streams and events: ``log_streams``). One log group, ``/aws/sagemaker/
TransformJobs``; requests are signed for the service ``logs``.

* ``DescribeLogStreams``: ``logStreamNamePrefix``, ``orderBy`` (``LogStreamName`` | ``LastEventTime``),
  ``descending``, ``limit`` (1–50, default 50), ``nextToken``.
* ``GetLogEvents``: ``startFromHead`` (default false: the latest events), ``startTime`` (inclusive) / ``endTime``
  (exclusive) in epoch ms, ``limit`` (1–10000, default 10000, and at most 1 MB of messages), ``nextToken``.
  ``nextForwardToken`` / ``nextBackwardToken`` are ``f/<position>`` / ``b/<position>``; at the end of the stream the
  token given comes back unchanged, as AWS does (readers stop when a page is empty or the token repeats).
* ``FilterLogEvents``: ``logStreamNames`` or ``logStreamNamePrefix`` (not both), ``startTime``/``endTime``,
  ``filterPattern``, ``limit``, ``nextToken``; events of all streams in timestamp order, with ``eventId``.
  ``filterPattern`` subset: terms and ``"quoted phrases"`` that must all occur (case-sensitive substrings), or
  ``?term ?term`` of which one must; JSON (``{ … }``) and space-delimited (``[ … ]``) patterns are refused.

Errors are CloudWatch's: an unknown log group or stream → ``ResourceNotFoundException`` ("The specified log group
does not exist." / "The specified log stream does not exist."); a bad parameter or token →
``InvalidParameterException``.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import shlex
import zlib
from collections.abc import Callable, Mapping
from typing import Any

from batchlane.api.log_streams import LOG_GROUP, LogEvent, LogStream, find_stream, group_streams
from batchlane.api.protocol import AwsError
from batchlane.jobs.store import JobStore

log = logging.getLogger(__name__)

SERVICE = "logs"
TARGET_PREFIX = "Logs_20140328"
MAX_PAGE_BYTES = 1_048_576  # GetLogEvents/FilterLogEvents answer at most 1 MB of events
EVENT_OVERHEAD_BYTES = 26  # what CloudWatch counts per event on top of its message
_TOKEN = re.compile(r"([fb])/(\d{1,56})")


def _invalid(message: str) -> AwsError:
    return AwsError("InvalidParameterException", message)


def _constraint(field: str, value: Any, constraint: str) -> AwsError:
    return _invalid(
        f"1 validation error detected: Value {value!r} at '{field}' failed to satisfy constraint: {constraint}"
    )


def _int(params: Mapping[str, Any], field: str, low: int, high: int | None = None) -> int | None:
    value = params.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _constraint(field, value, "Member must be an integer")
    if value < low:
        raise _constraint(field, value, f"Member must have value greater than or equal to {low}")
    if high is not None and value > high:
        raise _constraint(field, value, f"Member must have value less than or equal to {high}")
    return value


def _str(params: Mapping[str, Any], field: str) -> str | None:
    value = params.get(field)
    if value is not None and not isinstance(value, str):
        raise _constraint(field, value, "Member must be a string")
    return value


def _bool(params: Mapping[str, Any], field: str, default: bool) -> bool:
    value = params.get(field, default)
    if not isinstance(value, bool):
        raise _constraint(field, value, "Member must be a boolean")
    return value


def _encode(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


def _decode(token: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError):
        raise _invalid("The specified nextToken is invalid.") from None


def _in_window(event: LogEvent, start: int | None, end: int | None) -> bool:
    return (start is None or event.timestamp >= start) and (end is None or event.timestamp < end)


def _capped(events: list[Any], limit: int, size: Callable[[Any], int]) -> list[Any]:
    """The first events of ``events`` that fit ``limit`` and ``MAX_PAGE_BYTES`` (always at least one)."""
    taken: list[Any] = []
    total = 0
    for event in events[:limit]:
        total += size(event) + EVENT_OVERHEAD_BYTES
        if taken and total > MAX_PAGE_BYTES:
            break
        taken.append(event)
    return taken


def _message_bytes(event: LogEvent) -> int:
    return len(event.message.encode("utf-8"))


def compile_filter(pattern: str | None) -> Callable[[str], bool]:
    """A predicate for ``filterPattern``'s supported subset (see the module docstring); ``InvalidParameterException``
    for patterns outside it."""
    text = (pattern or "").strip()
    if not text or text == '""':
        return lambda message: True
    if text[0] in "{[":
        raise _invalid(
            f"filterPattern {pattern!r}: batchlane supports terms, quoted phrases and ?term alternatives, "
            "not JSON or space-delimited patterns"
        )
    try:
        terms = shlex.split(text)
    except ValueError as exc:
        raise _invalid(f"Invalid character(s) in term '{pattern}': {exc}") from None
    optional = [term[1:] for term in terms if term.startswith("?") and len(term) > 1]
    if optional:
        if len(optional) != len(terms):
            raise _invalid(f"filterPattern {pattern!r}: mix ?term alternatives with nothing else")
        return lambda message: any(term in message for term in optional)
    return lambda message: all(term in message for term in terms)


class LogsApi:
    """Dispatches CloudWatch Logs actions over the job store's log files."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.actions: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "DescribeLogStreams": self.describe_log_streams,
            "GetLogEvents": self.get_log_events,
            "FilterLogEvents": self.filter_log_events,
        }

    def handle(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        """Run ``action``; any failure comes out as an ``AwsError`` in CloudWatch Logs' shape."""
        handler = self.actions.get(action)
        if handler is None:
            raise AwsError(
                "UnknownOperationException",
                f"batchlane serves CloudWatch Logs {', '.join(sorted(self.actions))}; not {action!r}",
            )
        try:
            return handler(params)
        except AwsError:
            raise
        except Exception:
            log.exception("Logs.%s failed", action)
            raise AwsError(
                "ServiceUnavailableException", "An internal error occurred; see the server log", status=500
            ) from None

    def _check_group(self, params: Mapping[str, Any]) -> None:
        name = _str(params, "logGroupName")
        identifier = _str(params, "logGroupIdentifier")
        if name is not None and identifier is not None:
            raise _invalid("LogGroupName and LogGroupIdentifier are mutually exclusive parameters.")
        if identifier is not None and identifier.startswith("arn:"):
            identifier = identifier.split(":log-group:", 1)[-1].removesuffix(":*")
        group = name if name is not None else identifier
        if group is None:
            raise _invalid("Either LogGroupName or LogGroupIdentifier must be provided.")
        if group != LOG_GROUP:
            raise AwsError("ResourceNotFoundException", "The specified log group does not exist.")

    def _arn(self, stream: str) -> str:
        return (
            f"arn:aws:logs:{self.store.region}:{self.store.account}:log-group:{LOG_GROUP}:log-stream:{stream}"
        )

    # -- DescribeLogStreams ------------------------------------------------------------------------------------
    def describe_log_streams(self, params: dict[str, Any]) -> dict[str, Any]:
        self._check_group(params)
        prefix = _str(params, "logStreamNamePrefix") or ""
        order_by = _str(params, "orderBy") or "LogStreamName"
        if order_by not in ("LogStreamName", "LastEventTime"):
            raise _constraint(
                "orderBy", order_by, "Member must satisfy enum value set: [LogStreamName, LastEventTime]"
            )
        if prefix and order_by == "LastEventTime":
            raise _invalid("Cannot order by LastEventTime with a logStreamNamePrefix.")
        descending = _bool(params, "descending", False)
        limit = _int(params, "limit", 1, 50) or 50
        offset = self._offset(_str(params, "nextToken"))
        described = [self._describe(stream) for stream in group_streams(self.store, prefix)]
        if order_by == "LastEventTime":
            described.sort(key=lambda s: (s.get("lastEventTimestamp", 0), s["logStreamName"]))
        if descending:
            described.reverse()
        page = described[offset : offset + limit]
        answer: dict[str, Any] = {"logStreams": page}
        if offset + limit < len(described):
            answer["nextToken"] = _encode({"o": offset + limit})
        return answer

    @staticmethod
    def _offset(token: str | None) -> int:
        if token is None:
            return 0
        decoded = _decode(token)
        if not isinstance(decoded, dict) or not isinstance(decoded.get("o"), int) or decoded["o"] < 0:
            raise _invalid("The specified nextToken is invalid.")
        return decoded["o"]

    def _describe(self, stream: LogStream) -> dict[str, Any]:
        events = stream.events()
        described: dict[str, Any] = {
            "logStreamName": stream.name,
            "creationTime": stream.creation_time,
            "arn": self._arn(stream.name),
            "storedBytes": 0,
        }
        if events:
            described["firstEventTimestamp"] = events[0].timestamp
            described["lastEventTimestamp"] = events[-1].timestamp
            described["lastIngestionTime"] = events[-1].ingestion_time
        return described

    # -- GetLogEvents ------------------------------------------------------------------------------------------
    def get_log_events(self, params: dict[str, Any]) -> dict[str, Any]:
        self._check_group(params)
        name = _str(params, "logStreamName")
        if not name:
            raise _constraint("logStreamName", name, "Member must have length greater than or equal to 1")
        start, end = _int(params, "startTime", 0), _int(params, "endTime", 0)
        limit = _int(params, "limit", 1, 10_000) or 10_000
        from_head = _bool(params, "startFromHead", False)
        token = _str(params, "nextToken")
        stream = find_stream(self.store, name)
        if stream is None:
            raise AwsError("ResourceNotFoundException", "The specified log stream does not exist.")
        events = [e for e in stream.events() if _in_window(e, start, end)]
        if token is not None:
            match = _TOKEN.fullmatch(token)
            if match is None:
                raise _invalid("The specified nextToken is invalid.")
            forward, position = match.group(1) == "f", int(match.group(2))
        else:
            forward, position = from_head, None
        if forward:
            after = [e for e in events if position is None or e.index >= position]
            page = _capped(after, limit, _message_bytes)
        else:
            before = [e for e in events if position is None or e.index < position]
            page = list(reversed(_capped(list(reversed(before)), limit, _message_bytes)))
        if page:
            next_forward = f"f/{page[-1].index + 1:056d}"
            next_backward = f"b/{page[0].index:056d}"
        else:
            # Nothing more this way: the token given comes back (AWS's end-of-stream signal).
            here = position if position is not None else (events[-1].index + 1 if events else 0)
            next_forward = token if token is not None and forward else f"f/{here:056d}"
            next_backward = token if token is not None and not forward else f"b/{here:056d}"
        return {
            "events": [
                {"timestamp": e.timestamp, "message": e.message, "ingestionTime": e.ingestion_time}
                for e in page
            ],
            "nextForwardToken": next_forward,
            "nextBackwardToken": next_backward,
        }

    # -- FilterLogEvents ---------------------------------------------------------------------------------------
    def filter_log_events(self, params: dict[str, Any]) -> dict[str, Any]:
        self._check_group(params)
        names = params.get("logStreamNames")
        prefix = _str(params, "logStreamNamePrefix")
        if names is not None and prefix is not None:
            raise _invalid("logStreamNames and logStreamNamePrefix are mutually exclusive parameters.")
        if names is not None and (
            not isinstance(names, list)
            or not all(isinstance(n, str) for n in names)
            or not 1 <= len(names) <= 100
        ):
            raise _constraint("logStreamNames", names, "Member must be a list of 1 to 100 stream names")
        start, end = _int(params, "startTime", 0), _int(params, "endTime", 0)
        limit = _int(params, "limit", 1, 10_000) or 10_000
        matches = compile_filter(_str(params, "filterPattern"))
        after = self._cursor(_str(params, "nextToken"))
        if names is not None:
            wanted = set(names)
            streams = [s for s in group_streams(self.store) if s.name in wanted]
        else:
            streams = group_streams(self.store, prefix or "")
        found = [
            (event.timestamp, stream.name, event.index, event)
            for stream in streams
            for event in stream.events()
            if _in_window(event, start, end) and matches(event.message)
        ]
        found.sort(key=lambda item: item[:3])
        if after is not None:
            found = [item for item in found if item[:3] > after]
        page = _capped(found, limit, lambda item: _message_bytes(item[3]))
        answer: dict[str, Any] = {
            "events": [
                {
                    "logStreamName": stream,
                    "timestamp": event.timestamp,
                    "message": event.message,
                    "ingestionTime": event.ingestion_time,
                    "eventId": f"{event.timestamp:020d}{zlib.crc32(stream.encode()):010d}{index:010d}",
                }
                for _, stream, index, event in page
            ],
            "searchedLogStreams": [{"logStreamName": s.name, "searchedCompletely": True} for s in streams],
        }
        if len(page) < len(found):
            answer["nextToken"] = _encode({"t": page[-1][0], "s": page[-1][1], "i": page[-1][2]})
        return answer

    @staticmethod
    def _cursor(token: str | None) -> tuple[int, str, int] | None:
        if token is None:
            return None
        decoded = _decode(token)
        try:
            return int(decoded["t"]), str(decoded["s"]), int(decoded["i"])
        except (KeyError, TypeError, ValueError):
            raise _invalid("The specified nextToken is invalid.") from None
