"""Invoking a model: the ``Invoker`` Protocol, what an invocation returns or raises, SageMaker's retry policy, and
the HTTP invoker that calls a model container's ``POST /invocations``.

Failures are classified (docs/transform.md): a client error (4xx), a server error (5xx), a timeout, or a connection
failure. Messages follow the platform's log wording (``ClientError: 400``, ``Bad HTTP status received from
algorithm: 500``, ``Unable to get response from algorithm``) followed by the container's own short message.
Only what can succeed on retry is retried (``RetryPolicy``: timeouts, connection failures, 5xx, 408 and 429;
docs/transform.md, "Timeouts and retries").

Two invokers implement the Protocol: ``HttpInvoker`` (a model server on a URL: ``batchlane serve``, a model's own
serve command or ``serve_url``) and ``in_process.InProcessInvoker`` (the same handler contract run in this process,
no server). Both classify failures and retry the same way, so a job's outputs and errors do not depend on which one
ran it (docs/transform.md, "Where a file runs").
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from batchlane.errors import InvocationError

if TYPE_CHECKING:
    from batchlane.transform.params import EffectiveParams

CHUNK = 1 << 20
PING_TIMEOUT_S = 2.0  # per-ping timeout of the SageMaker platform (docs/transform.md)

InvokerKind = Literal["http", "in_process"]
"""How a job's runner reaches its model: ``"http"`` starts (or uses) a model server and POSTs to it; ``"in_process"``
loads the model's handler into the runner's own process (``in_process.InProcessModel``)."""

# Sent with JobOptions.source_headers (docs/transform.md); user code reads them with
# ``context.get_request_header(0, SOURCE_KEY_HEADER)``.
SOURCE_KEY_HEADER = "X-Batchlane-Source-Key"
RECORD_INDEX_HEADER = "X-Batchlane-Record-Index"
RECORD_COUNT_HEADER = "X-Batchlane-Record-Count"
SOURCE_HEADERS = (SOURCE_KEY_HEADER, RECORD_INDEX_HEADER, RECORD_COUNT_HEADER)


def source_headers(input_key: str, first_index: int, count: int) -> dict[str, str]:
    """The headers naming a payload's input object (percent-encoded UTF-8, ``/`` kept, since header values are
    ASCII), the 0-based index of its first record in that object, and how many records it carries."""
    return {
        SOURCE_KEY_HEADER: urllib.parse.quote(input_key, safe="/"),
        RECORD_INDEX_HEADER: str(first_index),
        RECORD_COUNT_HEADER: str(count),
    }


RETRYABLE_STATUSES = frozenset({408, 429})


@dataclass(frozen=True)
class RetryPolicy:
    """Which failed invocations are retried, and how long to wait before each retry (docs/transform.md decision).

    Retried: connection failures, timeouts, any 5xx, 408 and 429: each can succeed when sent again. Not retried:
    other 4xx (the same payload fails the same way) and anything that is not an HTTP/transport failure (bad
    response shape, count mismatch). ``kind`` uses ``InvocationFailed``'s names: ``"timeout"``, ``"connection"``,
    ``"server"`` (5xx), ``"client"`` (4xx).

    Delays: retry ``i`` (0-based) waits ``min(max_delay, base_delay * 2**i)`` scaled by a jitter factor in
    [0.5, 1.0] drawn from ``random.Random(seed)``, so a given seed always gives the same delays (tests, resumes)
    while different seeds (e.g. per file) spread concurrent retries.
    """

    max_retries: int = 3
    base_delay: float = 0.2
    max_delay: float = 5.0
    seed: int | str = 0

    def delays(self) -> list[float]:
        """``max_retries`` delays in seconds, one before each retry (pass to ``HttpInvoker(retry_delays=...)``)."""
        rng = random.Random(self.seed)
        return [
            min(self.max_delay, self.base_delay * 2**attempt) * (0.5 + 0.5 * rng.random())
            for attempt in range(self.max_retries)
        ]

    @staticmethod
    def is_retryable(status: int | None, kind: str) -> bool:
        """Whether a failure with this HTTP ``status`` (None if there was no response) and ``kind`` is retried."""
        if kind in ("timeout", "connection"):
            return True
        if status is None:
            return kind == "server"
        return 500 <= status <= 599 or status in RETRYABLE_STATUSES


@dataclass(frozen=True)
class InvocationResult:
    """A successful answer: body bytes, the Content-Type the model declared, and how it went."""

    body: bytes
    content_type: str | None
    status: int
    attempts: int
    seconds: float


class InvocationFailed(InvocationError):
    """The model did not answer 2xx after all attempts. ``kind`` is client, server, timeout or connection."""

    def __init__(self, message: str, *, kind: str, status: int | None = None, attempts: int = 1) -> None:
        super().__init__(message)
        self.kind = kind
        self.http_status = status
        self.attempts = attempts

    @property
    def retryable(self) -> bool:
        return RetryPolicy.is_retryable(self.http_status, self.kind)


def clip(text: str, limit: int = 300) -> str:
    """``text`` on one line (whitespace runs become one space), cut to ``limit`` characters."""
    text = " ".join(text.split())
    return text[:limit] + ("…" if len(text) > limit else "")


def excerpt(body: bytes) -> str:
    """The container's short message: the ``message`` of a JSON error body, else the first bytes as text."""
    text = body[:4096].decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
        if isinstance(data, dict) and isinstance(data.get("message"), str):
            text = data["message"]
    except ValueError:
        pass
    return clip(text)


