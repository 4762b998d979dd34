"""One model replica of a ray-engine job: the body of a Ray actor (``ray_pool`` makes it remote).

A ``Replica`` starts its model once (the in-process handler, or its own ``batchlane serve`` for a model served by a
command or a URL: the same ``ModelServer`` classes as the local engine) and then transforms one ``WorkUnit`` per
call with the local engine's ``FileTransform``, so the bytes it writes are the local engine's. It never touches
the job store: it reads the input object and writes the output object itself (atomically), and returns a
``UnitResult`` that the driver commits. ``MaxConcurrentTransforms`` applies per replica, as in SageMaker. The
methods are coroutines: Ray runs them on the actor's event loop, so ``ray.cancel`` (a stop) cancels a unit at
once and its temp output is discarded.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchlane.engines.ray_units import UnitResult, WorkUnit
from batchlane.errors import ValidationError
from batchlane.models import ModelSpec
from batchlane.storage.base import ObjectStore
from batchlane.storage.uri import open_store
from batchlane.transform.assemble import Assembler
from batchlane.transform.context import Interrupted
from batchlane.transform.dataprocessing import DataProcessor
from batchlane.transform.file_loop import FILE_ERRORS
from batchlane.transform.file_transform import FileTransform
from batchlane.transform.invoke import Invoker, ModelServer
from batchlane.transform.model_data import materialize_model
from batchlane.transform.options import JobOptions
from batchlane.transform.params import container_environment
from batchlane.transform.part_work import CollectingContext, PartJob, PartWork, transform_part
from batchlane.transform.spec import validate_request


@dataclass(frozen=True)
class ReplicaSpec:
    """What every replica of a job needs to start its model: the stored request, job options and model snapshot
    (JSON forms), the model cache folder, the invoker (``"in_process"`` or ``"http"``) and the base of the model
    servers' log files (``<base>.<replica>.log``)."""

    job: str
    request: dict[str, Any]
    options: dict[str, Any]
    model: dict[str, Any]
    cache_dir: str
    invoker: str
    log_base: str


class Replica:
    """One model replica (``index`` of the pool) of the job ``spec`` describes; the model starts in ``__init__``."""

    def __init__(self, spec: ReplicaSpec, index: int) -> None:
        self.name = f"replica-{index}@{os.uname().nodename}:{os.getpid()}"
        self.request = validate_request(spec.request)
        self.options = JobOptions.model_validate(spec.options)
        self.server = _model_server(spec, self.request, self.options, ModelSpec.parse(spec.model), index)
        self.server.__enter__()
        self._interrupted = False

    async def interrupt(self) -> None:
        """The driver stops the job: the unit in flight is abandoned at its next mini-batch (nothing published)."""
        self._interrupted = True

    def _check(self) -> None:
        if self._interrupted:
            raise Interrupted("the job is stopping")

    async def ready(self) -> dict[str, Any]:
        """The model's execution parameters (``/execution-parameters``) and where this replica runs."""
        return {"parameters": self.server.execution_parameters(), "replica": self.name}

    async def transform(self, job: PartJob, unit: WorkUnit) -> UnitResult:
        """Transform ``unit``: a whole file into its ``.out`` object, or a part into its staged part object. A
        file error (bad input, a failed request) is the result's ``error``; anything else raises (the job fails)."""
        stores = (open_store(job.input_uri)[0], open_store(job.output_uri)[0])
        invoker = self.server.invoker(job.params)
        try:
            if unit.part is not None:
                work = PartWork(unit.checkpoint, unit.part)
                try:
                    report = await transform_part(
                        job, work, invoker, check_interrupt=self._check, stores=stores
                    )
                except FILE_ERRORS as exc:
                    return UnitResult(error=str(exc), kind=getattr(exc, "kind", None), replica=self.name)
                return UnitResult(outcome=report.outcome, log_lines=report.log_lines, replica=self.name)
            return await self._whole_file(job, unit, invoker, stores)
        finally:
            await invoker.aclose()

    async def _whole_file(
        self, job: PartJob, unit: WorkUnit, invoker: Invoker, stores: tuple[ObjectStore, ObjectStore]
    ) -> UnitResult:
        """A file of one part, straight into its ``.out`` as the local engine writes it."""
        with tempfile.TemporaryDirectory(prefix="batchlane-unit-") as folder:
            context = CollectingContext(self._check, consolidated_folder=Path(folder))
            work = FileTransform(
                context,
                unit.checkpoint,
                job.params,
                job.options,
                DataProcessor.from_params(job.params, job.options),
                Assembler(job.params.assemble_with, job.params.result_type),
                invoker,
            )
            try:
                outcome = await work.run(*stores)
            except FILE_ERRORS as exc:
                return UnitResult(
                    error=str(exc),
                    kind=getattr(exc, "kind", None),
                    log_lines=context.lines,
                    replica=self.name,
                )
            part = context.consolidated_path(unit.checkpoint.input_key)
            return UnitResult(
                outcome=outcome,
                log_lines=context.lines,
                consolidated=part.read_bytes() if job.options.consolidate and part.exists() else None,
                replica=self.name,
            )

    async def close(self) -> None:
        """Stop the model (its ``batchlane serve`` process, if any) before the actor is killed."""
        self.server.__exit__(None, None, None)


def _model_server(
    spec: ReplicaSpec, request: Any, options: JobOptions, model: ModelSpec, index: int
) -> ModelServer:
    """The replica's model server, chosen as ``runner.JobRunner`` chooses the local engine's."""
    env = container_environment(request, model.environment)
    if spec.invoker == "in_process":
        from batchlane.transform.in_process import InProcessModel

        if not model.model_data:
            raise ValidationError(
                f"model {model.name} has no model_data: the in-process invoker loads model_data",
                field="ModelName",
            )
        return InProcessModel(
            materialize_model(model.model_data, spec.cache_dir),
            env=env,
            startup_timeout_s=options.startup_timeout_s,
        )
    from batchlane.transform.container import ModelContainer

    log_file = Path(f"{spec.log_base}.{index}.log")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    common: dict[str, Any] = {
        "env": env,
        "startup_timeout_s": options.startup_timeout_s,
        "log_file": log_file,
    }
    if model.serve_url:
        return ModelContainer(url=model.serve_url, **common)
    if model.serve_command:
        return ModelContainer(serve_command=model.serve_command, **common)
    return ModelContainer(model_dir=materialize_model(model.model_data or "", spec.cache_dir), **common)
