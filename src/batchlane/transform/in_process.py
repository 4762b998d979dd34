"""A job's model loaded in the runner's own process: no server, no port, no subprocess.

``InProcessModel`` is a ``invoke.ModelServer`` that builds the same ``serving.handler.Handler`` ``batchlane serve``
runs (the user's ``inference.py`` hooks over the default classifier, from the same ``ServeSettings``), and
``InProcessInvoker`` calls it as ``/invocations`` would be called: the same payload and response limits, the same
Content-Type of the answer, and an error of the handler becomes the ``InvocationFailed`` the HTTP status of that
error would give (``ClientError: 400: ...``, ``Bad HTTP status received from algorithm: 500: ...``), retried by the
same ``RetryPolicy``. So a job's outputs and failures are the same as over HTTP (docs/transform.md, "Where a file
runs"); only what needs a process differs: a model that hangs or kills its process cannot be restarted (a hung
request keeps its thread and, as user handlers run one at a time, the requests after it time out too), and user
code runs beside the runner (use it for code you trust: tests, and replicas that have a process of their own).

The model's and the job's ``Environment`` are set in this process's ``os.environ`` while the model is loaded (user
code reads them there) and restored when it stops, so one process holds one in-process model at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from batchlane import settings as settings_mod
from batchlane.errors import BatchlaneError, ModelError, ModelLoadError, PayloadTooLarge
from batchlane.serving.app import MB, ModelLoader, build_handler, check_declared_size, execution_parameters
from batchlane.serving.context import Headers
from batchlane.serving.dynamic_batching import request_concurrency
from batchlane.serving.environment import model_process_environment
from batchlane.serving.handler import Handler, Result
from batchlane.settings import ServeSettings
from batchlane.transform.invoke import (
    InvocationFailed,
    InvocationResult,
    RetryPolicy,
    clip,
    excerpt,
    status_failure,
    timeout_failure,
    with_retries,
)
from batchlane.transform.params import EffectiveParams

log = logging.getLogger(__name__)

LOAD_POLL_S = 0.1
_loaded = threading.Lock()  # held while an in-process model is loaded: its Environment is in os.environ


class InProcessModel:
    """The model in ``model_dir`` (a folder or ``model.tar.gz``) loaded here with ``env`` as its environment.

    Use as a context manager: ``start()`` loads it (``pre_model_fn``/``model_fn``/``model_warmup_fn``) within
    ``startup_timeout_s``, calling ``on_wait()`` while it waits (it may raise to give up); a model that fails to
    load raises ``ModelLoadError`` with the hook's one-line reason.
    """

    restartable = False

    def __init__(
        self,
        model_dir: str | Path,
        *,
        env: Mapping[str, str] | None = None,
        startup_timeout_s: float = 120.0,
        on_wait: Callable[[], None] | None = None,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.env = dict(env or {})
        self.startup_timeout_s = startup_timeout_s
        self.on_wait = on_wait
        self.settings: ServeSettings | None = None
        self.handler: Handler | None = None
        self.parameters: dict[str, Any] = {}
        self._saved_env: dict[str, str | None] | None = None
        self._holds_lock = False

    def __enter__(self) -> InProcessModel:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if not _loaded.acquire(blocking=False):
            raise ModelLoadError("another in-process model is loaded in this process; run one job at a time")
        self._holds_lock = True
        try:
            self._apply_env()
            self._load()
        except BaseException:
            self.stop()
            raise

    def _apply_env(self) -> None:
        self._saved_env = {key: os.environ.get(key) for key in self.env}
        os.environ.update(self.env)

    def _load(self) -> None:
        # The settings `batchlane serve --model-dir DIR` would build in the model process's clean environment.
        environment = model_process_environment(os.environ, self.env)
        settings = ServeSettings.from_env(environment, model_dir=self.model_dir, host="127.0.0.1")
        parameters = execution_parameters(settings)
        handler = build_handler(settings)
        loader = ModelLoader(handler)
        loader.start()
        deadline = time.monotonic() + self.startup_timeout_s
        while not loader.ready:
            if loader.state == "failed":
                raise ModelLoadError(f"the model failed to load: {loader.error}")
            if self.on_wait is not None:
                self.on_wait()
            if time.monotonic() >= deadline:
                raise ModelLoadError(f"the model did not load within {self.startup_timeout_s:g} s")
            time.sleep(LOAD_POLL_S)
        self.settings, self.handler, self.parameters = settings, handler, parameters
        log.info("in-process model %s loaded; execution parameters %s", handler.model_dir, parameters)

    def stop(self) -> None:
        """Forget the model and restore the environment it was loaded with. A request still running in a thread
        (one that timed out) keeps its own reference until it returns."""
        self.handler = None
        if self._saved_env is not None:
            for key, value in self._saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            self._saved_env = None
        if self._holds_lock:
            self._holds_lock = False
            _loaded.release()

    def execution_parameters(self) -> dict[str, Any] | None:
        """What the container's ``/execution-parameters`` would answer for this model's settings."""
        return dict(self.parameters)

    def invoker(self, params: EffectiveParams) -> InProcessInvoker:
        """An ``InProcessInvoker`` with the job's timeout, retries and concurrency."""
        return InProcessInvoker(
            self,
            timeout_s=params.invocations_timeout_s,
            max_retries=params.invocations_max_retries,
        )


