"""The work unit of the ray engine, a *part*, and the driver's book of a job's units (docs/ray.md, docs/parts.md).

A ``WorkUnit`` is what one replica actor transforms in one call: a whole input object (a file of one part, written
straight into its ``.out`` as the local engine does), or one byte-range part of a large uncompressed
Line/RecordIO/TFRecord object (staged as a numbered part object; ``transform.part_work``). Nothing of the object
passes through the driver: a replica opens the stores itself from their root URLs (``PartJob``).

``UnitBook`` is the driver's side: it plans each pending file's parts once (``transform.parts.plan_parts``, or the
plan stored by an earlier run, whose committed parts are not redone), and commits each ``UnitResult`` in the job
store; once every part of a file is in, it assembles the ``.out`` in record order (``part_work.finish_file``) and
marks the file done. The driver is the only writer of the job store.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from batchlane.jobs.store import FileCheckpoint
from batchlane.storage.base import ObjectStore
from batchlane.transform.context import Interrupted, StoreContext
from batchlane.transform.file_loop import FILE_ERRORS
from batchlane.transform.options import JobOptions
from batchlane.transform.outcome import FileOutcome, warning_line
from batchlane.transform.params import EffectiveParams
from batchlane.transform.part_assembly import remove_staged
from batchlane.transform.part_work import PartReport, apply_report, finish_file, stored_outcome
from batchlane.transform.parts import Part, part_size, plan_parts


@dataclass(frozen=True)
class WorkUnit:
    """Part ``part`` of the file ``checkpoint`` names, or the whole file (``part`` None: its ``.out`` is written
    directly, atomically: a replica killed mid-unit leaves no visible output, a re-run writes the same bytes)."""

    checkpoint: FileCheckpoint
    part: Part | None = None

    @property
    def key(self) -> tuple[str, int]:
        return self.checkpoint.input_key, self.part.number if self.part else 0

    def where(self) -> str:
        name = self.checkpoint.input_key
        return f"{name} part {self.part.number + 1} of {self.part.count}" if self.part else name


@dataclass
class UnitResult:
    """What a replica made of a unit: its ``outcome``, or ``error`` (with the invocation ``kind``) when the file
    failed (the job goes on and ends Failed). ``log_lines`` go to the job's log; ``consolidated`` holds a whole-file
    unit's consolidated JSON Lines (a part stages its own); ``replica`` names the actor."""

    outcome: FileOutcome | None = None
    error: str | None = None
    kind: str | None = None
    log_lines: list[str] = field(default_factory=list)
    consolidated: bytes | None = None
    replica: str = ""


