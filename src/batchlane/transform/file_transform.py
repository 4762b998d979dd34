"""One input file of a transform job, start to finish: stream → decompress → split into records → (CSV header) →
InputFilter → pack mini-batches → up to ``MaxConcurrentTransforms`` requests in flight → split/join/OutputFilter
per response → assemble in input order, written through the object store's atomic writer.

With ``on_record_error`` = ``error-row``/``skip`` a failing multi-record batch is bisected until the poison records
are isolated; they become error rows (or are left out) and the file still completes. The job-level loop, leases and
checkpoints are ``file_loop``'s and ``runner``'s; a file sees only its ``context.FileContext``.

Responses are read as their own Content-Type (``DataProcessor``). Under ``record_count="lenient"`` a mini-batch
whose result count differs is written as returned and counted; the file's count and first message go to the job log
and the job store once the file is done (one warning per file, not per batch). In a ``text/csv`` file whose line 1
looks like a header (``csv_header``), errors and warnings about the mini-batch holding line 1 say so.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain, islice
from typing import BinaryIO

from batchlane import content_types
from batchlane.errors import BadInput
from batchlane.jobs.store import FileCheckpoint
from batchlane.storage.base import ObjectStore
from batchlane.transform import assemble
from batchlane.transform.assemble import Assembler
from batchlane.transform.context import FileContext
from batchlane.transform.csv_header import HINT, SAMPLE_LINES, looks_like_header
from batchlane.transform.dataprocessing import DataProcessor, split_response
from batchlane.transform.invoke import InvocationFailed, Invoker, source_headers
from batchlane.transform.options import JobOptions
from batchlane.transform.outcome import BatchResult as _BatchResult
from batchlane.transform.outcome import FileFailed, FileOutcome, error_ratio_failure, record_warnings
from batchlane.transform.params import EffectiveParams
from batchlane.transform.part_io import first_record, local_atomic, open_part, shifted
from batchlane.transform.parts import Part
from batchlane.transform.plan import MiniBatch, pack
from batchlane.transform.split import Record, iter_records

PROGRESS_FLUSH_S = 0.5
# With max_error_ratio, a file is failed early only once this many of its records have been answered (the first
# bad record of a file would otherwise be "100% failed"); the whole file's ratio is always checked at its end.
MIN_RATIO_SAMPLE = 100


__all__ = ["FileFailed", "FileOutcome", "FileTransform", "PartTarget", "mini_batches"]


@dataclass(frozen=True)
class PartTarget:
    """Where one part of a file goes when the file is cut into parts (``transform.parts``): its staged output
    object and staged consolidated results (keys in the output store), and the records answered and failed by the
    file's earlier parts (so ``max_error_ratio`` is checked over the file so far, as in the unsplit run)."""

    part: Part
    output_key: str
    consolidated_key: str | None = None
    prior_records: int = 0
    prior_failed: int = 0


def mini_batches(
    records: Iterator[Record],
    header: bytes | None,
    params: EffectiveParams,
    processor: DataProcessor,
    isolate: bool,
) -> Iterator[MiniBatch]:
    """A file's mini-batches in order (``plan.pack`` after the InputFilter); with error isolation a record whose
    InputFilter fails becomes an error batch. The part planner cuts at the starts of these batches."""
    failed_filter: list[tuple[Record, BadInput]] = []

    def filtered() -> Iterator[Record]:
        for record in records:
            try:
                yield processor.filter_record(record)
            except BadInput as exc:
                if not isolate:
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
            oversize="isolate" if isolate else "raise",
        )
        if not failed_filter:
            return
        record, exc = failed_filter.pop()
        yield MiniBatch((record,), b"", exc)  # type: ignore[arg-type]  # an error batch: never sent


