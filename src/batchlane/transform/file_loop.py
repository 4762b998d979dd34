"""The loop over a job's pending files, for ``runner.JobRunner``: each file is transformed (``FileTransform``), then
committed or marked failed, and the job goes on with the next one.

After a fault of the model server rather than of the data (it hung, died or stopped answering /ping),
``supervisor.ServerSupervisor`` restarts the server first, so only the file that hit the fault fails; a file whose
server died under it is redone once on the fresh server (docs/transform.md, "Recovery"). A stop, the job's deadline
or a lost lease abandons the file in flight at once, even while a request waits for its answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from batchlane.errors import BadInput, BatchlaneError, NotFound, PayloadTooLarge, StorageError
from batchlane.jobs.state import FileState
from batchlane.jobs.store import FileCheckpoint
from batchlane.storage.base import ObjectStore
from batchlane.transform.assemble import Assembler
from batchlane.transform.container import ModelContainer
from batchlane.transform.dataprocessing import DataProcessor
from batchlane.transform.file_transform import FileFailed, FileOutcome, FileTransform
from batchlane.transform.invoke import InvocationFailed, Invoker
from batchlane.transform.options import JobOptions
from batchlane.transform.params import EffectiveParams
from batchlane.transform.supervisor import Fault, ServerSupervisor

if TYPE_CHECKING:
    from batchlane.transform.runner import JobRunner

STOP_POLL_S = 0.5  # how often a stop request, the job's deadline or a lost lease is looked for

# What fails one file (and not the job). NotFound: the object vanished after the job was planned (e.g. before a
# resume). StorageError: reading this object or writing its output failed (a full disk, a folder where the .out
# goes); the other files may still succeed, and none of this file's output became visible.
FILE_ERRORS = (FileFailed, BadInput, PayloadTooLarge, InvocationFailed, NotFound, StorageError)


class Interrupted(Exception):
    """The job was asked to stop, ran past its deadline, or this runner lost its lease: abandon the file without
    committing."""


def make_invoker(url: str, params: EffectiveParams) -> Invoker:
    """An ``Invoker`` for the server at ``url`` with the job's timeout, retries and concurrency."""
    return Invoker(
        url,
        timeout_s=params.invocations_timeout_s,
        max_retries=params.invocations_max_retries,
        max_in_flight=params.max_concurrent_transforms,
        chunked=params.max_payload_bytes is None,
    )


