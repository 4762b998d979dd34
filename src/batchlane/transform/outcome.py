"""What transforming one file (or one part of it) comes to: ``FileOutcome``, the ``FileFailed`` error, and the
file-level checks a file's parts share (the error ratio, the result-count warning line)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from batchlane.errors import BatchlaneError

if TYPE_CHECKING:
    from batchlane.transform.context import FileContext


class FileFailed(BatchlaneError):
    """One input file cannot be transformed; the job goes on with the next file and ends Failed. ``kind`` is the
    ``InvocationFailed.kind`` when a request failed (``"connection"``, ``"timeout"``, ...), else None."""

    def __init__(self, message: str, *, kind: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class FileOutcome:
    """What one file (or one part of it) came to: records answered and failed, bytes read, the first error, how
    many mini-batches answered another number of results than records (``record_count="lenient"``) with the first
    such message, and the last per-record error (for the ``max_error_ratio`` message). Picklable."""

    records: int = 0
    failed: int = 0
    bytes_read: int = 0
    first_error: str | None = None
    warnings: int = 0
    first_warning: str | None = None
    last_error: str | None = None

    def add(self, other: FileOutcome) -> None:
        """Add a later part's outcome to this one (in file order)."""
        self.records += other.records
        self.failed += other.failed
        self.bytes_read += other.bytes_read
        self.first_error = self.first_error or other.first_error
        self.warnings += other.warnings
        self.first_warning = self.first_warning or other.first_warning
        self.last_error = other.last_error or self.last_error


@dataclass
class BatchResult:
    """One mini-batch's output chunks, counts, consolidated lines and warnings."""

    chunks: list[bytes]
    ok: int
    failed: int
    consolidated: list[bytes] = field(default_factory=list)
    error: str | None = None
    result_columns: int | None = None  # for a pending CSV join header: the columns one result adds
    # Result-count warnings, counted when the batch is written: in input order, so the file's first warning is
    # its first mismatched mini-batch whichever answer came back first.
    warnings: list[str] = field(default_factory=list)


def error_ratio_failure(
    records: int, failed: int, ratio: float | None, last_error: str | None
) -> FileFailed | None:
    """The ``FileFailed`` to raise when more than ``ratio`` (``max_error_ratio``) of a file's answered records
    failed, else None."""
    total = records + failed
    if ratio is None or not total or failed / total <= ratio:
        return None
    return FileFailed(
        f"{failed} of {total} records failed, more than max_error_ratio={ratio:g}"
        + (f"; last error: {last_error}" if last_error else "")
    )


def warning_line(url: str, count: int, first: str | None) -> str:
    """The one warning a file's result-count mismatches make (job log and job store)."""
    more = f" ({count} mini-batches of this file differ)" if count > 1 else ""
    return f"{url}: {first}{more}"


def record_warnings(context: FileContext, input_key: str, url: str, outcome: FileOutcome) -> None:
    """Log and store a file's result-count warnings: once per file (all its parts together), with their number."""
    if not outcome.warnings:
        return
    message = warning_line(url, outcome.warnings, outcome.first_warning)
    context.log.info(
        "[batchlane]: warning: %s; the output holds the responses as returned (--record-count strict "
        "makes this an error)",
        message,
    )
    context.warnings(input_key, outcome.warnings, message)
