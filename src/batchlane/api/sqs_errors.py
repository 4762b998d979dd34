"""SQS's error codes, and batchlane's errors as SQS errors.

SQS answers JSON errors with a ``__type`` such as ``com.amazonaws.sqs#QueueDoesNotExist`` and sends the legacy
query-protocol code (``AWS.SimpleQueueService.NonExistentQueue``) in ``x-amzn-query-error``; botocore puts the
legacy code in ``Error.Code`` and still raises the modelled exception class. ``error_of`` is the one mapping from
queue errors to SQS codes, used for whole requests and for the ``Failed`` entries of batch calls alike.
"""

from __future__ import annotations

import logging

from batchlane.api.protocol import AwsError
from batchlane.errors import BatchlaneError, PayloadTooLarge, StaleReceipt, ValidationError

log = logging.getLogger(__name__)

TYPE_PREFIX = "com.amazonaws.sqs#"

# The legacy (query protocol) code of each error whose code differs, as SQS sends it in x-amzn-query-error.
_QUERY_CODES = {
    "QueueDoesNotExist": "AWS.SimpleQueueService.NonExistentQueue",
    "QueueNameExists": "QueueAlreadyExists",
    "MessageNotInflight": "AWS.SimpleQueueService.MessageNotInflight",
    "UnsupportedOperation": "AWS.SimpleQueueService.UnsupportedOperation",
    "EmptyBatchRequest": "AWS.SimpleQueueService.EmptyBatchRequest",
    "TooManyEntriesInBatchRequest": "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
    "BatchEntryIdsNotDistinct": "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
    "InvalidBatchEntryId": "AWS.SimpleQueueService.InvalidBatchEntryId",
    "BatchRequestTooLong": "AWS.SimpleQueueService.BatchRequestTooLong",
    "PurgeQueueInProgress": "AWS.SimpleQueueService.PurgeQueueInProgress",
}


def sqs_error(code: str, message: str, *, status: int = 400, sender: bool = True) -> AwsError:
    return AwsError(
        code,
        message,
        status=status,
        sender=sender,
        type_prefix=TYPE_PREFIX,
        query_code=_QUERY_CODES.get(code, code),
    )


def invalid_parameter(message: str) -> AwsError:
    return sqs_error("InvalidParameterValue", message)


def error_of(exc: Exception, action: str) -> AwsError:
    """``exc`` as the SQS error a client expects; unexpected failures are logged with ``action``."""
    if isinstance(exc, AwsError):
        return exc
    if isinstance(exc, StaleReceipt):
        return sqs_error("ReceiptHandleIsInvalid", exc.message)
    if isinstance(exc, PayloadTooLarge):
        return invalid_parameter(f"One or more parameters are invalid. Reason: {exc.message}")
    if isinstance(exc, ValidationError):
        if exc.field == "receipt":
            return sqs_error("ReceiptHandleIsInvalid", exc.message)
        if exc.field == "body":
            return sqs_error("InvalidMessageContents", exc.message)
        return invalid_parameter(exc.message)
    if isinstance(exc, BatchlaneError):
        if exc.status < 500:
            return invalid_parameter(exc.message)
        log.error("AmazonSQS.%s failed", action, exc_info=exc)
        return sqs_error(exc.code, exc.message, status=exc.status, sender=False)
    log.error("AmazonSQS.%s failed", action, exc_info=exc)
    return sqs_error(
        "InternalFailure", "An internal error occurred; see the server log", status=500, sender=False
    )