class FileLoop:
    """Runs ``runner``'s pending files against ``container`` (None: a server we did not start, never restarted)."""

    def __init__(
        self,
        runner: JobRunner,
        params: EffectiveParams,
        options: JobOptions,
        container: ModelContainer | None = None,
    ) -> None:
        self.runner = runner
        self.params = params
        self.options = options
        self.processor = DataProcessor.from_params(params, options)
        self.assembler = Assembler(params.assemble_with, params.result_type)
        self.supervisor = ServerSupervisor(
            container,
            max_restarts=options.max_restarts,
            on_restart=self._count_restart,
            check_interrupt=runner.check_interrupt,
        )
        self.invoker: Invoker | None = None

    async def run(
        self, url: str, in_store: ObjectStore, out_store: ObjectStore, files: list[FileCheckpoint]
    ) -> None:
        """Transform ``files`` in order; ``Interrupted`` on a stop, a BatchlaneError when the job must fail."""
        self.invoker = make_invoker(url, self.params)
        redone: set[str] = set()
        queue = list(files)
        try:
            while queue:
                checkpoint = queue[0]
                self.runner.check_interrupt()
                url = in_store.url_for(checkpoint.input_key)
                where = f"while transforming {url}"
                fault = self.supervisor.exited()
                if fault is not None:  # died between files (or was killed): no file is to blame
                    await self._restart(fault, f"before transforming {url}")
                try:
                    outcome = await self._abandon_on_stop(self._transform(checkpoint, in_store, out_store))
                except FILE_ERRORS as exc:
                    if self.runner.halted:
                        # Failing while stopping (a request cut short): abandon the file, do not mark it failed.
                        raise Interrupted(f"stopped while transforming {checkpoint.input_key}") from exc
                    fault = self.supervisor.fault(getattr(exc, "kind", None))
                    key = checkpoint.input_key
                    if (
                        fault is not None
                        and fault.retry_file
                        and key not in redone
                        and self.supervisor.can_restart()
                    ):
                        # The server's fault, not the data's: redo the file once, from its start.
                        self.runner.job_log.info("%s: %s; redoing the file on a fresh server", url, exc)
                        await self._restart(fault, where)
                        self.runner.store.reset_progress(self.runner.name, key, owner=self.runner.owner)
                        redone.add(key)
                        continue
                    queue.pop(0)
                    self._failed(checkpoint, url, exc)
                    if fault is not None:
                        await self._restart(fault, where)
                    continue
                queue.pop(0)
                self._done(checkpoint, url, outcome)
        finally:
            await self.invoker.aclose()

    def _transform(
        self, checkpoint: FileCheckpoint, in_store: ObjectStore, out_store: ObjectStore
    ) -> Coroutine[Any, Any, FileOutcome]:
        assert self.invoker is not None
        context = FileTransform(
            self.runner, checkpoint, self.params, self.options, self.processor, self.assembler, self.invoker
        )
        return context.run(in_store, out_store)

    def _failed(self, checkpoint: FileCheckpoint, url: str, exc: Exception) -> None:
        runner = self.runner
        runner.job_log.info("%s: %s", url, exc)
        runner.store.mark_file(
            runner.name, checkpoint.input_key, FileState.FAILED, error=str(exc), owner=runner.owner
        )
        runner.on_progress("file", {"key": checkpoint.input_key, "state": "failed"})

    def _done(self, checkpoint: FileCheckpoint, url: str, outcome: FileOutcome) -> None:
        runner = self.runner
        runner.store.mark_file(
            runner.name,
            checkpoint.input_key,
            FileState.DONE,
            records=outcome.records,
            records_failed=outcome.failed,
            owner=runner.owner,
        )
        runner.job_log.info("%s: done: %d records, %d failed", url, outcome.records, outcome.failed)
        runner.on_progress("file", {"key": checkpoint.input_key, "state": "done"})

    async def _abandon_on_stop(self, work: Coroutine[Any, Any, FileOutcome]) -> FileOutcome:
        """Run one file's work; on a stop, the job's deadline or a lost lease, cancel it at once, even while a
        request waits for its answer (the file's temp output is discarded), and raise ``Interrupted``."""
        task = asyncio.ensure_future(work)
        while True:
            done, _ = await asyncio.wait({task}, timeout=STOP_POLL_S)
            if done:
                return task.result()
            if self.runner.halted:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                self.runner.check_interrupt()

    async def _restart(self, fault: Fault, where: str) -> None:
        """Restart the model server (``RestartsExhausted`` fails the job) and point the invoker at its new URL."""
        assert self.invoker is not None
        await self.invoker.aclose()
        try:
            started = time.monotonic()
            url = self.supervisor.restart(fault, where)
        except BatchlaneError as exc:
            exc.message = f"{exc.message}; see `batchlane jobs logs {self.runner.name} --container`"
            exc.args = (exc.message,)
            raise
        self.runner.job_log.info(
            "[batchlane]: model server restarted: ready after %.1f s", time.monotonic() - started
        )
        self.invoker = make_invoker(url, self.params)

    def _count_restart(self, number: int, message: str) -> None:
        runner = self.runner
        total = runner.store.add_restart(runner.name, owner=runner.owner)
        runner.job_log.info("[batchlane]: %s (restarts of this job: %d)", message, total)
        runner.on_progress("restart", {"number": number, "total": total})