class InProcessInvoker:
    """An ``Invoker`` over a loaded ``InProcessModel``: each request runs the handler in a thread of its own, at most
    as many at once as the container would admit (its ``MaxConcurrentTransforms``)."""

    def __init__(
        self,
        model: InProcessModel,
        *,
        timeout_s: float = 600.0,
        max_retries: int = 3,
        retry_delays: list[float] | None = None,
    ) -> None:
        if model.handler is None or model.settings is None:
            raise ValueError("the in-process model is not loaded; start() it first")
        self.model = model
        self.handler = model.handler
        self.settings = model.settings
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.retry_delays = (
            retry_delays if retry_delays is not None else RetryPolicy(max_retries=max_retries).delays()
        )
        self._slots = asyncio.Semaphore(
            request_concurrency(self.settings, model.parameters["MaxConcurrentTransforms"])
        )

    async def invoke(
        self,
        body: bytes,
        *,
        content_type: str | None,
        accept: str | None,
        headers: Mapping[str, str] | None = None,
    ) -> InvocationResult:
        started = time.monotonic()
        request_headers = Headers({**(headers or {}), "content-length": str(len(body))})
        if content_type:
            request_headers["content-type"] = content_type
        if accept:
            request_headers["accept"] = accept
        return await with_retries(
            lambda attempt: self._once(body, request_headers, attempt, started),
            max_retries=self.max_retries,
            delays=self.retry_delays,
        )

    async def _once(self, body: bytes, headers: Headers, attempt: int, started: float) -> InvocationResult:
        try:
            result = await self._call(body, headers)
        except InvocationFailed:
            raise
        except BatchlaneError as exc:
            raise status_failure(exc.status, clip(str(exc))) from None
        if not 200 <= result.status < 300:
            raise status_failure(result.status, excerpt(result.body))
        return InvocationResult(
            body=result.body,
            content_type=_declared_type(result.content_type),
            status=result.status,
            attempts=attempt,
            seconds=time.monotonic() - started,
        )

    async def _call(self, body: bytes, headers: Headers) -> Result:
        """``/invocations``'s checks and call, raising what the app would answer as an error."""
        limit = self.settings.max_payload_mb * MB
        check_declared_size(SimpleNamespace(headers=headers), limit)  # type: ignore[arg-type]
        async with self._slots:
            try:
                result = await asyncio.wait_for(
                    _in_thread(
                        lambda: self.handler.invoke(
                            body, headers.get("content-type"), headers.get("accept"), headers
                        )
                    ),
                    self.timeout_s,
                )
            except TimeoutError:
                raise timeout_failure(self.timeout_s) from None
            except BatchlaneError:
                raise
            except Exception as exc:  # a bug of ours: the app answers it as a 500
                raise ModelError(f"unexpected server error: {type(exc).__name__}: {exc}") from exc
        response_limit = (self.settings.max_response_mb or 0) * MB
        if response_limit and len(result.body) > response_limit:
            raise PayloadTooLarge(
                f"response of {len(result.body)} bytes exceeds {settings_mod.BATCHLANE_MAX_RESPONSE_MB}="
                f"{self.settings.max_response_mb}; send smaller mini-batches or raise the limit"
            )
        return result

    async def ping(self) -> bool:
        return self.model.handler is not None

    async def execution_parameters(self) -> dict[str, Any] | None:
        return self.model.execution_parameters()

    async def aclose(self) -> None:
        """Nothing to release: requests still running finish in their own threads."""


def _declared_type(media_type: str) -> str:
    """The Content-Type the container's HTTP response carries for ``media_type`` (a ``text/*`` type gets
    ``; charset=utf-8`` added, as the ASGI server's response does)."""
    if media_type.startswith("text/") and "charset=" not in media_type.lower():
        return f"{media_type}; charset=utf-8"
    return media_type


def _in_thread(call: Callable[[], Result]) -> asyncio.Future[Result]:
    """Run ``call`` in a daemon thread of its own: a request abandoned on a timeout or a stop keeps running there,
    as it would in a server, without holding up the event loop's shutdown or the process's exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Result] = loop.create_future()

    def settle(result: Result | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            outcome: tuple[Result | None, BaseException | None] = (call(), None)
        except BaseException as exc:  # delivered to the awaiting task, never lost in the thread
            outcome = (None, exc)
        # RuntimeError: the loop has closed, so nobody waits for this answer any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=run, name="batchlane-in-process-invoke", daemon=True).start()
    return future
