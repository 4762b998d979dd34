"""One part as a self-contained unit of work, for an engine that runs parts in other processes or on other hosts
(a Ray actor, for example; docs/parts.md). Everything a part needs travels in picklable values: ``PartJob`` (the
job's resolved parameters and options, its store URIs) and ``PartWork`` (the file checkpoint and the part). The
worker writes only objects (the part's staged output); what it counted and logged comes back in a ``PartReport``,
so the driver alone writes the job store (``apply_report``, then ``finish_file`` once every part is in).
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from batchlane.jobs.parts import PartCheckpoint
from batchlane.jobs.store import FileCheckpoint
from batchlane.storage.base import ObjectStore
from batchlane.storage.uri import open_store
from batchlane.transform.assemble import Assembler
from batchlane.transform.context import JobContext
from batchlane.transform.dataprocessing import DataProcessor
from batchlane.transform.file_transform import FileTransform, PartTarget
from batchlane.transform.invoke import Invoker
from batchlane.transform.options import JobOptions
from batchlane.transform.outcome import FileOutcome, error_ratio_failure, record_warnings
from batchlane.transform.params import EffectiveParams
from batchlane.transform.part_assembly import assemble
from batchlane.transform.parts import Part, consolidated_staging_key, staging_key


@dataclass(frozen=True)
class PartJob:
    """What every part of a job shares: its name (staging keys), the ``EffectiveParams`` the driver resolved from
    the request and the model's execution parameters, its ``JobOptions``, and the root URIs of its input and output
    stores (``store_uri(store)``: keys are relative to them, as in the job store's file checkpoints)."""

    name: str
    params: EffectiveParams
    options: JobOptions
    input_uri: str
    output_uri: str


@dataclass(frozen=True)
class PartWork:
    """One part to run: the file's checkpoint (its input and output keys), the part, and the records answered and
    failed by the file's earlier parts (0, 0 when parts run in parallel: ``max_error_ratio``'s early check then
    sees this part alone; the whole file's ratio is checked by ``finish_file``)."""

    checkpoint: FileCheckpoint
    part: Part
    prior_records: int = 0
    prior_failed: int = 0


@dataclass
class PartReport:
    """What a part came to: its ``FileOutcome`` (records, failed, payload bytes, result-count warnings, last
    error) and the job-log lines it wrote (per-record errors), in order."""

    input_key: str
    number: int
    outcome: FileOutcome
    log_lines: list[str] = field(default_factory=list)


class _Lines(logging.Handler):
    """Collects the job-log lines of a unit run away from the job store; the driver writes them to the job's log."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


class CollectingContext:
    """A ``FileContext`` that writes nothing: log lines and progress are kept for the ``PartReport`` (or a Ray
    replica's unit result). ``consolidated_folder``: where an unstaged unit's consolidated lines go (else a temp
    path)."""

    def __init__(
        self, check: Callable[[], None] | None = None, *, consolidated_folder: Path | None = None
    ) -> None:
        self._consolidated_folder = consolidated_folder
        self._handler = _Lines()
        self.log = logging.Logger(f"batchlane.part.{id(self)}")
        self.log.addHandler(self._handler)
        self.log.propagate = False
        self._check = check
        self.records = self.failed = self.bytes_read = 0

    @property
    def lines(self) -> list[str]:
        return self._handler.lines

    def check_interrupt(self) -> None:
        if self._check is not None:
            self._check()

    def progress(self, input_key: str, *, records: int, failed: int, bytes_read: int) -> None:
        self.records += records
        self.failed += failed
        self.bytes_read += bytes_read

    def warnings(self, input_key: str, count: int, message: str) -> None:
        pass  # a staged part's warnings travel in its outcome

    def consolidated_path(self, input_key: str) -> Path:
        # Only reached for an unstaged part; a staged part writes its consolidated results to the output store.
        if self._consolidated_folder is not None:
            return self._consolidated_folder / "consolidated.jsonl"
        return Path(tempfile.gettempdir()) / "batchlane-consolidated" / f"{abs(hash(input_key))}.jsonl"


def store_uri(store: ObjectStore) -> str:
    """A URI that opens to ``store`` itself (its root, as a folder), so its keys mean the same elsewhere."""
    return f"{store.url.rstrip('/')}/"  # type: ignore[attr-defined]  # LocalStore and S3Store both have .url


def _open_root(uri: str) -> ObjectStore:
    store, prefix = open_store(uri)
    if prefix:
        raise ValueError(f"{uri!r} is not a store root (use part_work.store_uri)")
    return store


def part_target(job: PartJob, work: PartWork) -> PartTarget:
    """Where ``work``'s part is staged (its ``.part`` object, and ``.jsonl`` object with ``consolidate``)."""
    output_key, number = work.checkpoint.output_key, work.part.number
    return PartTarget(
        work.part,
        staging_key(output_key, job.name, number),
        consolidated_staging_key(output_key, job.name, number) if job.options.consolidate else None,
        prior_records=work.prior_records,
        prior_failed=work.prior_failed,
    )


async def transform_part(
    job: PartJob,
    work: PartWork,
    invoker: Invoker,
    *,
    check_interrupt: Callable[[], None] | None = None,
    stores: tuple[ObjectStore, ObjectStore] | None = None,
) -> PartReport:
    """Run one part against ``invoker`` (``ModelServer.invoker(job.params)``) and stage its output atomically.
    Raises what ``FileTransform`` raises (``FileFailed``, ``BadInput``, ``InvocationFailed``, ...; the driver
    fails the file) and whatever ``check_interrupt`` raises to abandon the part (nothing is staged then)."""
    in_store, out_store = stores or (_open_root(job.input_uri), _open_root(job.output_uri))
    context = CollectingContext(check_interrupt)
    transform = FileTransform(
        context,  # type: ignore[arg-type]  # a FileContext
        work.checkpoint,
        job.params,
        job.options,
        DataProcessor.from_params(job.params, job.options),
        Assembler(job.params.assemble_with, job.params.result_type),
        invoker,
        part_target(job, work),
    )
    outcome = await transform.run(in_store, out_store)
    return PartReport(work.checkpoint.input_key, work.part.number, outcome, list(context.lines))


def transform_part_sync(job: PartJob, work: PartWork, invoker_factory: Callable[[], Invoker]) -> PartReport:
    """``transform_part`` on a fresh event loop, for a caller without one; ``invoker_factory`` builds the invoker
    inside that loop (an HTTP client belongs to the loop it was made in) and it is closed afterwards."""

    async def run() -> PartReport:
        invoker = invoker_factory()
        try:
            return await transform_part(job, work, invoker)
        finally:
            await invoker.aclose()

    return asyncio.run(run())


def apply_report(context: JobContext, report: PartReport) -> None:
    """Driver side: write a part's log lines to the job log, add its progress and commit it in the job store."""
    for line in report.log_lines:
        context.log.info("%s", line)
    outcome = report.outcome
    context.progress(
        report.input_key, records=outcome.records, failed=outcome.failed, bytes_read=outcome.bytes_read
    )
    context.part_done(report.input_key, report.number, outcome)


def stored_outcome(stored: PartCheckpoint) -> FileOutcome:
    """The ``FileOutcome`` a committed part was stored with."""
    return FileOutcome(
        records=stored.records,
        failed=stored.records_failed,
        bytes_read=stored.bytes_read,
        warnings=stored.warnings,
        first_warning=stored.warning,
        last_error=stored.last_error,
    )


def finish_file(
    context: JobContext,
    checkpoint: FileCheckpoint,
    parts: list[PartCheckpoint],
    in_store: ObjectStore,
    out_store: ObjectStore,
    options: JobOptions,
) -> FileOutcome:
    """Driver side, once every part of the file is committed: check the whole file's ``max_error_ratio``
    (``FileFailed``), assemble the staged parts into its ``.out`` (and consolidated part), record its result-count
    warnings; returns the file's summed outcome. The caller then marks the file done and removes the staged parts
    (``part_assembly.remove_staged``)."""
    total = FileOutcome()
    for stored in sorted(parts, key=lambda row: row.number):
        total.add(stored_outcome(stored))
    error = error_ratio_failure(total.records, total.failed, options.max_error_ratio, total.last_error)
    if error is not None:
        raise error
    key = checkpoint.input_key
    consolidated = context.consolidated_path(key) if options.consolidate else None
    assemble(
        out_store,
        checkpoint.output_key,
        context.name,
        len(parts),
        consolidated_path=consolidated,
        check=context.check_interrupt,
    )
    record_warnings(context, key, in_store.url_for(key), total)
    return total