class UnitBook:
    """The driver's book of a job's units over ``context`` (the job store, fenced by the driver's lease)."""

    def __init__(
        self,
        context: StoreContext,
        in_store: ObjectStore,
        out_store: ObjectStore,
        params: EffectiveParams,
        options: JobOptions,
    ) -> None:
        self.context = context
        self.in_store = in_store
        self.out_store = out_store
        self.params = params
        self.options = options
        self.remaining: dict[str, set[int]] = {}  # multi-part files: numbers of the parts not committed yet
        self.failed: set[str] = set()
        self.files: dict[str, FileCheckpoint] = {}

    def plan(self, pending: list[FileCheckpoint]) -> list[WorkUnit]:
        """The units of the pending files, in plan order: each file's stored plan, or a new one (streaming the
        object once here, holding one mini-batch at a time). Committed parts are left out."""
        units: list[WorkUnit] = []
        budget = part_size(self.options)
        for checkpoint in pending:
            key = checkpoint.input_key
            self.files[key] = checkpoint
            stored = self.context.file_parts(key)
            if not stored:
                planned = plan_parts(
                    self.in_store,
                    key,
                    checkpoint.size,
                    self.params,
                    self.options,
                    budget=budget,
                    check=self.context.check_interrupt,
                )
                stored = self.context.plan_file_parts(key, planned)
            if len(stored) == 1:
                units.append(WorkUnit(checkpoint))
                continue
            done = [row for row in stored if row.done]
            if done:
                # Committed by an earlier run: counted once, not redone.
                total = FileOutcome()
                for row in done:
                    total.add(stored_outcome(row))
                self.context.file_reset(key)
                self.context.progress(
                    key, records=total.records, failed=total.failed, bytes_read=total.bytes_read
                )
            self.remaining[key] = {row.number for row in stored if not row.done}
            if not self.remaining[key]:  # every part was in; the runner died before the file was marked done
                self._finish(checkpoint, "")
            units += [WorkUnit(checkpoint, Part.of(row)) for row in stored if not row.done]
        return units

    def wanted(self, unit: WorkUnit) -> bool:
        """Whether a queued unit still needs running (not when another part of its file failed)."""
        return unit.checkpoint.input_key not in self.failed

    def commit(self, unit: WorkUnit, result: UnitResult) -> None:
        """Record a replica's result (see the class docstring); a file's last part assembles its ``.out``."""
        checkpoint, key = unit.checkpoint, unit.checkpoint.input_key
        if key in self.failed:
            return
        if result.error is not None or result.outcome is None:
            if self.context.halted:  # a request cut short by the stop: abandoned, not failed
                raise Interrupted(f"stopped while transforming {unit.where()}")
            for line in result.log_lines:
                self.context.log.info("%s", line)
            self.fail(checkpoint, result.error or "no result")
            return
        outcome = result.outcome
        if unit.part is not None:
            apply_report(self.context, PartReport(key, unit.part.number, outcome, result.log_lines))
            self.remaining[key].discard(unit.part.number)
            if not self.remaining[key]:
                self._finish(checkpoint, result.replica)
            return
        for line in result.log_lines:
            self.context.log.info("%s", line)
        if outcome.warnings:  # logged by the replica (in log_lines); stored here, as record_warnings would
            url = self.in_store.url_for(key)
            self.context.warnings(
                key, outcome.warnings, warning_line(url, outcome.warnings, outcome.first_warning)
            )
        if result.consolidated is not None:
            _write_atomically(self.context.consolidated_path(key), result.consolidated)
        self.context.progress(
            key, records=outcome.records, failed=outcome.failed, bytes_read=outcome.bytes_read
        )
        self.context.part_done(key, 0, outcome)
        self._done(checkpoint, outcome, result.replica)

    def _finish(self, checkpoint: FileCheckpoint, replica: str) -> None:
        parts = self.context.file_parts(checkpoint.input_key)
        try:
            outcome = finish_file(
                self.context, checkpoint, parts, self.in_store, self.out_store, self.options
            )
        except FILE_ERRORS as exc:
            self.fail(checkpoint, str(exc))
            return
        self._done(checkpoint, outcome, replica)
        remove_staged(self.out_store, checkpoint.output_key, self.context.name, len(parts))

    def _done(self, checkpoint: FileCheckpoint, outcome: FileOutcome, replica: str) -> None:
        key = checkpoint.input_key
        self.context.file_done(key, records=outcome.records, failed=outcome.failed)
        by = f" ({replica})" if replica else ""
        self.context.log.info(
            "%s: done: %d records, %d failed%s",
            self.in_store.url_for(key),
            outcome.records,
            outcome.failed,
            by,
        )

    def fail(self, checkpoint: FileCheckpoint, error: str) -> None:
        """The file failed: recorded, its staged parts removed and forgotten (a retry redoes them all)."""
        key = checkpoint.input_key
        self.failed.add(key)
        self.context.log.info("%s: %s", self.in_store.url_for(key), error)
        self.context.file_failed(key, error)
        self.discard_staged(checkpoint, reset=True)

    def tidy(self) -> None:
        """Remove what parts still in flight when their file failed staged after it (at the end of the run)."""
        for key in self.failed:
            self.discard_staged(self.files[key])

    def discard_staged(self, checkpoint: FileCheckpoint, *, reset: bool = False) -> None:
        parts = self.context.file_parts(checkpoint.input_key)
        if len(parts) > 1:
            remove_staged(self.out_store, checkpoint.output_key, self.context.name, len(parts))
            if reset:
                self.context.parts_reset(checkpoint.input_key)


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as sink:
            sink.write(data)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
