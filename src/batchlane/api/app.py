"""``create_app(config)``: the control-plane ASGI app (FastAPI) that ``batchlane control-plane`` runs under uvicorn.

One endpoint, ``POST /`` (and ``POST /<account>/<queue>`` for query-protocol SQS clients that post to the queue
URL), routed by what AWS SDKs send:

* ``X-Amz-Target: SageMaker.<Action>`` → ``sagemaker.SageMakerApi`` (AWS JSON 1.1);
* ``X-Amz-Target: AmazonSQS.<Action>`` → ``sqs.SqsApi`` (AWS JSON 1.0);
* ``X-Amz-Target: Logs_20140328.<Action>`` → ``logs.LogsApi`` (AWS JSON 1.1; CloudWatch Logs over the job logs);
* a form-encoded body (or query string) with ``Action=…`` → ``sqs.SqsApi`` (SQS query protocol, XML answers).

Every request goes through, in order: the ``Host`` check (DNS rebinding) and a refusal of browser ``Origin``s, the
body cap (``Content-Length`` first, then while reading), SigV4 verification for the routed service (``auth.py``),
the key's ``allow`` patterns, then the action in a worker thread (SQLite and long polling block). Each call is
logged on ``batchlane.api.audit`` with key, action, status and duration. ``GET /ping`` answers 200 without
authentication for health checks, and ``GET /metrics`` Prometheus metrics (docs/metrics.md).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from batchlane import metrics
from batchlane.api import logs, sagemaker, sqs, sqs_query
from batchlane.api.auth import AccessKey, SignedRequest, SigV4Verifier
from batchlane.api.config import ServerConfig
from batchlane.api.executor import JobExecutor
from batchlane.api.monitoring import MonitoringApi
from batchlane.api.paths import LocalPathPolicy
from batchlane.api.protocol import (
    AwsError,
    Protocol,
    decode_json_body,
    json_response,
    new_request_id,
    render_error,
    xml_response,
)
from batchlane.jobs.store import JobStore
from batchlane.monitor.scheduler import start_scheduler
from batchlane.monitor.schedules import ScheduleStore
from batchlane.request_body import read_capped_body

log = logging.getLogger(__name__)
audit = logging.getLogger("batchlane.api.audit")

FORM_TYPE = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class _Route:
    """Where a request goes, known from its headers (and, for the query protocol, its form fields)."""

    service: str  # "sagemaker", "sqs" or "logs": also the SigV4 credential scope's service
    protocol: Protocol
    action: str


class _Unroutable(Exception):
    """A request that cannot be routed, with the protocol to answer it in."""

    def __init__(self, error: AwsError, protocol: Protocol) -> None:
        super().__init__(error.message)
        self.error = error
        self.protocol = protocol


def _route(request: Request, body: bytes) -> tuple[_Route, list[tuple[str, str]] | None]:
    """The route, plus the form fields of a query-protocol request (parameters are parsed after auth)."""
    target = request.headers.get("x-amz-target", "")
    if target:
        prefix, _, action = target.partition(".")
        if prefix == sagemaker.TARGET_PREFIX:
            return _Route(sagemaker.SERVICE, Protocol.JSON_1_1, action), None
        if prefix == sqs.TARGET_PREFIX:
            return _Route(sqs.SERVICE, Protocol.JSON_1_0, action), None
        if prefix == logs.TARGET_PREFIX:
            return _Route(logs.SERVICE, Protocol.JSON_1_1, action), None
        protocol = (
            Protocol.JSON_1_0 if "1.0" in request.headers.get("content-type", "") else Protocol.JSON_1_1
        )
        raise _Unroutable(
            AwsError(
                "UnknownOperationException",
                f"unknown target {target!r}: this server speaks SageMaker, SQS and CloudWatch Logs",
            ),
            protocol,
        )
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    pairs = parse_qsl(request.url.query, keep_blank_values=True)
    if content_type == FORM_TYPE:
        try:
            pairs += parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise _Unroutable(
                AwsError("MalformedQueryString", "the form body is not UTF-8"), Protocol.QUERY
            ) from None
    actions = [value for key, value in pairs if key == "Action"]
    if actions:
        return _Route(sqs.SERVICE, Protocol.QUERY, actions[-1]), pairs
    raise _Unroutable(
        AwsError(
            "MissingAction",
            "no X-Amz-Target header and no Action parameter: point an AWS SDK (SageMaker, SQS or CloudWatch Logs) at this endpoint",
        ),
        Protocol.JSON_1_1,
    )


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and not length.isdigit():
        raise AwsError("InvalidRequest", "Content-Length is not a number")
    return await read_capped_body(
        request,
        limit,
        lambda _size: AwsError(
            "RequestEntityTooLarge",
            f"the request body is larger than this server's limit of {limit} bytes",
            status=413,
        ),
    )


def _signed_request(request: Request, body: bytes) -> SignedRequest:
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    return SignedRequest(
        method=request.method,
        scheme=request.url.scheme,
        raw_path=raw_path.decode("latin-1"),
        query_string=request.scope.get("query_string", b"").decode("latin-1"),
        headers=[(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in request.scope["headers"]],
        body=body,
    )


def _require_botocore() -> None:
    try:
        import botocore.auth  # noqa: F401
    except ImportError:
        from batchlane.errors import ValidationError

        raise ValidationError(
            "batchlane control-plane verifies SigV4 signatures with botocore, which is not installed: "
            "pip install 'batchlane[aws]'",
            field="--access-key",
        ) from None


class ControlPlane:
    """The parts one app instance uses: store, executor, APIs, verifier; built by ``create_app``."""

    def __init__(self, config: ServerConfig, store: JobStore | None = None) -> None:
        from batchlane.queue import open_queue
        from batchlane.queue.sqlite import SqliteQueue

        self.config = config
        self.env = dict(os.environ if config.env is None else config.env)
        if config.auth:
            _require_botocore()
        self.store = store or JobStore(config.db, region=config.region, account=config.account)
        self.executor = JobExecutor(self.store, workers=config.workers, lease_s=config.lease_s)
        self.sagemaker = sagemaker.SageMakerApi(
            self.store, on_job_ready=self.executor.submit, paths=LocalPathPolicy(config.allowed_paths)
        )
        queue = open_queue(config.queue, self.env)
        if not isinstance(queue, SqliteQueue):
            queue.close()
            from batchlane.errors import ValidationError

            raise ValidationError(
                f"batchlane control-plane serves the SQS API over its embedded queue; --queue {config.queue!r} is not one "
                "(give a name or sqlite:///path.db?queue=NAME; run `batchlane worker` for an SQS queue)",
                field="--queue",
            )
        self.queue = queue  # created (with its dead-letter queue) if missing, so the seed's sender finds it
        self.sqs = sqs.SqsApi(queue.path, region=self.store.region, account=self.store.account)
        self.logs = logs.LogsApi(self.store)
        self.monitoring = MonitoringApi(ScheduleStore.beside(self.store), self.env, self.sagemaker.paths)
        self.scheduler: Any = None
        self.verifier = SigV4Verifier(config.keys, self.store.region) if config.auth else None
        self.queue_worker: Any = None

    def start(self) -> None:
        self.executor.start()
        self.scheduler = start_scheduler(self.store, env=self.env)
        if self.config.queue_worker:
            self._start_queue_worker()

    def _start_queue_worker(self) -> None:
        import threading

        try:
            from batchlane.queue.worker import Worker
        except ImportError:  # the worker ships with the queue package; a trimmed install may lack it
            log.warning("the queue worker is not available; SQS messages are stored but not consumed")
            return
        from batchlane.queue.launcher import RequestDefaults

        # Recovery of orphaned jobs is the executor's job; the worker runs the jobs its messages start.
        self.queue_worker = Worker(
            self.queue,
            self.store,
            model=self.config.worker_model,
            defaults=RequestDefaults.from_env(self.env),
            run_jobs=True,
            requeue_failed=self.config.requeue_failed,
            recover=False,
            job_lease_s=self.config.lease_s,
            env=self.env,
        )
        thread = threading.Thread(target=self._run_queue_worker, name="batchlane-queue-worker", daemon=True)
        thread.start()

    def _run_queue_worker(self) -> None:
        try:
            self.queue_worker.work()
        except Exception:
            log.exception("the queue worker stopped with an error")

    def stop(self) -> None:
        if self.queue_worker is not None:
            self.queue_worker.stop(abandon=True)
        if self.scheduler is not None:
            self.scheduler.stop()
        self.monitoring.store.close()
        self.executor.stop()
        self.sqs.close()

    def authenticate(self, request: SignedRequest, route: _Route) -> AccessKey | None:
        if self.verifier is None:
            return None
        key = self.verifier.verify(request, route.service)
        if not key.may(route.service, route.action):
            raise AwsError(
                "AccessDeniedException",
                f"User: {key.access_key_id} is not authorized to perform: {route.service}:{route.action}",
                status=403,
            )
        return key

    def call(self, route: _Route, params: dict[str, Any], endpoint: str) -> dict[str, Any]:
        if route.service == sagemaker.SERVICE and route.action in self.monitoring.actions:
            return self.monitoring.handle(route.action, params)
        if route.service == sagemaker.SERVICE:
            return self.sagemaker.handle(route.action, params)
        if route.service == logs.SERVICE:
            return self.logs.handle(route.action, params)
        return self.sqs.handle(route.action, params, endpoint)


def create_app(config: ServerConfig, *, store: JobStore | None = None) -> FastAPI:
    """The control-plane app. Its lifespan starts the job executor (which resumes orphaned jobs) and, unless
    ``config.queue_worker`` is off, the queue worker; ``app.state.plane`` holds the ``ControlPlane``."""
    plane = ControlPlane(config, store)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        plane.start()
        metrics.watch(plane.store.path, [plane.queue])
        try:
            yield
        finally:
            metrics.unwatch(plane.store.path, [plane.queue])
            await run_in_threadpool(plane.stop)

    app = FastAPI(
        title="batchlane control plane", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.plane = plane

    def guard(request: Request) -> AwsError | None:
        if not config.host_allowed(request.headers.get("host")):
            return AwsError(
                "AccessDeniedException",
                f"Host {request.headers.get('host')!r} is not a name of this server (add it with --allowed-host)",
                status=403,
            )
        if request.headers.get("origin"):
            return AwsError(
                "AccessDeniedException", "cross-origin (browser) requests are not accepted", status=403
            )
        return None

    @app.get("/ping", include_in_schema=False)
    async def ping(request: Request) -> Response:
        refused = guard(request)
        if refused is not None:
            return render_error(refused, Protocol.JSON_1_1, new_request_id())
        return JSONResponse({"status": "ok"})

    @app.get("/metrics", include_in_schema=False)
    async def get_metrics(request: Request) -> Response:
        # Unauthenticated like /ping (Prometheus does not sign requests); the Host check still applies.
        refused = guard(request)
        if refused is not None:
            return render_error(refused, Protocol.JSON_1_1, new_request_id())
        return Response(await run_in_threadpool(metrics.exposition), media_type=metrics.CONTENT_TYPE)

    @app.api_route("/{path:path}", methods=["GET", "POST"], include_in_schema=False)
    async def aws(request: Request, path: str) -> Response:
        started = time.monotonic()
        request_id = new_request_id()
        protocol = Protocol.JSON_1_1
        route: _Route | None = None
        key: AccessKey | None = None
        try:
            refused = guard(request)
            if refused is not None:
                raise refused
            body = await _read_body(request, config.max_body_bytes)
            route, form = _route(request, body)
            protocol = route.protocol
            key = plane.authenticate(_signed_request(request, body), route)
            params = sqs_query.params_from_query(form)[1] if form is not None else decode_json_body(body)
            endpoint = f"{request.url.scheme}://{request.headers['host']}"
            if route.protocol is Protocol.QUERY and "QueueUrl" not in params and path.count("/") == 1:
                params["QueueUrl"] = f"{endpoint}/{path}"  # old SDKs post to the queue URL itself
            result = await run_in_threadpool(plane.call, route, params, endpoint)
            if protocol is Protocol.QUERY:
                response = xml_response(sqs_query.result_xml(route.action, result), request_id)
            else:
                response = json_response(result, protocol, request_id)
        except _Unroutable as exc:
            protocol = exc.protocol
            response = render_error(exc.error, protocol, request_id)
        except Exception as exc:
            if not isinstance(exc, AwsError):
                # A bug of ours: still AWS's error shape (never a plain-text 500), the traceback in the log.
                log.exception("unexpected error serving request %s", request_id)
                exc = AwsError(
                    "InternalFailure",
                    "An internal error occurred; see the server log",
                    status=500,
                    sender=False,
                )
            if route is not None and route.service == sqs.SERVICE and not exc.type_prefix:
                exc = sqs.sqs_error(exc.code, exc.message, status=exc.status, sender=exc.sender)
            response = render_error(exc, protocol, request_id)
        audit.info(
            "%s %s key=%s status=%d %.0fms id=%s",
            route.service if route else "-",
            route.action if route else "-",
            key.access_key_id if key else ("-" if plane.verifier else "no-auth"),
            response.status_code,
            (time.monotonic() - started) * 1000,
            request_id,
        )
        return response

    return app