class FileTransform:
    """Transforms one input file into its ``.out`` object, or with ``target`` one part of it into a staged part
    object; progress, warnings, log lines and the stop signal go through ``context``. A part's result-count
    warnings and the file's final ``max_error_ratio`` check are left to whoever assembles the parts."""

    def __init__(
        self,
        context: FileContext,
        checkpoint: FileCheckpoint,
        params: EffectiveParams,
        options: JobOptions,
        processor: DataProcessor,
        assembler: Assembler,
        invoker: Invoker,
        target: PartTarget | None = None,
    ) -> None:
        self.context = context
        self.target = target
        self.part = target.part if target is not None else Part.whole_object()
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
        # A header hint needs line 1 of a CSV file that is sent as a record.
        self._sniff = (
            options.csv_header == "none"
            and content_types.normalize(params.content_type) == content_types.CSV
            and params.split_type == "Line"
        )
        self._head: list[bytes] = []
        self._header_verdict: bool | None = None
        self._pending_header: bytes | None = None

    async def run(self, in_store: ObjectStore, out_store: ObjectStore) -> FileOutcome:
        key = self.checkpoint.input_key
        target = self.target
        with contextlib.ExitStack() as stack:
            # A later part repeats the object's CSV header (csv_header="repeat"), which only part 0 holds.
            header = None
            if not self.part.first and self.options.csv_header == "repeat":
                first = first_record(in_store, key, self.params.split_type)
                header = None if first is None else self.processor.filter_header(first)
            stream = stack.enter_context(open_part(in_store, key, self.part, self.params.compression_type))
            out = stack.enter_context(
                out_store.writer(target.output_key if target else self.checkpoint.output_key)
            )
            part: BinaryIO | None = None
            if self.consolidate and target is not None and target.consolidated_key:
                part = stack.enter_context(out_store.writer(target.consolidated_key))
            elif self.consolidate:
                part = stack.enter_context(local_atomic(self.context.consolidated_path(key)))
            await self._transform(stream, out, part, header)
        self.outcome.last_error = self._last_error
        if target is None:
            self._record_warnings(in_store.url_for(key))
        self._flush_progress(force=True)
        return self.outcome

    async def _transform(
        self, stream: BinaryIO, out: BinaryIO, part: BinaryIO | None, header: bytes | None = None
    ) -> None:
        params = self.params
        records = shifted(
            iter_records(
                stream,
                params.split_type,
                max_record_bytes=None if self.isolate else params.max_payload_bytes,
            ),
            self.part,
        )
        if self.options.csv_header != "none" and self.part.first:
            first = next(records, None)
            if first is not None and self.options.csv_header == "repeat":
                header = self.processor.filter_header(first.data)
            elif first is not None and self.processor.output_header(first.data) is not None:
                # Written before the first output, once a result shows how many columns it adds.
                self._pending_header = first.data
        if self._sniff:
            head = list(islice(records, SAMPLE_LINES))
            self._head = [record.data for record in head]
            records = chain(head, records)
        in_flight: deque[asyncio.Task[_BatchResult]] = deque()
        limit = max(1, params.max_concurrent_transforms)
        try:
            for batch in mini_batches(records, header, params, self.processor, self.isolate):
                self.context.check_interrupt()
                in_flight.append(asyncio.ensure_future(self._batch(batch)))
                while len(in_flight) >= limit:
                    self._write(await in_flight.popleft(), out, part)
            while in_flight:
                self._write(await in_flight.popleft(), out, part)
            self._write_header(out, None)
            self._check_error_ratio(final=self.target is None)
        finally:
            for task in in_flight:
                task.cancel()

    def _write_header(self, out: BinaryIO, result_columns: int | None) -> None:
        if self._pending_header is not None:
            header = self.processor.output_header(self._pending_header, result_columns or 1)
            self._pending_header = None
            if header is not None:
                out.write(self.assembler.add(header))

    def _header_hint(self, records: tuple[Record, ...]) -> str:
        """``"; line 1 looks like a CSV header..."`` for a mini-batch holding line 1 of such a file, else ``""``."""
        if not self._sniff or not records or records[0].index != 0:
            return ""
        if self._header_verdict is None:
            self._header_verdict = looks_like_header(self._head)
        return f"; {HINT}" if self._header_verdict else ""

    def _count_warning(self, message: str) -> None:
        self.outcome.warnings += 1
        if self.outcome.first_warning is None:
            self.outcome.first_warning = message

    def _record_warnings(self, url: str) -> None:
        record_warnings(self.context, self.checkpoint.input_key, url, self.outcome)

    def _write(self, result: _BatchResult, out: BinaryIO, part: BinaryIO | None) -> None:
        self._write_header(out, result.result_columns)
        for chunk in result.chunks:
            out.write(chunk)
        if part is not None:
            part.writelines(result.consolidated)
        for message in result.warnings:
            self._count_warning(message)
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
        prior = (self.target.prior_records, self.target.prior_failed) if self.target else (0, 0)
        records, failed = prior[0] + self.outcome.records, prior[1] + self.outcome.failed
        if not final and records + failed < MIN_RATIO_SAMPLE:
            return
        error = error_ratio_failure(records, failed, self.options.max_error_ratio, self._last_error)
        if error is not None:
            raise error

    def _flush_progress(self, force: bool = False) -> None:
        loop_time = asyncio.get_event_loop().time() if not force else float("inf")
        if not force and loop_time - self._last_flush < PROGRESS_FLUSH_S:
            return
        self._last_flush = loop_time if not force else 0.0
        data, self._unflushed = self._unflushed, {"records": 0, "failed": 0, "bytes": 0}
        self.outcome.bytes_read += data["bytes"]
        self.context.progress(
            self.checkpoint.input_key,
            records=data["records"],
            failed=data["failed"],
            bytes_read=data["bytes"],
        )

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
            hint = self._header_hint(batch.records)
            warnings: list[str] = []
            outputs = self.processor.handle(
                batch.records,
                answer.body,
                answer.content_type,
                warn=lambda message: warnings.append(f"{message}{hint}"),
            )
            chunks = [self.assembler.add(chunk) for chunk in outputs]
            consolidated = (
                self._consolidated(batch.records, outputs, answer.body, answer.content_type)
                if self.consolidate
                else []
            )
            columns = self._result_columns(batch.records, answer.body, answer.content_type)
            return _BatchResult(
                chunks, len(batch.records), 0, consolidated, result_columns=columns, warnings=warnings
            )
        except (InvocationFailed, BadInput) as exc:
            # A timeout or a lost connection is the server's state, not this record's: bisecting would wait out
            # the timeout again for every half. The file fails and the runner restarts the server.
            if not self.isolate or (
                isinstance(exc, InvocationFailed) and exc.kind in ("connection", "timeout")
            ):
                kind = exc.kind if isinstance(exc, InvocationFailed) else None
                hint = "" if kind in ("connection", "timeout") else self._header_hint(batch.records)
                raise FileFailed(f"{exc} ({batch.where()}){hint}", kind=kind) from None
            if len(batch.records) == 1:
                return self._record_error(batch.records[0], f"{exc}{self._header_hint(batch.records)}")
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
                    merged.result_columns = merged.result_columns or result.result_columns
                    merged.warnings += result.warnings
            return merged

    def _result_columns(
        self, records: tuple[Record, ...], body: bytes, response_type: str | None
    ) -> int | None:
        """While a CSV join header waits to be written: how many columns a result of this response adds."""
        if self._pending_header is None:
            return None
        try:
            results = self.processor.split(records, body, response_type)
            return self.processor.result_columns(results[0], response_type)
        except BadInput:
            return None

    def _record_error(self, record: Record, message: str) -> _BatchResult:
        self.context.log.info("%s: %s: %s", self.checkpoint.input_key, record.where(), message)
        consolidated = (
            [assemble.consolidated_line(self.checkpoint.input_key, record, error=message)]
            if self.consolidate
            else []
        )
        chunks = (
            [self.assembler.error(record, message)] if self.options.on_record_error == "error-row" else []
        )
        return _BatchResult(chunks, 0, 1, consolidated, error=f"{record.where()}: {message}")

    def _consolidated(
        self, records: tuple[Record, ...], chunks: list[bytes], body: bytes, response_type: str | None
    ) -> list[bytes]:
        rtype = self.processor.output_type(response_type)
        if len(chunks) == len(records):
            outputs = chunks
        else:
            try:
                outputs = split_response(body, rtype, len(records))
            except (
                BadInput
            ):  # a type that cannot be split (binary): the whole body goes with the first record
                outputs = [body] + [b""] * (len(records) - 1)
        return [
            assemble.consolidated_line(self.checkpoint.input_key, record, output=output, content_type=rtype)
            for record, output in zip(records, outputs, strict=False)
        ]
