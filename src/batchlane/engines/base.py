"""The engine seam: where a transform job runs. An ``Engine`` Protocol and ``get_engine(name, store)``.

Every front door (the CLI, the control plane, the queue worker, the demo) builds a typed request and calls an engine
from ``get_engine``; none imports a concrete engine (a test checks the imports). All engines share one lifecycle
(docs/engines.md):

* ``submit``: the create-time rules, once (``engines.submit``): the job is recorded InProgress in the job store;
* ``run``: drive one job to its end in this process (``burst``); the runner holds the job's lease (``jobs.lease``);
* ``stop`` / ``reopen`` / ``describe``: the SageMaker actions on an existing job;
* ``recover``: the one orphan sweep (``jobs.lease.find_orphans``): resume every job no live runner holds.

Engines are keyed by ``EngineName``. ``"local"``, ``"ray"`` (the ``ray`` extra; docs/ray.md) and ``"sagemaker"``
(Amazon SageMaker Batch Transform, the ``aws`` extra; docs/sagemaker-engine.md) ship; a missing extra is a one-line
error naming it. Docker is not an engine: it is a model *runtime* any engine uses when a model's ``Image`` is a real
image (``transform.docker_server``); asking for a ``"docker"`` engine says so.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol, get_args, runtime_checkable

from batchlane.errors import ValidationError
from batchlane.jobs.records import JobRecord
from batchlane.jobs.store import JobStore
from batchlane.transform.context import ProgressCallback

EngineName = Literal["local", "ray", "sagemaker"]
ENGINE_NAMES: tuple[str, ...] = get_args(EngineName)

# name -> (module:class, the extra whose packages it needs or None, the package that extra brings)
_ENGINES: dict[str, tuple[str | None, str | None, str | None]] = {
    "local": ("batchlane.engines.local:LocalEngine", None, None),
    "ray": ("batchlane.engines.ray:RayEngine", "ray", "ray"),
    "sagemaker": ("batchlane.engines.sagemaker:SageMakerEngine", "aws", "boto3"),
}


@runtime_checkable
class Engine(Protocol):
    """Runs the transform jobs of one job store. Every method takes the job's name (case-insensitive, as stored)."""

    name: str
    store: JobStore

    def submit(
        self,
        request: Mapping[str, Any],
        options: Mapping[str, Any] | None = None,
        *,
        if_same_spec_ok: bool = False,
    ) -> JobRecord:
        """Validate and record a new job (InProgress, not yet running); errors name the offending field.
        ``if_same_spec_ok``: an identical job of that name is returned instead of ``AlreadyExists``."""
        ...

    def run(
        self,
        name: str,
        *,
        owner: str | None = None,
        lease_s: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> JobRecord:
        """Run or resume job ``name`` here until it ends (burst); returns the final record, or the current one if
        another live runner holds the job."""
        ...

    def run_in_foreground(
        self,
        name: str,
        *,
        on_progress: ProgressCallback | None = None,
        on_signal: Callable[[int], None] | None = None,
    ) -> tuple[JobRecord, int | None]:
        """``run`` for a terminal: the first SIGINT/SIGTERM stops the job gracefully; returns the final record and
        the first signal received (None if none)."""
        ...

    def start_detached(self, name: str, *, log_file: str | Path | None = None) -> Any:
        """Run job ``name`` in the background, outliving this process; returns a handle (a process)."""
        ...

    def stop(self, name: str, *, finish_here: bool = True) -> JobRecord:
        """StopTransformJob: InProgress → Stopping; the runner ends it Stopped. ``finish_here``: a job no live
        runner holds is stopped here and now (else whoever runs it next finishes the stop)."""
        ...

    def reopen(self, name: str) -> JobRecord:
        """Make a Stopped, Failed or orphaned job runnable again (``jobs resume``); ``Conflict`` saying why not."""
        ...

    def describe(self, name: str) -> dict[str, Any]:
        """DescribeTransformJob's answer for the job."""
        ...

    def recover(
        self, *, detach: bool = False, should_stop: Callable[[], bool] | None = None
    ) -> list[JobRecord]:
        """The orphan sweep: resume every job no live runner holds, oldest first (``detach``: in background
        processes). ``should_stop()`` is asked between jobs. Returns the jobs as they were left."""
        ...


def get_engine(name: str, store: JobStore, **options: Any) -> Engine:
    """The engine called ``name`` over ``store`` (``options`` go to its constructor).

    ``ValidationError`` (field ``engine``) naming the choices for an unknown name, and naming the extra to install
    or saying that it is not available in this version for a known one that cannot run here.
    """
    entry = _ENGINES.get(name)
    if name == "docker":
        raise ValidationError(
            "'docker' is not an engine: a model whose Image is a container image runs in Docker on any engine "
            "(docs/containers.md); use engine 'local'",
            field="engine",
        )
    if entry is None:
        raise ValidationError(f"engine {name!r} is not one of {', '.join(ENGINE_NAMES)}", field="engine")
    target, extra, package = entry
    if extra is not None and package is not None and importlib.util.find_spec(package) is None:
        raise ValidationError(
            f"engine {name!r} needs the {extra!r} extra: pip install 'batchlane[{extra}]'", field="engine"
        )
    if target is None:
        raise ValidationError(
            f"engine {name!r} is not available in this version of batchlane; use engine 'local'",
            field="engine",
        )
    module_name, _, class_name = target.partition(":")
    engine_class = getattr(importlib.import_module(module_name), class_name)
    return engine_class(store, **options)
