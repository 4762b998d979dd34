"""The ray engine: a job's work units go to a pool of model replicas on a Ray cluster (docs/ray.md).

``RayEngine`` is the local engine (same ``submit``, ``stop``, ``reopen``, ``describe``, ``recover`` over the same job
store) whose runner is a Ray *driver*: ``RayJobRunner`` holds the job's lease, plans the job (the same validated
request, planner, DataProcessing and assembly as the local engine), sends the pending work units to
``ray_pool.ReplicaPool`` and is the only writer of the job store: replicas write output objects (atomically) and
return outcomes, which the driver commits one unit at a time. A killed driver leaves the job to ``jobs resume``,
which runs it on the ray engine again (the job option ``engine``) and redoes only the uncommitted units.

Options (constructor, else the job's options, else defaults): ``address`` (None: a local Ray started for the job;
``auto``: the cluster running on this machine; ``ray://host:port``), ``replicas`` (default InstanceCount × replicas
per instance), ``gpus_per_replica`` (default 1 for a GPU instance type, else 0) and ``invoker`` (``auto``: the
model in each replica's process when it has model_data, else a ``batchlane serve`` per replica).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from batchlane.engines.local import LocalEngine
from batchlane.engines.ray_pool import PoolConfig, ReplicaPool
from batchlane.engines.ray_replica import ReplicaSpec
from batchlane.engines.ray_units import UnitBook
from batchlane.errors import ValidationError
from batchlane.jobs.lease import DEFAULT_LEASE_S
from batchlane.jobs.store import FileCheckpoint, JobStore
from batchlane.models import ModelSpec
from batchlane.serving.capture import JobCapture
from batchlane.storage.base import ObjectStore
from batchlane.storage.uri import open_store
from batchlane.transform.context import ProgressCallback
from batchlane.transform.invoke import ModelServer
from batchlane.transform.options import JobOptions
from batchlane.transform.params import EffectiveParams
from batchlane.transform.part_work import PartJob, store_uri
from batchlane.transform.runner import JobRunner
from batchlane.transform.spec import CreateTransformJobRequest, canonical_uri

ReplicaInvoker = Literal["auto", "in_process", "http"]

# Instance families with GPUs (SageMaker's ml.p*, ml.g*): a job on one wants a GPU per replica by default.
_GPU_FAMILIES = ("ml.p", "ml.g")


def wants_gpu(instance_type: str) -> bool:
    """Whether a SageMaker instance type has GPUs (``ml.g5.xlarge``: yes; ``ml.m5.large``, ``local``: no)."""
    return instance_type.startswith(_GPU_FAMILIES)


class RayJobRunner(JobRunner):
    """A ``JobRunner`` whose files are transformed by a ``ReplicaPool`` instead of a model server here."""

    def __init__(self, store: JobStore, name: str, *, engine: RayEngine, **kwargs: Any) -> None:
        super().__init__(store, name, **kwargs)
        self.engine = engine
        self._request: CreateTransformJobRequest | None = None

    def _capture(self, request: CreateTransformJobRequest) -> JobCapture | None:
        if request.DataCaptureConfig is not None:
            raise ValidationError(
                "DataCaptureConfig is not supported by the ray engine yet; run the job with --engine local",
                field="DataCaptureConfig",
            )
        return None

    def _model_server(
        self,
        request: CreateTransformJobRequest,
        options: JobOptions,
        model: ModelSpec,
        capture: JobCapture | None = None,
    ) -> ModelServer:
        self._request = request
        engine = self.engine
        gpus = engine.gpus_per_replica if engine.gpus_per_replica is not None else options.gpus_per_replica
        if gpus is None:
            gpus = 1.0 if wants_gpu(request.TransformResources.InstanceType) else 0.0
        config = PoolConfig(
            address=engine.address or options.address,
            replicas=engine.replicas or options.replicas,
            instances=request.TransformResources.InstanceCount,
            gpus_per_replica=gpus,
        )
        invoker = engine.replica_invoker
        if invoker == "auto":
            invoker = (
                "in_process" if model.model_data and not (model.serve_command or model.serve_url) else "http"
            )
        record = self.store.get_job(self.name)
        spec = ReplicaSpec(
            job=self.name,
            request=record.request,
            options=options.model_dump(mode="json"),
            model=model.model_dump(mode="json"),
            cache_dir=str(self.cache_dir),
            invoker=invoker,
            log_base=str(self.store.log_path(self.name).with_suffix(".container")),
        )
        pool = ReplicaPool(
            config,
            spec,
            startup_timeout_s=options.startup_timeout_s,
            check_interrupt=self.check_interrupt,
            job_log=self.job_log,
        )
        return pool  # type: ignore[return-value]  # a ModelServer whose invoker is the replicas'

    def _run_files(
        self,
        params: EffectiveParams,
        options: JobOptions,
        server: ModelServer,
        in_store: ObjectStore,
        out_store: ObjectStore,
        pending: list[FileCheckpoint],
    ) -> None:
        assert isinstance(server, ReplicaPool) and self._request is not None
        book = UnitBook(self._file_context(), in_store, out_store, params, options)
        job = PartJob(self.name, params, options, store_uri(in_store), store_uri(out_store))
        try:
            units = book.plan(pending)
            self.job_log.info(
                "[batchlane]: ray: %d work units (%d files) on %d replicas",
                len(units),
                len(pending),
                server.size,
            )
            server.run(units, job, book.commit, book.wanted)
        finally:
            # A replica killed mid-unit leaves its temp output behind (never visible as an output object).
            server.kill_all()
            book.tidy()
            _, prefix = open_store(canonical_uri(self._request.TransformOutput.S3OutputPath))
            self._clean_temps(out_store, prefix)


class RayEngine(LocalEngine):
    """Runs the jobs of ``store`` on a Ray cluster (see the module docstring for the options)."""

    name = "ray"

    def __init__(
        self,
        store: JobStore,
        *,
        address: str | None = None,
        replicas: int | None = None,
        gpus_per_replica: float | None = None,
        lease_s: float = DEFAULT_LEASE_S,
        cache_dir: str | Path | None = None,
        invoker: ReplicaInvoker = "auto",
    ) -> None:
        super().__init__(store, lease_s=lease_s, cache_dir=cache_dir)
        self.address = address
        self.replicas = replicas
        self.gpus_per_replica = gpus_per_replica
        self.replica_invoker = invoker

    def __repr__(self) -> str:
        return f"RayEngine({self.store!r}, address={self.address!r})"

    def _runner(
        self, name: str, *, owner: str | None, lease_s: float | None, on_progress: ProgressCallback | None
    ) -> JobRunner:
        return RayJobRunner(
            self.store,
            name,
            engine=self,
            lease_s=self.lease_s if lease_s is None else lease_s,
            on_progress=on_progress,
            owner=owner,
            cache_dir=self.cache_dir,
        )
