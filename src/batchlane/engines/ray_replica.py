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

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchlane.engines.ray_units import UnitResult, WorkUnit
from batchlane.errors import ValidationError
from batchlane.models import ModelSpec
from batchlane.storage.uri import open_store
from batchlane.transform.assemble import Assembler
from batchlane.transform.dataprocessing import DataProcessor
from batchlane.transform.file_loop import FILE_ERRORS
from batchlane.transform.file_transform import FileTransform
from batchlane.transform.invoke import ModelServer
from batchlane.transform.model_data import materialize_model
from batchlane.transform.options import JobOptions
from batchlane.transform.params import EffectiveParams, container_environment
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


class _Lines(logging.Handler):
    """Collects a unit's job-log lines, which the driver writes to the job's log."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


class _UnitContext:
    """The ``context.FileContext`` of a unit on a replica: counts in memory, consolidated lines in a temp folder.
    A stop reaches the unit as a cancellation, so ``check_interrupt`` has nothing to check."""

    def __init__(self, log: logging.Logger, folder: Path) -> None:
        self.log = log
        self.folder = folder
        self.bytes_read = 0
        self.warning_count = 0
        self.warning: str | None = None

    def check_interrupt(self) -> None:
        return None

    def progress(self, input_key: str, *, records: int, failed: int, bytes_read: int) -> None:
        self.bytes_read += bytes_read

    def warnings(self, input_key: str, count: int, message: str) -> None:
        self.warning_count, self.warning = count, message

    def consolidated_path(self, input_key: str) -> Path:
        return self.folder / "consolidated.jsonl"


class Replica:
    """One model replica (``index`` of the pool) of the job ``spec`` describes; the model starts in ``__init__``."""

    def __init__(self, spec: ReplicaSpec, index: int) -> None:
        self.name = f"replica-{index}@{os.uname().nodename}:{os.getpid()}"
        self.request = validate_request(spec.request)
        self.options = JobOptions.model_validate(spec.options)
        self.server = _model_server(spec, self.request, self.options, ModelSpec.parse(spec.model), index)
        self.server.__enter__()
        self.log = logging.getLogger(f"batchlane.ray.{spec.job}.{index}")
        self.log.propagate = False
        self.log.setLevel(logging.INFO)

    async def ready(self) -> dict[str, Any]:
        """The model's execution parameters (``/execution-parameters``) and where this replica runs."""
        return {"parameters": self.server.execution_parameters(), "replica": self.name}

    async def transform(self, unit: WorkUnit, params: EffectiveParams) -> UnitResult:
        """Transform ``unit`` into its output object; a file error (bad input, a failed request) is the result's
        ``error``, anything else raises (the job fails)."""
        in_store, _ = open_store(unit.in_root)
        out_store, _ = open_store(unit.out_root)
        handler = _Lines()
        self.log.addHandler(handler)
        invoker = self.server.invoker(params)
        try:
            with tempfile.TemporaryDirectory(prefix="batchlane-unit-") as folder:
                context = _UnitContext(self.log, Path(folder))
                work = FileTransform(
                    context,
                    unit.checkpoint(),
                    params,
                    self.options,
                    DataProcessor.from_params(params, self.options),
                    Assembler(params.assemble_with, params.result_type),
                    invoker,
                )
                try:
                    outcome = await work.run(in_store, out_store)
                except FILE_ERRORS as exc:
                    return UnitResult(
                        bytes_read=context.bytes_read,
                        error=str(exc),
                        kind=getattr(exc, "kind", None),
                        log_lines=handler.lines,
                        replica=self.name,
                    )
                part = context.consolidated_path(unit.input_key)
                return UnitResult(
                    records=outcome.records,
                    failed=outcome.failed,
                    bytes_read=context.bytes_read,
                    warnings=context.warning_count,
                    first_warning=context.warning,
                    log_lines=handler.lines,
                    consolidated=part.read_bytes() if self.options.consolidate and part.exists() else None,
                    replica=self.name,
                )
        finally:
            self.log.removeHandler(handler)
            await invoker.aclose()

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
