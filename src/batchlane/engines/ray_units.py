"""The work unit of the ray engine and what a replica sends back for it (docs/ray.md, "How work is split").

A ``WorkUnit`` is what one replica actor transforms in one call: today a whole input object, named by its keys
and the root URLs of the input and output stores (a replica on another node opens the stores itself; nothing of the
object passes through the driver). ``units_for`` turns a job's pending checkpoints into units; it is the one place
that changes when byte-range parts become the unit. ``UnitResult`` is a replica's answer: the counts, warnings,
log lines and consolidated lines of the unit, which the driver (the only writer of the job store) commits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from batchlane.jobs.state import FileState
from batchlane.jobs.store import FileCheckpoint
from batchlane.storage.base import ObjectStore


def store_root(store: ObjectStore) -> str:
    """A URL that ``storage.uri.open_store`` turns back into ``store`` with the key ``""``."""
    url = store.url_for("")
    return url if url.endswith("/") else url + "/"


@dataclass(frozen=True)
class WorkUnit:
    """One unit of a job for one replica: input object ``input_key`` (``size`` bytes) of the store at ``in_root``,
    transformed into ``output_key`` of the store at ``out_root`` (atomically: a replica killed mid-unit leaves no
    visible output, and a unit re-run elsewhere writes the same object again)."""

    input_key: str
    output_key: str
    size: int
    in_root: str
    out_root: str

    def checkpoint(self) -> FileCheckpoint:
        """The pending checkpoint ``file_transform.FileTransform`` transforms."""
        return FileCheckpoint(
            input_key=self.input_key,
            output_key=self.output_key,
            size=self.size,
            state=FileState.PENDING,
            records=0,
            records_failed=0,
            bytes_done=0,
            error=None,
            updated=datetime.now(UTC),
        )


def units_for(pending: list[FileCheckpoint], in_store: ObjectStore, out_store: ObjectStore) -> list[WorkUnit]:
    """The work units of a job's pending files, in plan order: one per file."""
    in_root, out_root = store_root(in_store), store_root(out_store)
    return [WorkUnit(f.input_key, f.output_key, f.size, in_root, out_root) for f in pending]


@dataclass
class UnitResult:
    """What a replica made of a unit. ``error`` (with the invocation ``kind``) when the file failed (the job goes on
    and ends Failed); else the records answered and failed. ``log_lines`` go to the job's log; ``consolidated`` is
    the unit's consolidated JSON Lines (``JobOptions.consolidate``), or None; ``replica`` names the actor."""

    records: int = 0
    failed: int = 0
    bytes_read: int = 0
    warnings: int = 0
    first_warning: str | None = None
    error: str | None = None
    kind: str | None = None
    log_lines: list[str] = field(default_factory=list)
    consolidated: bytes | None = None
    replica: str = ""
