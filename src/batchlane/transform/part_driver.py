"""The local engine's driver for one input file in parts (docs/parts.md): plan the file once (or reuse the stored
plan), run its uncommitted parts in order through ``FileTransform``, commit each part, then check the file as a
whole (``max_error_ratio``, result-count warnings) and assemble its ``.out``.

A file of one part runs exactly as it always did: straight into its ``.out``, nothing staged. Removing the staged
part objects is left to the caller, after the file is marked done (``part_assembly.remove_staged``): a runner
killed between the ``.out`` commit and that mark finds every part committed and assembles again.
"""

from __future__ import annotations

import asyncio

from batchlane.jobs.parts import PartCheckpoint
from batchlane.jobs.store import FileCheckpoint
from batchlane.storage.base import ObjectStore
from batchlane.transform.assemble import Assembler
from batchlane.transform.context import JobContext
from batchlane.transform.dataprocessing import DataProcessor
from batchlane.transform.file_transform import FileTransform, PartTarget
from batchlane.transform.invoke import Invoker
from batchlane.transform.options import JobOptions
from batchlane.transform.outcome import FileOutcome
from batchlane.transform.params import EffectiveParams
from batchlane.transform.part_work import finish_file, stored_outcome
from batchlane.transform.parts import Part, consolidated_staging_key, plan_parts, staging_key


class PartedFile:
    """Transforms one input file part by part (``budget``: the job's part size in bytes)."""

    def __init__(
        self,
        context: JobContext,
        checkpoint: FileCheckpoint,
        params: EffectiveParams,
        options: JobOptions,
        processor: DataProcessor,
        assembler: Assembler,
        invoker: Invoker,
        *,
        budget: int,
    ) -> None:
        self.context = context
        self.checkpoint = checkpoint
        self.params = params
        self.options = options
        self.processor = processor
        self.assembler = assembler
        self.invoker = invoker
        self.budget = budget

    async def plan(self, in_store: ObjectStore) -> list[PartCheckpoint]:
        """The file's stored plan; planned now (streaming the object once, off the event loop) if it has none."""
        key = self.checkpoint.input_key
        stored = self.context.file_parts(key)
        if stored:
            return stored
        planned = await asyncio.to_thread(
            plan_parts,
            in_store,
            key,
            self.checkpoint.size,
            self.params,
            self.options,
            budget=self.budget,
            processor=self.processor,
            check=self.context.check_interrupt,
        )
        return self.context.plan_file_parts(key, planned)

    def _transform(self, target: PartTarget | None) -> FileTransform:
        return FileTransform(
            self.context,
            self.checkpoint,
            self.params,
            self.options,
            self.processor,
            self.assembler,
            self.invoker,
            target,
        )

    async def run(self, in_store: ObjectStore, out_store: ObjectStore) -> FileOutcome:
        """Transform the file; its ``.out`` is committed when this returns (``FileFailed`` etc. otherwise)."""
        stored = await self.plan(in_store)
        if len(stored) == 1:
            outcome = await self._transform(None).run(in_store, out_store)
            self.context.part_done(self.checkpoint.input_key, 0, outcome)
            return outcome
        key, output_key, job = self.checkpoint.input_key, self.checkpoint.output_key, self.context.name
        total = FileOutcome()
        for row in stored:
            if row.done:
                total.add(stored_outcome(row))
        if any(row.done for row in stored):
            # Committed by an earlier run (or before a server restart): counted once, not redone.
            self.context.file_reset(key)
            self.context.progress(
                key, records=total.records, failed=total.failed, bytes_read=total.bytes_read
            )
        for row in stored:
            if row.done:
                continue
            self.context.check_interrupt()
            target = PartTarget(
                Part.of(row),
                staging_key(output_key, job, row.number),
                consolidated_staging_key(output_key, job, row.number) if self.options.consolidate else None,
                prior_records=total.records,
                prior_failed=total.failed,
            )
            outcome = await self._transform(target).run(in_store, out_store)
            self.context.part_done(key, row.number, outcome)
            total.add(outcome)
        self.context.check_interrupt()
        parts = self.context.file_parts(key)
        return await asyncio.to_thread(
            finish_file, self.context, self.checkpoint, parts, in_store, out_store, self.options
        )
