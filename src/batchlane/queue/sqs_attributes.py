"""The message attributes batchlane reads and writes on SQS messages: their names and SQS's limits on them.

SQS messages are immutable and carry no dead-letter reason of their own, so a message that batchlane (or its Lambda
handler) dead-letters is sent to the dead-letter queue as a copy carrying the reason, attempts, source queue and
first send time as string attributes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ATTR_REASON = "batchlane-dead-letter-reason"
ATTR_ATTEMPTS = "batchlane-attempts"
ATTR_SOURCE = "batchlane-source-queue"
ATTR_SENT_AT = "batchlane-sent-at"
ATTR_ORIGINAL_ID = "batchlane-original-message-id"
ATTR_REDRIVE_COUNT = "batchlane-redrive-count"
ATTR_REDRIVEN_FROM = "batchlane-redriven-from"
ATTR_DEDUP_ID = "batchlane-dedup-id"
DEAD_LETTER_ATTRS = (ATTR_REASON, ATTR_ATTEMPTS, ATTR_SOURCE, ATTR_SENT_AT)
MAX_ATTRIBUTES = 10  # SQS's limit per message
MAX_REASON_CHARS = 4096


def string_attributes(message: Mapping[str, Any]) -> dict[str, str]:
    """The string-valued ``MessageAttributes`` of a received SQS message, as a plain mapping."""
    return {
        key: value["StringValue"]
        for key, value in (message.get("MessageAttributes") or {}).items()
        if "StringValue" in value
    }
