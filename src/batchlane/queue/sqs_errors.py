"""How the SQS backend reports failures: SQS's error codes, and botocore's exceptions, as batchlane's errors.

A missing queue is NotFound, a refused receipt handle StaleReceipt, a bad request ValidationError, anything else
(throttling, the endpoint down) QueueError. Batch calls report per-entry failures as codes, without an exception:
``error_for`` turns those into the same errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from batchlane.errors import BatchlaneError, NotFound, QueueError, StaleReceipt, ValidationError

NOT_FOUND_CODES = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
STALE_CODES = {"ReceiptHandleIsInvalid", "MessageNotInflight", "InvalidReceiptHandle"}
VALIDATION_CODES = {
    "InvalidMessageContents",
    "InvalidParameterValue",
    "InvalidAttributeValue",
    "InvalidAttributeName",
    "MissingParameter",
    "InvalidParameterCombination",
    "UnsupportedOperation",
}


def error_for(what: str, code: str, message: str) -> BatchlaneError:
    """Our error for an SQS error code: missing queue, stale receipt, bad request, or unavailable."""
    if code in NOT_FOUND_CODES:
        return NotFound(f"{what}: the SQS queue does not exist ({message or code})", field="queue")
    if code in STALE_CODES:
        return StaleReceipt(f"{what}: {code}: {message}", field="receipt")
    if code in VALIDATION_CODES:
        return ValidationError(f"{what}: {code}: {message}")
    return QueueError(f"{what}: {code or 'error'}: {message}")


@contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Turn botocore failures into our errors (see ``error_for``)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise error_for(what, error.get("Code", ""), error.get("Message", "")) from exc
    except BotoCoreError as exc:
        raise QueueError(f"{what}: {exc}") from exc
