"""One error hierarchy for the whole project.

Each exception carries the HTTP status a server answers with, the AWS-style error code the control plane uses, and
the exit code the CLI ends with. Clients get ``str(error)`` (one short line); tracebacks go to the log only.

| class                  | HTTP | code                   | meaning                                            |
|------------------------|------|------------------------|----------------------------------------------------|
| BatchlaneError         | 500  | InternalFailure        | base class; an unexpected failure of our own       |
| ValidationError        | 400  | ValidationException    | a request/spec/config field is invalid             |
| BadInput               | 400  | BadInput               | a payload or record cannot be parsed               |
| NotFound               | 404  | ResourceNotFound       | a model, job, object or queue does not exist       |
| NotAcceptable          | 406  | NotAcceptable          | no supported type in the Accept header             |
| Conflict               | 409  | ResourceInUse          | the name exists with another spec / bad transition |
| PayloadTooLarge        | 413  | PayloadTooLarge        | a payload or record exceeds a configured limit     |
| UnsupportedContentType | 415  | UnsupportedMediaType   | no codec for the Content-Type                      |
| ModelError             | 500  | ModelError             | the model or user code raised while predicting     |
| ModelLoadError         | 500  | ModelLoadError         | the model or user module cannot be loaded          |
| ModelNotReady          | 503  | ServiceUnavailable     | the model is not loaded yet                        |
| StorageError           | 500  | StorageError           | an object store operation failed                   |
| InvocationError        | 502  | InvocationError        | calling the model container failed                 |
| AuthError              | 403  | AccessDeniedException  | missing or invalid credentials / signature         |
"""

from __future__ import annotations


class BatchlaneError(Exception):
    """Base class. ``status`` is the HTTP status, ``code`` the AWS-style error code, ``exit_code`` the CLI's."""

    status: int = 500
    code: str = "InternalFailure"
    exit_code: int = 1

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return self.message


class ValidationError(BatchlaneError):
    status = 400
    code = "ValidationException"
    exit_code = 2


class BadInput(BatchlaneError):
    status = 400
    code = "BadInput"


class NotFound(BatchlaneError):
    status = 404
    code = "ResourceNotFound"


class NotAcceptable(BatchlaneError):
    status = 406
    code = "NotAcceptable"


class Conflict(BatchlaneError):
    status = 409
    code = "ResourceInUse"


class PayloadTooLarge(BatchlaneError):
    status = 413
    code = "PayloadTooLarge"


class UnsupportedContentType(BatchlaneError):
    status = 415
    code = "UnsupportedMediaType"


class ModelError(BatchlaneError):
    status = 500
    code = "ModelError"


class ModelLoadError(BatchlaneError):
    status = 500
    code = "ModelLoadError"


class ModelNotReady(BatchlaneError):
    status = 503
    code = "ServiceUnavailable"


class StorageError(BatchlaneError):
    status = 500
    code = "StorageError"


class InvocationError(BatchlaneError):
    status = 502
    code = "InvocationError"


class AuthError(BatchlaneError):
    status = 403
    code = "AccessDeniedException"


class StaleReceipt(Conflict):
    """A delete/extend/dead-letter used a receipt whose lease is over (expired, released, or re-received).

    The embedded queue fences leases (docs/reliability.md): a zombie worker's ack must not touch a message another
    worker now holds. The code is the one SQS uses for an unusable receipt handle.
    """

    code = "ReceiptHandleIsInvalid"


class QueueError(BatchlaneError):
    """The queue service failed or could not be reached (transient: retry later)."""

    status = 503
    code = "ServiceUnavailable"


class AlreadyExists(Conflict):
    """A job or model with this name already exists; ``existing`` is its stored record (for idempotent callers).

    Callers that create "if missing" compare ``existing`` with what they asked for: same spec is success, a
    different spec is a real conflict (docs/reliability.md rows 13 and 21).
    """

    def __init__(self, message: str, *, existing: object = None, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.existing = existing
