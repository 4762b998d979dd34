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
import os
import tempfile
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain, islice
from typing import BinaryIO

from batchlane import content_types
from batchlane.errors import BadInput, BatchlaneError
from batchlane.jobs.store import FileCheckpoint
from batchlane.storage.base import ObjectStore
from batchlane.transform import assemble
from batchlane.transform.assemble import Assembler
from batchlane.transform.context import FileContext
from batchlane.transform.csv_header import HINT, SAMPLE_LINES, looks_like_header
from batchlane.transform.dataprocessing import DataProcessor, split_response
from batchlane.transform.invoke import InvocationFailed, Invoker, source_headers
from batchlane.transform.options import JobOptions
from batchlane.transform.params import EffectiveParams
from batchlane.transform.plan import MiniBatch, pack
from batchlane.transform.split import Record, iter_records, open_decompressed

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
    """What one file came to: records answered and failed, bytes read, the first error, and how many mini-batches
    answered another number of results than records (``record_count="lenient"``) with the first such message."""

    records: int = 0
    failed: int = 0
    bytes_read: int = 0
    first_error: str | None = None
    warnings: int = 0
    first_warning: str | None = None


@dataclass
class _BatchResult:
    chunks: list[bytes]
    ok: int
    failed: int
    consolidated: list[bytes] = field(default_factory=list)
    error: str | None = None
    result_columns: int | None = None  # for a pending CSV join header: the columns one result adds
    # Result-count warnings, counted when the batch is written: in input order, so the file's first warning is
    # its first mismatched mini-batch whichever answer came back first.
    warnings: list[str] = field(default_factory=list)


class FileTransform:
    """Transforms one input file into its ``.out`` object; progress, warnings, log lines and the stop signal go
    through ``context``."""

    def __init__(
        self,
        context: FileContext,
        checkpoint: FileCheckpoint,
        params: EffectiveParams,
        options: JobOptions,
        processor: DataProcessor,
        assembler: Assembler,
        invoker: Invoker,
    ) -> None:
        self.context = context
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
        part_path = self.context.consolidated_path(key)
        part: BinaryIO | None = None
        if self.consolidate:
            part_path.parent.mkdir(parents=True, exist_ok=True)
            part = tempfile.NamedTemporaryFile(dir=part_path.parent, delete=False, suffix=".tmp")  # noqa: SIM115
        try:
            with in_store.open(key) as raw, out_store.writer(self.checkpoint.output_key) as out:
                stream = open_decompressed(raw, self.params.compression_type)
                await self._transform(stream, out, part)
            self._record_warnings(in_store.url_for(key))
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
            for batch in self._batches(records, header):
                self.context.check_interrupt()
                in_flight.append(asyncio.ensure_future(self._batch(batch)))
                while len(in_flight) >= limit:
                    self._write(await in_flight.popleft(), out, part)
            while in_flight:
                self._write(await in_flight.popleft(), out, part)
            self._write_header(out, None)
            self._check_error_ratio(final=True)
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
        """Log and store the file's result-count warnings: once per file, with their number."""
        count, first = self.outcome.warnings, self.outcome.first_warning
        if not count:
            return
        more = f" ({count} mini-batches of this file differ)" if count > 1 else ""
        message = f"{url}: {first}{more}"
        self.context.log.info(
            "[batchlane]: warning: %s; the output holds the responses as returned (--record-count strict "
            "makes this an error)",
            message,
        )
        self.context.warnings(self.checkpoint.input_key, count, message)

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
