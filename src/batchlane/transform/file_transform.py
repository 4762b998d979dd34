"""One input file of a transform job, start to finish: stream → decompress → split into records → (CSV header) →
InputFilter → pack mini-batches → up to ``MaxConcurrentTransforms`` requests in flight → split/join/OutputFilter
per response → assemble in input order, written through the object store's atomic writer.

With ``on_record_error`` = ``error-row``/``skip`` a failing multi-record batch is bisected until the poison records
are isolated; they become error rows (or are left out) and the file still completes. The job-level loop, leases and
checkpoints are ``runner``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO

from batchlane.errors import BadInput, BatchlaneError
from batchlane.jobs.store import FileCheckpoint
from batchlane.storage.base import ObjectStore
from batchlane.transform import assemble
from batchlane.transform.assemble import Assembler
from batchlane.transform.dataprocessing import DataProcessor, split_response
from batchlane.transform.invoke import InvocationFailed, Invoker, source_headers
from batchlane.transform.options import JobOptions
from batchlane.transform.params import EffectiveParams
from batchlane.transform.plan import MiniBatch, pack
from batchlane.transform.split import Record, iter_records, open_decompressed

if TYPE_CHECKING:
    from batchlane.transform.runner import JobRunner

PROGRESS_FLUSH_S = 0.5
# With max_error_ratio, a file is failed early only once this many of its records have been answered (the first
# bad record of a file would otherwise be "100% failed"); the whole file's ratio is always checked at its end.
MIN_RATIO_SAMPLE = 100


class FileFailed(BatchlaneError):
    """One input file cannot be transformed; the job goes on with the next file and ends Failed. ``kind`` is the
    ``InvocationFailed.kind`` when a request failed (``"connection"``, ``"timeout"``, ...), else None."""

    def __init__(self, message: str, *, kind: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class FileOutcome:
    """What one file came to: records answered and failed, bytes read, the first error."""

    records: int = 0
    failed: int = 0
    bytes_read: int = 0
    first_error: str | None = None


@dataclass
class _BatchResult:
    chunks: list[bytes]
    ok: int
    failed: int
    consolidated: list[bytes] = field(default_factory=list)
    error: str | None = None


class FileTransform:
    """Transforms one input file into its ``.out`` object, for ``runner`` (its store, lease and progress)."""

    def __init__(
        self,
        runner: JobRunner,
        checkpoint: FileCheckpoint,
        params: EffectiveParams,
        options: JobOptions,
        processor: DataProcessor,
        assembler: Assembler,
        invoker: Invoker,
    ) -> None:
        self.runner = runner
        self.checkpoint = checkpoint
        self.params = params
        self.options = options
        self.processor = processor
        self.assembler = assembler
        self.invoker = invoker
        self.isolate = options.on_record_error != "fail"
        self.outcome = FileOutcome()
        self.consolidate = bool(options.consolidate)
        self._unflushed = {"records": 0, "failed": 0, "bytes": 0}
        self._last_flush = 0.0
        self._last_error: str | None = None

    async def run(self, in_store: ObjectStore, out_store: ObjectStore) -> FileOutcome:
        key = self.checkpoint.input_key
        part_path = self.runner.consolidate_part(self.checkpoint)
        part: BinaryIO | None = None
        if self.consolidate:
            part_path.parent.mkdir(parents=True, exist_ok=True)
            part = tempfile.NamedTemporaryFile(dir=part_path.parent, delete=False, suffix=".tmp")  # noqa: SIM115
        try:
            with in_store.open(key) as raw, out_store.writer(self.checkpoint.output_key) as out:
                stream = open_decompressed(raw, self.params.compression_type)
                await self._transform(stream, out, part)
            if part is not None:
                part.close()
                os.replace(part.name, part_path)
                part = None
        finally:
            if part is not None:
                part.close()
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(part.name)
        self._flush_progress(force=True)
        return self.outcome

    def _batches(self, records: Iterator[Record], header: bytes | None) -> Iterator[MiniBatch]:
        """Mini-batches in order; with error isolation a record whose InputFilter fails becomes an error batch."""
        params = self.params
        failed_filter: list[tuple[Record, BadInput]] = []

        def filtered() -> Iterator[Record]:
            for record in records:
                try:
                    yield self.processor.filter_record(record)
                except BadInput as exc:
                    if not self.isolate:
                        raise
                    failed_filter.append((record, exc))
                    return

        while True:
            yield from pack(
                filtered(),
                split_type=params.split_type,
                strategy=params.batch_strategy,
                max_payload_bytes=params.max_payload_bytes,
                header=header,
                oversize="isolate" if self.isolate else "raise",
            )
            if not failed_filter:
                return
            record, exc = failed_filter.pop()
            yield MiniBatch((record,), b"", exc)  # type: ignore[arg-type]  # an error batch: never sent

    async def _transform(self, stream: BinaryIO, out: BinaryIO, part: BinaryIO | None) -> None:
        params = self.params
        records = iter_records(
            stream,
            params.split_type,
            max_record_bytes=None if self.isolate else params.max_payload_bytes,
        )
        header: bytes | None = None
        if self.options.csv_header != "none":
            first = next(records, None)
            if first is not None and self.options.csv_header == "repeat":
                header = self.processor.filter_header(first.data)
            elif first is not None:
                out_header = self.processor.output_header(first.data)
                if out_header is not None:
                    out.write(self.assembler.add(out_header))
        in_flight: deque[asyncio.Task[_BatchResult]] = deque()
        limit = max(1, params.max_concurrent_transforms)
        try:
            for batch in self._batches(records, header):
                self.runner.check_interrupt()
                in_flight.append(asyncio.ensure_future(self._batch(batch)))
                while len(in_flight) >= limit:
                    self._write(await in_flight.popleft(), out, part)
            while in_flight:
                self._write(await in_flight.popleft(), out, part)
            self._check_error_ratio(final=True)
        finally:
            for task in in_flight:
                task.cancel()

    def _write(self, result: _BatchResult, out: BinaryIO, part: BinaryIO | None) -> None:
        for chunk in result.chunks:
            out.write(chunk)
        if part is not None:
            part.writelines(result.consolidated)
        self.outcome.records += result.ok
        self.outcome.failed += result.failed
        self._unflushed["records"] += result.ok
        self._unflushed["failed"] += result.failed
        self._last_error = result.error or self._last_error
        self._check_error_ratio(final=False)
        self._flush_progress()

    def _check_error_ratio(self, *, final: bool) -> None:
        """``FileFailed`` when more than ``max_error_ratio`` of the file's records failed: at the end of the file,
        or earlier once ``MIN_RATIO_SAMPLE`` records have been answered."""
        ratio = self.options.max_error_ratio
        total = self.outcome.records + self.outcome.failed
        if ratio is None or not total or (not final and total < MIN_RATIO_SAMPLE):
            return
        if self.outcome.failed / total > ratio:
            raise FileFailed(
                f"{self.outcome.failed} of {total} records failed, more than max_error_ratio={ratio:g}"
                + (f"; last error: {self._last_error}" if self._last_error else "")
            )

    def _flush_progress(self, force: bool = False) -> None:
        loop_time = asyncio.get_event_loop().time() if not force else float("inf")
        if not force and loop_time - self._last_flush < PROGRESS_FLUSH_S:
            return
        self._last_flush = loop_time if not force else 0.0
        data, self._unflushed = self._unflushed, {"records": 0, "failed": 0, "bytes": 0}
        if any(data.values()):
            self.runner.store.add_progress(
                self.runner.name,
                self.checkpoint.input_key,
                records=data["records"],
                records_failed=data["failed"],
                bytes_read=data["bytes"],
                owner=self.runner.owner,
            )
        self.runner.on_progress("batch", {"records": data["records"], "failed": data["failed"], **data})

    async def _batch(self, batch: MiniBatch) -> _BatchResult:
        """One mini-batch → output chunks; isolates poison records by bisection when errors are not fatal."""
        self._unflushed["bytes"] += len(batch.body)
        if batch.error is not None:
            return self._record_error(batch.records[0], str(batch.error))
        try:
            headers = (
                source_headers(self.checkpoint.input_key, batch.records[0].index, len(batch.records))
                if self.options.source_headers
                else None
            )
            answer = await self.invoker.invoke(
                batch.body, content_type=self.params.content_type, accept=self.params.accept, headers=headers
            )
            outputs = self.processor.handle(batch.records, answer.body)
            chunks = [self.assembler.add(chunk) for chunk in outputs]
            consolidated = self._consolidated(batch.records, outputs, answer.body) if self.consolidate else []
            return _BatchResult(chunks, len(batch.records), 0, consolidated)
        except (InvocationFailed, BadInput) as exc:
            if not self.isolate or (isinstance(exc, InvocationFailed) and exc.kind == "connection"):
                kind = exc.kind if isinstance(exc, InvocationFailed) else None
                raise FileFailed(f"{exc} ({batch.where()})", kind=kind) from None
            if len(batch.records) == 1:
                return self._record_error(batch.records[0], str(exc))
            middle = len(batch.records) // 2
            merged = _BatchResult([], 0, 0)
            for half in (batch.records[:middle], batch.records[middle:]):
                for sub in pack(
                    half,
                    split_type=self.params.split_type,
                    strategy=self.params.batch_strategy,
                    max_payload_bytes=None,
                ):
                    result = await self._batch(sub)
                    merged.chunks += result.chunks
                    merged.consolidated += result.consolidated
                    merged.ok += result.ok
                    merged.failed += result.failed
                    merged.error = result.error or merged.error
            return merged

    def _record_error(self, record: Record, message: str) -> _BatchResult:
        self.runner.job_log.info("%s: %s: %s", self.checkpoint.input_key, record.where(), message)
        consolidated = (
            [assemble.consolidated_line(self.checkpoint.input_key, record, error=message)]
            if self.consolidate
            else []
        )
        chunks = (
            [self.assembler.error(record, message)] if self.options.on_record_error == "error-row" else []
        )
        return _BatchResult(chunks, 0, 1, consolidated, error=f"{record.where()}: {message}")

    def _consolidated(self, records: tuple[Record, ...], chunks: list[bytes], body: bytes) -> list[bytes]:
        if len(chunks) == len(records):
            outputs = chunks
        else:
            try:
                outputs = split_response(body, self.params.result_type, len(records))
            except BadInput:
                outputs = [body] + [b""] * (len(records) - 1)
        return [
            assemble.consolidated_line(
                self.checkpoint.input_key, record, output=output, content_type=self.params.result_type
            )
            for record, output in zip(records, outputs, strict=False)
        ]
