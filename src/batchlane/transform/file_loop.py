"""The loop over a job's pending files: each file is transformed (``FileTransform``), then committed or marked failed
through the job's ``context.JobContext``, and the job goes on with the next one. The model is a
``invoke.ModelServer`` (a container, or the model loaded in this process); requests go through its ``Invoker``.

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
from typing import Any

from batchlane.errors import BadInput, BatchlaneError, NotFound, PayloadTooLarge, StorageError
from batchlane.jobs.store import FileCheckpoint
from batchlane.storage.base import ObjectStore
from batchlane.transform.assemble import Assembler
from batchlane.transform.container import ModelContainer
from batchlane.transform.context import Interrupted, JobContext
from batchlane.transform.dataprocessing import DataProcessor
from batchlane.transform.file_transform import FileFailed, FileOutcome
from batchlane.transform.invoke import InvocationFailed, Invoker, ModelServer
from batchlane.transform.options import JobOptions
from batchlane.transform.params import EffectiveParams
from batchlane.transform.part_assembly import remove_staged
from batchlane.transform.part_driver import PartedFile
from batchlane.transform.parts import part_size
from batchlane.transform.supervisor import Fault, ServerSupervisor

STOP_POLL_S = 0.5  # how often a stop request, the job's deadline or a lost lease is looked for

# What fails one file (and not the job). NotFound: the object vanished after the job was planned (e.g. before a
# resume). StorageError: reading this object or writing its output failed (a full disk, a folder where the .out
# goes); the other files may still succeed, and none of this file's output became visible.
FILE_ERRORS = (FileFailed, BadInput, PayloadTooLarge, InvocationFailed, NotFound, StorageError)


__all__ = ["FILE_ERRORS", "STOP_POLL_S", "FileLoop", "Interrupted"]


class FileLoop:
    """Runs a job's pending files against ``server``; only a ``ModelContainer`` that started its own server is
    restarted after a fault (``ServerSupervisor``)."""

    def __init__(
        self,
        context: JobContext,
        params: EffectiveParams,
        options: JobOptions,
        server: ModelServer,
    ) -> None:
        self.context = context
        self.server = server
        self.params = params
        self.options = options
        self.processor = DataProcessor.from_params(params, options)
        self.assembler = Assembler(params.assemble_with, params.result_type)
        self.supervisor = ServerSupervisor(
            server if isinstance(server, ModelContainer) else None,
            max_restarts=options.max_restarts,
            on_restart=context.server_restarted,
            check_interrupt=context.check_interrupt,
        )
        self.invoker: Invoker | None = None
        self.part_size = part_size(options)

    async def run(self, in_store: ObjectStore, out_store: ObjectStore, files: list[FileCheckpoint]) -> None:
        """Transform ``files`` in order; ``Interrupted`` on a stop, a BatchlaneError when the job must fail."""
        self.invoker = self.server.invoker(self.params)
        redone: set[str] = set()
        queue = list(files)
        try:
            while queue:
                checkpoint = queue[0]
                self.context.check_interrupt()
                url = in_store.url_for(checkpoint.input_key)
                where = f"while transforming {url}"
                fault = self.supervisor.exited()
                if fault is not None:  # died between files (or was killed): no file is to blame
                    await self._restart(fault, f"before transforming {url}")
                try:
                    outcome = await self._abandon_on_stop(self._transform(checkpoint, in_store, out_store))
                except FILE_ERRORS as exc:
                    if self.context.halted:
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
                        self.context.log.info("%s: %s; redoing the file on a fresh server", url, exc)
                        await self._restart(fault, where)
                        self.context.file_reset(key)
                        redone.add(key)
                        continue
                    queue.pop(0)
                    self._failed(checkpoint, url, exc, out_store)
                    if fault is not None:
                        await self._restart(fault, where)
                    continue
                queue.pop(0)
                self._done(checkpoint, url, outcome, out_store)
        finally:
            await self.invoker.aclose()

    def _transform(
        self, checkpoint: FileCheckpoint, in_store: ObjectStore, out_store: ObjectStore
    ) -> Coroutine[Any, Any, FileOutcome]:
        assert self.invoker is not None
        transform = PartedFile(
            self.context,
            checkpoint,
            self.params,
            self.options,
            self.processor,
            self.assembler,
            self.invoker,
            budget=self.part_size,
        )
        return transform.run(in_store, out_store)

    def _failed(self, checkpoint: FileCheckpoint, url: str, exc: Exception, out_store: ObjectStore) -> None:
        self.context.log.info("%s: %s", url, exc)
        self.context.file_failed(checkpoint.input_key, str(exc))
        self._discard_parts(checkpoint, out_store, reset=True)

    def _done(
        self, checkpoint: FileCheckpoint, url: str, outcome: FileOutcome, out_store: ObjectStore
    ) -> None:
        self.context.file_done(checkpoint.input_key, records=outcome.records, failed=outcome.failed)
        self.context.log.info("%s: done: %d records, %d failed", url, outcome.records, outcome.failed)
        self._discard_parts(checkpoint, out_store, reset=False)

    def _discard_parts(self, checkpoint: FileCheckpoint, out_store: ObjectStore, *, reset: bool) -> None:
        """Remove a finished file's staged part objects (after its state is stored); a failed file's committed
        parts are forgotten too, so a retry of the file redoes them all."""
        parts = self.context.file_parts(checkpoint.input_key)
        if len(parts) > 1:
            remove_staged(out_store, checkpoint.output_key, self.context.name, len(parts))
            if reset:
                self.context.parts_reset(checkpoint.input_key)

    async def _abandon_on_stop(self, work: Coroutine[Any, Any, FileOutcome]) -> FileOutcome:
        """Run one file's work; on a stop, the job's deadline or a lost lease, cancel it at once, even while a
        request waits for its answer (the file's temp output is discarded), and raise ``Interrupted``."""
        task = asyncio.ensure_future(work)
        while True:
            done, _ = await asyncio.wait({task}, timeout=STOP_POLL_S)
            if done:
                return task.result()
            if self.context.halted:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                self.context.check_interrupt()

    async def _restart(self, fault: Fault, where: str) -> None:
        """Restart the model server (``RestartsExhausted`` fails the job) and point the invoker at its new URL."""
        assert self.invoker is not None
        await self.invoker.aclose()
        try:
            started = time.monotonic()
            self.supervisor.restart(fault, where)
        except BatchlaneError as exc:
            exc.message = f"{exc.message}; see `batchlane jobs logs {self.context.name} --container`"
            exc.args = (exc.message,)
            raise
        self.context.log.info(
            "[batchlane]: model server restarted: ready after %.1f s", time.monotonic() - started
        )
        self.invoker = self.server.invoker(self.params)