def status_failure(status: int, detail: str) -> InvocationFailed:
    """The failure for a non-2xx answer ``status`` whose short message is ``detail``: client for 4xx, else server."""
    if 400 <= status < 500:
        return InvocationFailed(f"ClientError: {status}: {detail}", kind="client", status=status)
    return InvocationFailed(
        f"Bad HTTP status received from algorithm: {status}: {detail}", kind="server", status=status
    )


def timeout_failure(timeout_s: float) -> InvocationFailed:
    return InvocationFailed(
        f"Unable to get response from algorithm: no response within {timeout_s:g} s (InvocationsTimeoutInSeconds)",
        kind="timeout",
    )


async def with_retries(
    once: Callable[[int], Awaitable[InvocationResult]], *, max_retries: int, delays: Sequence[float]
) -> InvocationResult:
    """``once(attempt)`` (1-based) until it answers; a retryable ``InvocationFailed`` is tried again up to
    ``max_retries`` times, waiting ``delays[i]`` before retry ``i`` (the last delay repeats); others raise at once.
    The final failure carries its attempt count, and says it after more than one."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await once(attempt)
        except InvocationFailed as failure:
            failure.attempts = attempt
            if not failure.retryable or attempt > max_retries:
                if attempt > 1:
                    failure.message = f"{failure.message} (after {attempt} attempts)"
                    failure.args = (failure.message,)
                raise
            await asyncio.sleep(delays[min(attempt - 1, len(delays) - 1)] if delays else 0)


class Invoker(Protocol):
    """Sends mini-batches to one model replica. Safe to share between concurrent tasks of one event loop."""

    async def invoke(
        self,
        body: bytes,
        *,
        content_type: str | None,
        accept: str | None,
        headers: Mapping[str, str] | None = None,
    ) -> InvocationResult:
        """One mini-batch, retried under ``RetryPolicy``; ``InvocationFailed`` when it cannot be answered."""
        ...

    async def ping(self) -> bool:
        """Whether the model is loaded and answers (``GET /ping`` is 200)."""
        ...

    async def execution_parameters(self) -> dict[str, Any] | None:
        """The model's ``/execution-parameters`` answer, or None when it has none."""
        ...

    async def aclose(self) -> None:
        """Release connections; the invoker is not used afterwards."""
        ...


