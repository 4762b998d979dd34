"""What transforming files needs from whoever runs them: ``FileContext`` for one file, ``JobContext`` for the loop
over a job's files, and ``StoreContext``, the implementation over the SQLite job store that ``runner.JobRunner``
uses.

``file_transform.FileTransform`` and ``file_loop.FileLoop`` see only these Protocols, never the runner, its lease
or its store, so a file can be transformed wherever something implements them (docs/transform.md, "Where a file
runs"): a Ray actor, for example, reports progress to its driver instead of writing SQLite itself.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from batchlane.jobs.parts import PartCheckpoint
from batchlane.jobs.state import FileState
from batchlane.jobs.store import JobStore


class Interrupted(Exception):
    """The job was asked to stop, ran past its deadline, or its runner lost its lease: abandon the file without
    committing."""


class FileContext(Protocol):
    """The sinks and the stop signal one input file is transformed with.

    ``log`` receives the job's log lines (``batchlane jobs logs``): per-record errors and warnings.
    """

    log: logging.Logger

    def check_interrupt(self) -> None:
        """Raise ``Interrupted`` when the file must be abandoned now (a stop, the job's deadline, a lost lease)."""
        ...

    def progress(self, input_key: str, *, records: int, failed: int, bytes_read: int) -> None:
        """Add a batch's worth of progress of the file (records answered, records failed, payload bytes sent)."""
        ...

    def warnings(self, input_key: str, count: int, message: str) -> None:
        """Set the file's result-count warnings: how many mini-batches differed and the first message."""
        ...

    def consolidated_path(self, input_key: str) -> Path:
        """Where the file's consolidated results (``JobOptions.consolidate``) go once the file is done."""
        ...


class JobContext(FileContext, Protocol):
    """``FileContext`` plus what the loop over a job's files records: each file's end, redo and server restart."""

    name: str

    @property
    def halted(self) -> bool:
        """Whether ``check_interrupt`` would raise (polled while a request waits for its answer)."""
        ...

    def file_done(self, input_key: str, *, records: int, failed: int) -> None:
        """The file is committed: its output is visible."""
        ...

    def file_failed(self, input_key: str, error: str) -> None:
        """The file failed; the job goes on with the next one and ends Failed."""
        ...

    def file_reset(self, input_key: str) -> None:
        """The file is redone from its start: forget its progress so far."""
        ...

    def server_restarted(self, number: int, message: str) -> None:
        """The model server is being restarted (the ``number``-th time in this run), for ``message``'s reason."""
        ...

    def file_parts(self, input_key: str) -> list[PartCheckpoint]:
        """The file's stored part plan (empty before it is planned), with each part's state and counts."""
        ...

    def plan_file_parts(self, input_key: str, parts: list[Any]) -> list[PartCheckpoint]:
        """Record the file's part plan (``transform.parts.Part`` objects) once; returns the stored plan."""
        ...

    def part_done(self, input_key: str, number: int, outcome: Any) -> None:
        """Part ``number`` of the file is committed (its staged object is written), with its ``FileOutcome``."""
        ...

    def parts_reset(self, input_key: str) -> None:
        """Forget the file's committed parts (the file failed): a retry redoes all of them."""
        ...


ProgressCallback = Callable[[str, dict[str, Any]], None]


@dataclass
class StoreContext:
    """A ``JobContext`` over job ``name`` in ``store``, whose writes are fenced by ``owner``'s lease.

    ``check_interrupt`` and ``is_halted`` come from the runner (its stop flags); ``on_progress`` receives the
    runner's ``"batch"``, ``"file"`` and ``"restart"`` events; ``consolidated_folder`` holds the consolidated parts.
    """

    store: JobStore
    name: str
    owner: str
    log: logging.Logger
    consolidated_folder: Path
    check_interrupt: Callable[[], None]
    is_halted: Callable[[], bool]
    on_progress: ProgressCallback

    @property
    def halted(self) -> bool:
        return self.is_halted()

    def progress(self, input_key: str, *, records: int, failed: int, bytes_read: int) -> None:
        if records or failed or bytes_read:
            self.store.add_progress(
                self.name,
                input_key,
                records=records,
                records_failed=failed,
                bytes_read=bytes_read,
                owner=self.owner,
            )
        self.on_progress("batch", {"records": records, "failed": failed, "bytes": bytes_read})

    def warnings(self, input_key: str, count: int, message: str) -> None:
        self.store.set_file_warnings(self.name, input_key, count, message, owner=self.owner)

    def consolidated_path(self, input_key: str) -> Path:
        return consolidate_part(self.consolidated_folder, input_key)

    def file_done(self, input_key: str, *, records: int, failed: int) -> None:
        self.store.mark_file(
            self.name,
            input_key,
            FileState.DONE,
            records=records,
            records_failed=failed,
            owner=self.owner,
        )
        self.on_progress("file", {"key": input_key, "state": "done"})

    def file_failed(self, input_key: str, error: str) -> None:
        self.store.mark_file(self.name, input_key, FileState.FAILED, error=error, owner=self.owner)
        self.on_progress("file", {"key": input_key, "state": "failed"})

    def file_reset(self, input_key: str) -> None:
        self.store.reset_progress(self.name, input_key, owner=self.owner)

    def server_restarted(self, number: int, message: str) -> None:
        total = self.store.add_restart(self.name, owner=self.owner)
        self.log.info("[batchlane]: %s (restarts of this job: %d)", message, total)
        self.on_progress("restart", {"number": number, "total": total})

    def file_parts(self, input_key: str) -> list[PartCheckpoint]:
        return self.store.parts(self.name, input_key)

    def plan_file_parts(self, input_key: str, parts: list[Any]) -> list[PartCheckpoint]:
        return self.store.add_parts(self.name, input_key, parts, owner=self.owner)

    def part_done(self, input_key: str, number: int, outcome: Any) -> None:
        self.store.mark_part(
            self.name,
            input_key,
            number,
            records=outcome.records,
            records_failed=outcome.failed,
            bytes_read=outcome.bytes_read,
            warnings=outcome.warnings,
            warning=outcome.first_warning,
            last_error=outcome.last_error,
            owner=self.owner,
        )
        self.on_progress("part", {"key": input_key, "number": number})

    def parts_reset(self, input_key: str) -> None:
        self.store.reset_parts(self.name, input_key, owner=self.owner)


def consolidate_part(folder: Path, input_key: str) -> Path:
    """The consolidated-results part of ``input_key`` under ``folder``: named by a stable digest of the key (not
    ``hash()``, which differs per process), so a resumed job finds the parts an earlier runner committed."""
    digest = hashlib.sha256(input_key.encode("utf-8", "surrogatepass")).hexdigest()[:24]
    return folder / f"{digest}.jsonl"
