"""Queues with SQS semantics: the embedded SQLite queue (default) and Amazon SQS, behind one Protocol.

``open_queue`` picks the backend from a URL:

=====================================================  ===========================================================
``batchlane-jobs`` (a bare name)                       the embedded queue in ``<BATCHLANE_HOME>/queue.db``
``sqlite:///abs/path/queue.db?queue=NAME``             the embedded queue in that file (``NAME`` defaults to
                                                       ``batchlane-jobs``)
``sqs://NAME``                                         the existing SQS queue NAME (endpoint from the environment)
``https://sqs.REGION.amazonaws.com/ACCOUNT/NAME``      that SQS queue; a non-AWS URL (moto, LocalStack) also names
                                                       the endpoint unless ``AWS_ENDPOINT_URL_SQS`` is set
=====================================================  ===========================================================

With no argument, ``$BATCHLANE_QUEUE`` or ``batchlane-jobs``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from batchlane import settings
from batchlane.errors import ValidationError
from batchlane.queue.base import (
    DEFAULT_MAX_RECEIVE_COUNT,
    DEFAULT_QUEUE_NAME,
    DEFAULT_RETENTION_S,
    DEFAULT_VISIBILITY_TIMEOUT_S,
    MAX_BODY_BYTES,
    DeadLetter,
    Message,
    Queue,
    Receipt,
    validate_body,
    validate_queue_name,
)

QUEUE_DB_NAME = "queue.db"


def default_queue_path(env: Mapping[str, str] | None = None) -> Path:
    """The embedded queue's file: ``<BATCHLANE_HOME>/queue.db``."""
    return settings.home_dir(env) / QUEUE_DB_NAME


def queue_target(url_or_name: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The queue a command means: the argument, else ``$BATCHLANE_QUEUE``, else ``batchlane-jobs``."""
    env = os.environ if env is None else env
    return (url_or_name or env.get(settings.BATCHLANE_QUEUE) or DEFAULT_QUEUE_NAME).strip()


def open_queue(
    url_or_name: str | None = None,
    env: Mapping[str, str] | None = None,
    *,
    clock: Callable[[], float] | None = None,
) -> Queue:
    """Open the queue ``url_or_name`` names (see the module docstring); embedded queues are created if missing.

    ``clock`` (Unix seconds) replaces the embedded queue's time source; SQS keeps its own time.
    """
    env = os.environ if env is None else env
    target = queue_target(url_or_name, env)
    parts = urlsplit(target)
    scheme = parts.scheme.lower()
    if scheme == "sqlite" or not scheme:
        from batchlane.queue.sqlite import SqliteQueue

        path, name = _embedded_location(target, env)
        return SqliteQueue(path, name, clock=clock)
    if scheme == "sqs":
        from batchlane.queue.sqs import SqsQueue

        return SqsQueue.from_name((parts.netloc + parts.path).strip("/"), env=env)
    if scheme in ("http", "https"):
        from batchlane.queue.sqs import SqsQueue

        if not parts.netloc or not parts.path.strip("/"):
            raise ValidationError(f"queue URL {target!r} is not an SQS queue URL (https://host/ACCOUNT/NAME)")
        return SqsQueue(target, env=env)
    raise ValidationError(
        f"unsupported queue URL {target!r}: use a queue name, sqlite:///path.db?queue=NAME, sqs://NAME "
        "or an SQS queue URL",
        field="queue",
    )


def _embedded_location(target: str, env: Mapping[str, str]) -> tuple[Path, str]:
    """(file, queue name) of an embedded queue: a bare name or ``sqlite:///path?queue=NAME``."""
    parts = urlsplit(target)
    if not parts.scheme:
        return default_queue_path(env), validate_queue_name(target)
    path = unquote(parts.netloc + parts.path)
    if not path:
        raise ValidationError(f"queue URL {target!r} names no file: use sqlite:///abs/path.db?queue=NAME")
    names = parse_qs(parts.query).get("queue") or [DEFAULT_QUEUE_NAME]
    return Path(path), validate_queue_name(names[0])


def create_queue(
    url_or_name: str | None = None,
    env: Mapping[str, str] | None = None,
    *,
    visibility_timeout_s: int = DEFAULT_VISIBILITY_TIMEOUT_S,
    max_receive_count: int = DEFAULT_MAX_RECEIVE_COUNT,
    retention_s: int = DEFAULT_RETENTION_S,
) -> Queue:
    """Create the queue and its dead-letter queue ``<name>-dlq``, or update their settings if they exist.

    On SQS this is ``ensure_queue`` (RedrivePolicy, 14 days' retention on the dead-letter queue); on the embedded
    queue it stores the settings in the file.
    """
    env = os.environ if env is None else env
    target = queue_target(url_or_name, env)
    parts = urlsplit(target)
    scheme = parts.scheme.lower()
    if scheme in ("sqs", "http", "https"):
        from batchlane.queue.sqs import ensure_queue, sqs_client

        name = (
            (parts.netloc + parts.path).strip("/")
            if scheme == "sqs"
            else parts.path.rstrip("/").rsplit("/")[-1]
        )
        client = sqs_client(env, queue_url=None if scheme == "sqs" else target)
        return ensure_queue(
            name,
            visibility_timeout=visibility_timeout_s,
            max_receive_count=max_receive_count,
            retention_s=retention_s,
            env=env,
            client=client,
        )
    from batchlane.queue.sqlite import SqliteQueue

    path, name = _embedded_location(target, env)
    return SqliteQueue(
        path,
        name,
        visibility_timeout_s=visibility_timeout_s,
        max_receive_count=max_receive_count,
        retention_s=retention_s,
    )


__all__ = [
    "create_queue",
    "DEFAULT_MAX_RECEIVE_COUNT",
    "DEFAULT_QUEUE_NAME",
    "DEFAULT_RETENTION_S",
    "DEFAULT_VISIBILITY_TIMEOUT_S",
    "MAX_BODY_BYTES",
    "DeadLetter",
    "Message",
    "Queue",
    "Receipt",
    "default_queue_path",
    "open_queue",
    "queue_target",
    "validate_body",
]