class ModelServer(Protocol):
    """Where a job's model runs, started for the job and stopped after it (a context manager): a model container
    (``container.ModelContainer``) or the model loaded in this process (``in_process.InProcessModel``)."""

    def __enter__(self) -> ModelServer: ...

    def __exit__(self, *exc: object) -> None: ...

    def execution_parameters(self) -> dict[str, Any] | None:
        """The model's ``/execution-parameters`` answer, or None when it has none."""
        ...

    def invoker(self, params: EffectiveParams) -> Invoker:
        """A new invoker with the job's timeout, retries and concurrency (after a restart: for the new server)."""
        ...


class HttpInvoker:
    """An ``Invoker`` for the model server at ``base_url`` (``POST /invocations``, ``GET /ping``,
    ``GET /execution-parameters``)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 600.0,
        max_retries: int = 3,
        max_in_flight: int = 1,
        retry_delays: Sequence[float] | None = None,
        chunked: bool = False,
    ) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/invocations"
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.retry_delays = (
            list(retry_delays) if retry_delays is not None else RetryPolicy(max_retries=max_retries).delays()
        )
        self.chunked = chunked  # MaxPayloadInMB=0: stream the body with chunked transfer encoding
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
            limits=httpx.Limits(
                max_connections=max(1, max_in_flight), max_keepalive_connections=max(1, max_in_flight)
            ),
            headers={"User-Agent": "batchlane-transform"},
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> HttpInvoker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def invoke(
        self,
        body: bytes,
        *,
        content_type: str | None,
        accept: str | None,
        headers: Mapping[str, str] | None = None,
    ) -> InvocationResult:
        """POST ``body``; retry retryable failures up to ``max_retries`` times; raise InvocationFailed otherwise."""
        send_headers = {k: v for k, v in (headers or {}).items()}
        if content_type:
            send_headers["Content-Type"] = content_type
        if accept:
            send_headers["Accept"] = accept
        started = time.monotonic()
        return await with_retries(
            lambda attempt: self._once(body, send_headers, attempt, started),
            max_retries=self.max_retries,
            delays=self.retry_delays,
        )

    async def ping(self) -> bool:
        import httpx

        try:
            answer = await self._client.get(f"{self.base_url}/ping", timeout=PING_TIMEOUT_S)
        except httpx.HTTPError:
            return False
        return answer.status_code == 200

    async def execution_parameters(self) -> dict[str, Any] | None:
        """The server's ``GET /execution-parameters`` answer, or None when it has none (any non-200)."""
        import httpx

        try:
            answer = await self._client.get(
                f"{self.base_url}/execution-parameters", timeout=PING_TIMEOUT_S * 5
            )
            data = answer.json() if answer.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    async def _once(
        self, body: bytes, headers: dict[str, str], attempt: int, started: float
    ) -> InvocationResult:
        import httpx

        content: bytes | AsyncIterator[bytes] = body
        if self.chunked:

            async def stream() -> AsyncIterator[bytes]:
                for start in range(0, len(body), CHUNK):
                    yield body[start : start + CHUNK]

            content = stream()
        try:
            answer = await self._client.post(self.url, content=content, headers=headers)
        except httpx.TimeoutException:
            raise timeout_failure(self.timeout_s) from None
        except httpx.HTTPError as exc:
            raise InvocationFailed(
                f"Unable to get response from algorithm: {type(exc).__name__}: {exc}", kind="connection"
            ) from None
        status = answer.status_code
        if 200 <= status < 300:
            return InvocationResult(
                body=answer.content,
                content_type=answer.headers.get("content-type"),
                status=status,
                attempts=attempt,
                seconds=time.monotonic() - started,
            )
        raise status_failure(status, excerpt(answer.content))


def http_invoker(url: str, params: EffectiveParams) -> HttpInvoker:
    """An ``HttpInvoker`` for the server at ``url`` with the job's timeout, retries and concurrency (MaxPayloadInMB=0
    streams bodies with chunked transfer encoding)."""
    return HttpInvoker(
        url,
        timeout_s=params.invocations_timeout_s,
        max_retries=params.invocations_max_retries,
        max_in_flight=params.max_concurrent_transforms,
        chunked=params.max_payload_bytes is None,
    )
