"""The ASGI app of the inference container: ``/ping``, ``/execution-parameters``, ``/invocations``.

``create_app`` does the start-up checks synchronously (model folder or archive, user module, hook signatures,
settings), so a misconfigured container fails before it opens its port. The model itself (``model_fn``) loads in a
background thread once the app starts; ``/ping`` answers 503 until it is ready. Errors become a short JSON body
``{"code", "type", "message"}`` with the status of their class in ``batchlane.errors``; tracebacks go to the log.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from batchlane import metrics, request_body
from batchlane import settings as settings_mod
from batchlane.defaults import DEFAULT_CONTAINER_MAX_CONCURRENT_TRANSFORMS, MAX_PAYLOAD_PRODUCT, MB
from batchlane.errors import BatchlaneError, ModelError, ModelNotReady, PayloadTooLarge, ValidationError
from batchlane.serving.archive import resolve_model_dir
from batchlane.serving.capture import INFERENCE_ID_HEADER, CaptureConfig, CaptureWriter
from batchlane.serving.classifier import ClassifierHandler
from batchlane.serving.dynamic_batching import request_concurrency
from batchlane.serving.handler import Handler, resolve_hooks
from batchlane.settings import ServeSettings

logger = logging.getLogger(__name__)


def default_concurrency(settings: ServeSettings) -> int:
    """One payload per model thread, at least ``DEFAULT_CONTAINER_MAX_CONCURRENT_TRANSFORMS``: OpenVINO's throughput
    mode runs one stream per thread, and a payload smaller than the streams' share of batches leaves the others idle
    unless another payload is in flight."""
    from batchlane.serving import precision

    threads = settings.threads or precision.default_threads(precision.detect())
    return max(DEFAULT_CONTAINER_MAX_CONCURRENT_TRANSFORMS, threads)


# Both spellings are in use: the variable's MULTI_RECORD and the API enum's MultiRecord (docs/serving.md).
STRATEGIES = {"MULTIRECORD": "MULTI_RECORD", "SINGLERECORD": "SINGLE_RECORD"}


def execution_parameters(settings: ServeSettings) -> dict[str, Any]:
    """The ``/execution-parameters`` answer: the SageMaker variables when set, else defaults that fit this server.

    ``MaxConcurrentTransforms`` defaults to the model threads, at least 2 (``default_concurrency``; capped so that
    ``MCT × MaxPayloadInMB ≤ 100``, SageMaker's rule),
    ``BatchStrategy`` to ``MULTI_RECORD`` (either spelling accepted, answered in the variable's spelling) and
    ``MaxPayloadInMB`` to 6. Invalid values raise ``ValidationError`` naming the variable.
    """
    raw = (settings.batch_strategy or "MULTI_RECORD").strip().upper()
    strategy = STRATEGIES.get(raw.replace("_", "").replace("-", ""))
    if strategy is None:
        raise ValidationError(
            f"{settings_mod.SAGEMAKER_BATCH_STRATEGY}={settings.batch_strategy!r}: use MULTI_RECORD or SINGLE_RECORD",
            field=settings_mod.SAGEMAKER_BATCH_STRATEGY,
        )
    payload = settings.max_payload_mb
    if payload < 0:
        raise ValidationError(
            f"{settings_mod.SAGEMAKER_MAX_PAYLOAD_IN_MB} must be 0 (no limit) or more, got {payload}",
            field=settings_mod.SAGEMAKER_MAX_PAYLOAD_IN_MB,
        )
    concurrency = settings.max_concurrent_transforms
    if concurrency is not None and concurrency < 0:
        raise ValidationError(
            f"{settings_mod.SAGEMAKER_MAX_CONCURRENT_TRANSFORMS} must be 1 or more, got {concurrency}",
            field=settings_mod.SAGEMAKER_MAX_CONCURRENT_TRANSFORMS,
        )
    if not concurrency:
        concurrency = default_concurrency(settings)
        if payload > 0:
            concurrency = max(1, min(concurrency, MAX_PAYLOAD_PRODUCT // payload))
    return {"MaxConcurrentTransforms": concurrency, "BatchStrategy": strategy, "MaxPayloadInMB": payload}


class ModelLoader:
    """Loads the model once in a daemon thread; ``state`` is ``"idle"``, ``"loading"``, ``"ready"`` or ``"failed"``."""

    def __init__(self, handler: Handler, on_failure: Callable[[BaseException], None] | None = None) -> None:
        self.handler = handler
        self.on_failure = on_failure
        self.state = "idle"
        self.error: BaseException | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start loading unless already started (idempotent, so ASGI transports without lifespan work too)."""
        with self._lock:
            if self.state != "idle":
                return
            self.state = "loading"
        threading.Thread(target=self._run, name="batchlane-model-loader", daemon=True).start()

    def _run(self) -> None:
        started = time.monotonic()
        try:
            self.handler.load()
        except BaseException as exc:
            self.error, self.state = exc, "failed"
            logger.error("model failed to load: %s", exc, exc_info=exc)
            if self.on_failure is not None:
                self.on_failure(exc)
            return
        self.state = "ready"
        seconds = time.monotonic() - started
        metrics.SERVE_MODEL_LOAD_SECONDS.set(seconds)
        metrics.SERVE_MODEL_READY.set(1)
        logger.info("model ready in %.1f s", seconds)

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def not_ready_error(self) -> ModelNotReady:
        if self.state == "failed":
            return ModelNotReady(f"the model failed to load: {self.error}")
        return ModelNotReady("the model is still loading; retry when /ping answers 200")


def error_response(exc: BaseException, *, log: bool = True) -> JSONResponse:
    """The client's view of an error: status from the class, one short line of message, no traceback.

    Server-side failures (5xx other than 503) are logged with the traceback of their cause; the rest in one line.
    """
    if isinstance(exc, BatchlaneError):
        error = exc
    else:  # a bug of ours: still a short message for the client
        error = ModelError(f"unexpected server error: {type(exc).__name__}: {exc}")
    if log and error.status >= 500 and not isinstance(error, ModelNotReady):
        logger.error("%d %s: %s", error.status, type(error).__name__, error, exc_info=error.__cause__ or exc)
    elif log:
        logger.warning("%d %s: %s", error.status, type(error).__name__, error)
    body = {"code": error.status, "type": type(error).__name__, "message": str(error)}
    return JSONResponse(body, status_code=error.status)


def _too_large(size: str, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"payload of {size} exceeds the container limit of {limit // MB} MB ({limit} bytes); "
        f"send smaller mini-batches or raise {settings_mod.SAGEMAKER_MAX_PAYLOAD_IN_MB}"
    )


def check_declared_size(request: Request, limit: int) -> None:
    """Refuse a request whose Content-Length exceeds ``limit`` bytes (0: no limit) before reading it."""
    request_body.check_declared_size(request, limit, lambda size: _too_large(size, limit))


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes (0: no limit) by Content-Length and while streaming."""
    return await request_body.read_capped_body(request, limit, lambda size: _too_large(size, limit))


class _LoopSemaphore:
    """One ``asyncio.Semaphore`` per event loop: an app may be driven by several loops (test clients)."""

    def __init__(self, value: int) -> None:
        self.value = value
        self._by_loop: dict[int, asyncio.Semaphore] = {}

    def get(self) -> asyncio.Semaphore:
        key = id(asyncio.get_running_loop())
        if key not in self._by_loop:
            self._by_loop[key] = asyncio.Semaphore(self.value)
        return self._by_loop[key]


def _model_name(path: Path) -> str:
    """The model folder's or archive's name without its archive suffix: capture's default folder name."""
    name = path.name
    for suffix in (".tar.gz", ".tgz", ".tar"):
        name = name.removesuffix(suffix)
    return name or "model"


def _capture(capture: CaptureWriter, body: bytes, headers: Any, result: Any) -> None:
    """Hand one answered invocation to data capture; a capture bug is logged, never the client's problem."""
    try:
        capture.capture(
            body,
            headers.get("content-type"),
            result.body,
            result.content_type,
            inference_id=headers.get(INFERENCE_ID_HEADER),
        )
    except Exception:
        logger.exception("data capture failed; the request was answered")


def build_handler(settings: ServeSettings, cache_dir: Path | None = None) -> Handler:
    """The handler ``batchlane serve`` runs for ``settings`` (not loaded yet): the model folder (a ``model.tar.gz``
    extracted under ``cache_dir``, default ``<BATCHLANE_HOME>/models-extracted``, within the archive cap), the user's
    hooks over the default classifier. Start-up errors raise ``BatchlaneError``."""
    cache = cache_dir or settings_mod.home_dir(settings.extra_env or None) / "models-extracted"
    archive_cap = (
        {} if settings.max_model_archive_mb is None else {"max_bytes": settings.max_model_archive_mb * MB}
    )
    model_dir = resolve_model_dir(Path(settings.model_dir), cache, **archive_cap)
    defaults = ClassifierHandler(settings)
    return Handler(resolve_hooks(settings, model_dir, defaults), settings, model_dir, defaults)


def create_app(
    settings: ServeSettings,
    *,
    on_load_failure: Callable[[BaseException], None] | None = None,
    cache_dir: Path | None = None,
) -> FastAPI:
    """Build the container app for ``settings``; start-up errors raise ``BatchlaneError`` here.

    ``on_load_failure`` is called (from the loader thread) when ``model_fn`` fails; the server runner uses it to
    stop the process. ``cache_dir`` is where a ``model.tar.gz`` is extracted (default
    ``<BATCHLANE_HOME>/models-extracted``). ``app.state`` holds ``settings``, ``handler``, ``loader`` and
    ``execution_parameters`` and ``capture`` (the ``CaptureWriter``, or None when capture is off).
    """
    parameters = execution_parameters(settings)
    handler = build_handler(settings, cache_dir)
    loader = ModelLoader(handler, on_load_failure)
    capture_config = CaptureConfig.from_settings(settings, default_name=_model_name(Path(settings.model_dir)))
    capture = (
        CaptureWriter(capture_config, env=settings.extra_env or None) if capture_config is not None else None
    )
    limit = settings.max_payload_mb * MB
    response_limit = (settings.max_response_mb or 0) * MB
    concurrency = request_concurrency(settings, parameters["MaxConcurrentTransforms"])
    in_flight = _LoopSemaphore(concurrency)
    # With dynamic batching, many requests wait in threads for their shared batch: more than asyncio's default pool.
    executor = (
        ThreadPoolExecutor(concurrency, thread_name_prefix="batchlane-invoke")
        if concurrency > parameters["MaxConcurrentTransforms"]
        else None
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        loader.start()
        try:
            yield
        finally:
            if capture is not None:
                await asyncio.to_thread(capture.close)  # flush what is queued before the process exits

    app = FastAPI(
        title="batchlane inference container",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.handler = handler
    app.state.loader = loader
    app.state.execution_parameters = parameters
    app.state.capture = capture

    @app.api_route("/ping", methods=["GET", "HEAD"])
    async def ping() -> Response:
        loader.start()
        if loader.ready:
            return Response(status_code=200)
        return error_response(loader.not_ready_error(), log=False)

    @app.get("/execution-parameters")
    async def get_execution_parameters() -> JSONResponse:
        return JSONResponse(parameters)

    @app.get("/metrics")
    async def get_metrics() -> Response:
        return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE)

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        started = time.monotonic()
        response = await _invoke(request)
        metrics.observe_request(
            response.status_code, request.headers.get("content-type"), time.monotonic() - started
        )
        return response

    async def _invoke(request: Request) -> Response:
        loader.start()
        try:
            check_declared_size(request, limit)  # a client error whatever the model's state
            if not loader.ready:
                raise loader.not_ready_error()
            body = await read_body(request, limit)
            headers = request.headers
            waiting = time.monotonic()
            async with in_flight.get():
                metrics.SERVE_QUEUE_WAIT_SECONDS.labels(queue="admission").observe(time.monotonic() - waiting)
                # Model work runs in a thread so /ping keeps answering within SageMaker's 2 s.
                call = functools.partial(
                    handler.invoke, body, headers.get("content-type"), headers.get("accept"), headers
                )
                if executor is not None:
                    result = await asyncio.get_running_loop().run_in_executor(executor, call)
                else:
                    result = await asyncio.to_thread(call)
            if response_limit and len(result.body) > response_limit:
                raise PayloadTooLarge(
                    f"response of {len(result.body)} bytes exceeds {settings_mod.BATCHLANE_MAX_RESPONSE_MB}="
                    f"{settings.max_response_mb}; send smaller mini-batches or raise the limit"
                )
            if capture is not None and result.status < 400:
                _capture(capture, body, headers, result)
            return Response(
                result.body, status_code=result.status, media_type=result.content_type, headers=result.headers
            )
        except Exception as exc:
            return error_response(exc)

    logger.info(
        "serving %s (user module: %s); execution parameters %s",
        handler.model_dir,
        handler.hooks.module_file or "none, default handler",
        parameters,
    )
    return app
