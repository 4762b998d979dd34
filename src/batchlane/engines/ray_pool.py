"""The ray engine's pool of replica actors and the driver loop that feeds them work units (docs/ray.md).

``ReplicaPool`` is the job's ``ModelServer`` on the driver: entering it connects to Ray, checks that the cluster can
host at least one replica (CPUs, and GPUs when the job wants them: a clear failure, never a hang), starts the
actors (``ray_replica.Replica``, ``num_gpus`` each where the job wants GPUs) and waits for the first to load its
model. ``run`` keeps one unit in flight per ready replica through its own queue (``ray.wait``), hands each result
to ``commit`` (the driver writes the job store) and re-queues the unit of a replica that died (``ray.kill``, a lost
node) on another one, starting a replacement. ``check_interrupt`` (the driver's stop, deadline or lost lease) is
polled between waits: the units in flight are cancelled and the actors killed.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from batchlane.engines.ray_replica import Replica, ReplicaSpec
from batchlane.engines.ray_units import UnitResult, WorkUnit
from batchlane.errors import BatchlaneError, ValidationError
from batchlane.transform.file_loop import STOP_POLL_S
from batchlane.transform.params import EffectiveParams
from batchlane.transform.part_work import PartJob

log = logging.getLogger(__name__)

# A unit whose replica died this many times is failed (a record that kills any model would otherwise loop forever).
MAX_UNIT_ATTEMPTS = 3
CANCEL_GRACE_S = 5.0  # how long cancelled units get to discard their temp output before the actors are killed


@dataclass(frozen=True)
class PoolConfig:
    """Where and how many: the Ray ``address`` (None: ``RAY_ADDRESS``, else a new local Ray for this job; ``auto``;
    ``ray://host:port``),
    the pool size (``replicas``; None: instances × replicas per instance), the job's ``instances``
    (InstanceCount), and the resources of each replica."""

    address: str | None
    replicas: int | None
    instances: int
    gpus_per_replica: float
    cpus_per_replica: float = 1.0


def _cause(exc: BaseException) -> str:
    """The one-line reason of an error raised in an actor (Ray wraps it with a traceback)."""
    cause = getattr(exc, "cause", None)
    return str(cause) if cause is not None else str(exc).strip().splitlines()[-1]


class ReplicaPool:
    """The replica actors of one job run; a context manager (see the module docstring)."""

    def __init__(
        self,
        config: PoolConfig,
        spec: ReplicaSpec,
        *,
        startup_timeout_s: float,
        check_interrupt: Callable[[], None],
        job_log: logging.Logger,
    ) -> None:
        self.config = config
        self.spec = spec
        self.startup_timeout_s = startup_timeout_s
        self.check_interrupt = check_interrupt
        self.job_log = job_log
        self.size = 0
        self.idle: list[Any] = []
        self.starting: dict[Any, Any] = {}  # ready() ref -> actor
        self.replacements = 0
        self._started = 0
        self._connected_here = False
        self._parameters: dict[str, Any] | None = None
        self._actors: list[Any] = []

    # -- ModelServer -------------------------------------------------------------------------------------------
    def __enter__(self) -> ReplicaPool:
        import ray

        if not ray.is_initialized():
            # No address (and no RAY_ADDRESS) means a Ray of this job's own ("local"), never whichever cluster
            # this machine happened to start last.
            ray.init(
                address=self.config.address or os.environ.get("RAY_ADDRESS") or "local",
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
            self._connected_here = True
        try:
            self.size = self._pool_size(ray)
            self.job_log.info(
                "[batchlane]: ray: %d replicas (%g CPU, %g GPU each) on a cluster of %s",
                self.size,
                self.config.cpus_per_replica,
                self.config.gpus_per_replica,
                _describe(ray.cluster_resources()),
            )
            for _ in range(self.size):
                self._start_actor()
            self._await_first()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        import ray

        self.kill_all()
        if self._connected_here:
            ray.shutdown()

    def execution_parameters(self) -> dict[str, Any] | None:
        return self._parameters

    def invoker(self, params: EffectiveParams) -> Any:
        raise NotImplementedError("a ray job's requests are sent by its replicas")

    # -- starting ----------------------------------------------------------------------------------------------
    def _pool_size(self, ray: Any) -> int:
        """The pool size: asked for, or instances × replicas per instance; at most what the cluster can host."""
        total = ray.cluster_resources()
        cpus, gpus = total.get("CPU", 0.0), total.get("GPU", 0.0)
        want_gpu, want_cpu = self.config.gpus_per_replica, self.config.cpus_per_replica
        where = self.config.address or "local"
        if want_gpu > 0 and gpus < want_gpu:
            raise ValidationError(
                f"the Ray cluster ({where}) has {gpus:g} GPUs and cannot host one replica that needs {want_gpu:g} "
                "GPU (a GPU instance type or --gpus-per-replica); start it on GPU nodes or ask for "
                "--gpus-per-replica 0",
                field="gpus_per_replica",
            )
        if cpus < want_cpu:
            raise ValidationError(
                f"the Ray cluster ({where}) has {cpus:g} CPUs and cannot host one replica ({want_cpu:g} CPU)",
                field="replicas",
            )
        if self.config.replicas is not None:
            wanted = self.config.replicas
        else:
            per_instance = max(1, int(_gpus_per_node(ray) // want_gpu)) if want_gpu > 0 else 1
            wanted = self.config.instances * per_instance
        fits = math.floor(cpus / want_cpu) if want_cpu else wanted
        if want_gpu > 0:
            fits = min(fits, math.floor(gpus / want_gpu))
        if fits < wanted:
            self.job_log.info(
                "[batchlane]: ray: the cluster hosts %d of the %d replicas asked for; running %d",
                fits,
                wanted,
                fits,
            )
        return max(1, min(wanted, fits))

    def _start_actor(self) -> None:
        import ray

        remote = ray.remote(Replica).options(
            # Named, so that `ray list actors` (and a test) can tell a job's replicas apart.
            name=f"batchlane-{self.spec.job}-{self._started}-{secrets.token_hex(3)}",
            num_cpus=self.config.cpus_per_replica,
            num_gpus=self.config.gpus_per_replica,
            max_restarts=0,
            max_concurrency=4,  # a unit, plus ready()/close() beside it
        )
        actor = remote.remote(self.spec, self._started)
        self._started += 1
        self._actors.append(actor)
        self.starting[actor.ready.remote()] = actor

    def _started_ok(self, ref: Any) -> bool:
        """A replica answered ``ready``: it joins the idle ones. A replica that could not load its model fails the
        job when no replica is up (the model is broken); a replacement that died is only logged."""
        import ray

        actor = self.starting.pop(ref)
        try:
            answer = ray.get(ref)
        except Exception as exc:
            if not self.idle and not self.starting and self._parameters is None:
                raise BatchlaneError(f"the model replica did not start: {_cause(exc)}") from None
            self.job_log.info("[batchlane]: ray: a replica did not start: %s", _cause(exc))
            return False
        if self._parameters is None:
            self._parameters = answer["parameters"]
        self.job_log.info("[batchlane]: ray: %s ready", answer["replica"])
        self.idle.append(actor)
        return True

    def _await_first(self) -> None:
        import ray

        deadline = time.monotonic() + self.startup_timeout_s
        while not self.idle:
            self.check_interrupt()
            if not self.starting:
                raise BatchlaneError("no model replica could be started on the Ray cluster")
            if time.monotonic() >= deadline:
                raise BatchlaneError(
                    f"no model replica was ready within {self.startup_timeout_s:g} s (startup_timeout_s); "
                    f"the Ray cluster has {_describe(ray.available_resources())} free"
                )
            ready, _ = ray.wait(list(self.starting), num_returns=1, timeout=STOP_POLL_S)
            for ref in ready:
                self._started_ok(ref)

    # -- the driver loop ---------------------------------------------------------------------------------------
    def run(
        self,
        units: list[WorkUnit],
        job: PartJob,
        commit: Callable[[WorkUnit, UnitResult], None],
        wanted: Callable[[WorkUnit], bool] = lambda unit: True,
    ) -> None:
        """Transform ``units`` of ``job`` on the replicas, committing each result as it comes (a queued unit no
        longer ``wanted`` is dropped); ``Interrupted`` (from ``check_interrupt``) after cancelling what is in
        flight."""
        import ray

        queue = deque(units)
        running: dict[Any, tuple[Any, WorkUnit]] = {}
        attempts: dict[tuple[str, int], int] = {}
        try:
            while queue or running:
                self.check_interrupt()
                while self.idle and queue:
                    unit = queue.popleft()
                    if wanted(unit):
                        actor = self.idle.pop()
                        running[actor.transform.remote(job, unit)] = (actor, unit)
                if not running:
                    if not queue:  # the last queued units were dropped (their file failed)
                        break
                    if not self.starting:
                        raise BatchlaneError(
                            "every model replica of the job died; none is left to run its units"
                        )
                ready, _ = ray.wait([*running, *self.starting], num_returns=1, timeout=STOP_POLL_S)
                for ref in ready:
                    if ref in self.starting:
                        self._started_ok(ref)
                        continue
                    actor, unit = running.pop(ref)
                    try:
                        result = ray.get(ref)
                    except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
                        self._replica_died(actor, unit, exc, queue, attempts, commit)
                        continue
                    except ray.exceptions.RayTaskError as exc:
                        raise BatchlaneError(f"{unit.where()}: {_cause(exc)}") from None
                    self.idle.append(actor)
                    commit(unit, result)
        except BaseException:
            self._cancel(running, commit)
            raise

    def _replica_died(
        self,
        actor: Any,
        unit: WorkUnit,
        exc: BaseException,
        queue: deque[WorkUnit],
        attempts: dict[tuple[str, int], int],
        commit: Callable[[WorkUnit, UnitResult], None],
    ) -> None:
        """The unit's replica died (killed, its node lost): re-run the unit on another replica, from its start (its
        output was never published), and start a replacement replica."""
        attempts[unit.key] = attempts.get(unit.key, 0) + 1
        reason = _cause(exc)
        if attempts[unit.key] >= MAX_UNIT_ATTEMPTS:
            message = f"the model replica died {MAX_UNIT_ATTEMPTS} times while transforming it ({reason})"
            commit(unit, UnitResult(error=message))
        else:
            self.job_log.info(
                "[batchlane]: ray: the replica transforming %s died (%s); re-running it on another replica",
                unit.where(),
                reason,
            )
            queue.appendleft(unit)
        if self.replacements < self.size * MAX_UNIT_ATTEMPTS:
            self.replacements += 1
            self._start_actor()

    def _cancel(
        self, running: dict[Any, tuple[Any, WorkUnit]], commit: Callable[[WorkUnit, UnitResult], None]
    ) -> None:
        """Abandon the units in flight (a stop) and give them ``CANCEL_GRACE_S`` to discard their temp output. A
        unit that finished anyway (its output is published) is still committed, as the local engine commits a file
        that was done when the stop came; a commit the store refuses (a lost lease) is left to the next run."""
        import ray

        refs = list(running)
        if not refs:
            return
        # The replicas abandon their units at the next mini-batch (an Interrupted inside the unit discards its
        # temp output); ray.cancel alone can report a unit cancelled that went on to publish its output.
        for actor, _ in running.values():
            with contextlib.suppress(Exception):
                actor.interrupt.remote()
        _, late = ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE_S)
        for ref in late:
            ray.cancel(ref)
        for ref in refs:
            try:
                result = ray.get(ref, timeout=0)
            except Exception:  # noqa: S112  # cancelled, or its replica died: nothing was published
                continue
            if isinstance(result, UnitResult) and result.error is None:
                with contextlib.suppress(Exception):
                    commit(running[ref][1], result)

    def kill_all(self) -> None:
        """Stop every replica's model and kill the actors."""
        import ray

        closing = []
        for actor in self._actors:
            with contextlib.suppress(Exception):  # an actor already dead has nothing to close
                closing.append(actor.close.remote())
        if closing:
            ray.wait(closing, num_returns=len(closing), timeout=CANCEL_GRACE_S)
        for actor in self._actors:
            ray.kill(actor)
        self._actors.clear()
        self.idle.clear()
        self.starting.clear()


def _gpus_per_node(ray: Any) -> float:
    return max((node["Resources"].get("GPU", 0.0) for node in ray.nodes() if node.get("Alive")), default=0.0)


def _describe(resources: dict[str, float]) -> str:
    return f"{resources.get('CPU', 0):g} CPU, {resources.get('GPU', 0):g} GPU"
