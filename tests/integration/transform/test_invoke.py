"""The /invocations client against a real uvicorn server whose answers we script per test."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from batchlane.testing import free_port, wait_for_http
from batchlane.transform.invoke import HttpInvoker, InvocationFailed

SCRIPT: dict[str, list] = {}
SEEN: list[dict] = []


async def invocations(request: Request) -> Response:
    body = await request.body()
    SEEN.append(
        {
            "body": body,
            "content_type": request.headers.get("content-type"),
            "accept": request.headers.get("accept"),
            "chunked": request.headers.get("transfer-encoding") == "chunked",
        }
    )
    step = SCRIPT["steps"].pop(0) if SCRIPT["steps"] else ("ok",)
    kind = step[0]
    if kind == "sleep":
        await asyncio.sleep(step[1])
        return Response(body, media_type="text/plain")
    if kind == "status":
        return JSONResponse(
            {"code": step[1], "type": "X", "message": f"scripted {step[1]}"}, status_code=step[1]
        )
    return Response(body.upper(), media_type="application/jsonlines")


async def ping(request: Request) -> Response:
    return Response(b"")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    port = free_port()
    app = Starlette(routes=[Route("/invocations", invocations, methods=["POST"]), Route("/ping", ping)])
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    wait_for_http(f"http://127.0.0.1:{port}/ping")
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(5)


def run(server: str, steps: list, body: bytes = b"abc", **kwargs):
    SCRIPT["steps"] = list(steps)
    SEEN.clear()

    async def go():
        async with HttpInvoker(server, retry_delays=[0.01] * 3, **kwargs) as invoker:
            return await invoker.invoke(body, content_type="text/csv", accept="application/jsonlines")

    return asyncio.run(go())


def test_success_passes_headers_and_body(server: str) -> None:
    result = run(server, [("ok",)])
    assert result.body == b"ABC" and result.status == 200 and result.attempts == 1
    assert result.content_type.startswith("application/jsonlines")
    assert SEEN[0]["content_type"] == "text/csv" and SEEN[0]["accept"] == "application/jsonlines"


def test_server_error_is_retried_then_succeeds(server: str) -> None:
    result = run(server, [("status", 500), ("status", 503), ("ok",)], max_retries=3)
    assert result.attempts == 3 and result.body == b"ABC"
    assert len(SEEN) == 3


def test_server_error_gives_up_after_max_retries(server: str) -> None:
    with pytest.raises(InvocationFailed) as info:
        run(server, [("status", 500)] * 5, max_retries=2)
    assert info.value.kind == "server" and info.value.attempts == 3
    assert "Bad HTTP status received from algorithm: 500: scripted 500" in str(info.value)
    assert "after 3 attempts" in str(info.value)
    assert len(SEEN) == 3


def test_client_error_is_not_retried(server: str) -> None:
    with pytest.raises(InvocationFailed) as info:
        run(server, [("status", 400), ("ok",)], max_retries=3)
    assert info.value.kind == "client" and info.value.http_status == 400
    assert str(info.value) == "ClientError: 400: scripted 400"
    assert len(SEEN) == 1


def test_throttling_is_retried(server: str) -> None:
    result = run(server, [("status", 429), ("ok",)], max_retries=1)
    assert result.attempts == 2


@pytest.mark.slow
def test_timeout_is_classified_and_retried(server: str) -> None:
    started = time.monotonic()
    with pytest.raises(InvocationFailed) as info:
        run(server, [("sleep", 2.0), ("sleep", 2.0)], timeout_s=0.3, max_retries=1)
    assert info.value.kind == "timeout"
    assert "Unable to get response from algorithm" in str(info.value)
    assert "InvocationsTimeoutInSeconds" in str(info.value)
    assert time.monotonic() - started < 1.9  # gave up on the timeout, did not wait for the slow answers


def test_connection_failure_is_classified() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(InvocationFailed) as info:
        run(dead, [], max_retries=1)
    assert info.value.kind == "connection" and info.value.attempts == 2


@pytest.mark.slow
def test_unlimited_payload_is_streamed_chunked(server: str) -> None:
    body = b"x" * (3 * (1 << 20) + 5)
    result = run(server, [("ok",)], body=body, chunked=True)
    assert SEEN[0]["chunked"] is True
    assert result.body == body.upper()
