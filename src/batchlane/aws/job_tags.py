"""What a SageMaker transform job started from a queue message carries in its tags, so that the retry function
(``aws.retry_handler``) can send the message again when the job fails after it started (docs/aws.md).

SageMaker tag values allow only letters, digits, spaces and ``_.:/=+-@`` and 256 characters each, and a resource
holds at most 50 tags, so the message travels base64-encoded in chunks: ``batchlane:message:0``, ``:1``, … The
attempt number (``queue.launcher`` ``batchlane-attempt``) is ``batchlane:attempt``. A message too large for
``MAX_MESSAGE_TAGS`` chunks (about 7.5 KB of JSON; the seed's messages are under 300 bytes) is tagged
``batchlane:message-omitted`` instead and is parked, not retried, when its job fails.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

TAG_ATTEMPT = "batchlane:attempt"
TAG_MESSAGE = "batchlane:message:"
TAG_OMITTED = "batchlane:message-omitted"
TAG_VALUE_CHARS = 256
# Leaves room under SageMaker's 50 tags per resource for the attempt tag and a few of the user's own.
MAX_MESSAGE_TAGS = 40


@dataclass(frozen=True)
class JobOrigin:
    """The queue message a job was started from (None when it was too large to tag) and its attempt number."""

    body: str | None
    attempt: int


def launch_tags(body: str, attempt: int) -> list[dict[str, str]]:
    """CreateTransformJob ``Tags`` recording ``body`` and ``attempt``."""
    encoded = base64.b64encode(body.encode("utf-8")).decode("ascii")
    chunks = [encoded[i : i + TAG_VALUE_CHARS] for i in range(0, len(encoded), TAG_VALUE_CHARS)] or [""]
    tags = [{"Key": TAG_ATTEMPT, "Value": str(attempt)}]
    if len(chunks) > MAX_MESSAGE_TAGS:
        return [*tags, {"Key": TAG_OMITTED, "Value": str(len(body.encode("utf-8")))}]
    return [*tags, *({"Key": f"{TAG_MESSAGE}{i}", "Value": chunk} for i, chunk in enumerate(chunks))]


def origin_from_tags(tags: Iterable[Mapping[str, str]]) -> JobOrigin | None:
    """The message and attempt a job's tags record; None for a job batchlane did not start (no attempt tag) or
    whose message chunks are incomplete or not base64."""
    values = {tag["Key"]: tag["Value"] for tag in tags}
    raw_attempt = values.get(TAG_ATTEMPT, "")
    if not raw_attempt.isdigit():
        return None
    attempt = int(raw_attempt)
    if TAG_OMITTED in values:
        return JobOrigin(None, attempt)
    chunks: list[str] = []
    while f"{TAG_MESSAGE}{len(chunks)}" in values:
        chunks.append(values[f"{TAG_MESSAGE}{len(chunks)}"])
    if not chunks:
        return None
    try:
        body = base64.b64decode("".join(chunks), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return JobOrigin(body, attempt)
