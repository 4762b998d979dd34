"""Calling a model container's ``POST /invocations`` with SageMaker's per-request timeout and retries.

Failures are classified (docs/transform.md): a client error (4xx), a server error (5xx), a timeout, or a connection
failure. Messages follow the platform's log wording (``ClientError: 400``, ``Bad HTTP status received from
algorithm: 500``, ``Unable to get response from algorithm``) followed by the container's own short message.
Only what can succeed on retry is retried (``plan.RetryPolicy``: timeouts, connection failures, 5xx, 408 and 429;
docs/transform.md decision, see docs/transform.md).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

from batchlane.errors import InvocationError
from batchlane.transform.plan import RetryPolicy

CHUNK = 1 << 20

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


@dataclass(frozen=True)
class InvocationResult:
    """A successful answer: body bytes, the Content-Type the container declared, and how it went."""

    body: bytes
    content_type: str | None
    status: int
    attempts: int
    seconds: float


class InvocationFailed(InvocationError):
    """The container did not answer 2xx after all attempts. ``kind`` is client, server, timeout or connection."""

    def __init__(self, message: str, *, kind: str, status: int | None = None, attempts: int = 1) -> None:
        super().__init__(message)
        self.kind = kind
        self.http_status = status
        self.attempts = attempts

    @property
    def retryable(self) -> bool:
        return RetryPolicy.is_retryable(self.http_status, self.kind)


def _excerpt(body: bytes, limit: int = 300) -> str:
    """The container's short message: the ``message`` of a JSON error body, else the first bytes as text."""
    text = body[:4096].decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
        if isinstance(data, dict) and isinstance(data.get("message"), str):
            text = data["message"]
    except ValueError:
        pass
    text = " ".join(text.split())
    return text[:limit] + ("…" if len(text) > limit else "")


class Invoker:
    """Sends payloads to one container. Safe to share between concurrent tasks of one event loop."""

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

        self.url = base_url.rstrip("/") + "/invocations"
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

    async def __aenter__(self) -> Invoker:
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
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._once(body, send_headers, attempt, started)
            except InvocationFailed as failure:
                failure.attempts = attempt
                if not failure.retryable or attempt > self.max_retries:
                    if attempt > 1:
                        failure.message = f"{failure.message} (after {attempt} attempts)"
                        failure.args = (failure.message,)
                    raise
                delay = (
                    self.retry_delays[min(attempt - 1, len(self.retry_delays) - 1)]
                    if self.retry_delays
                    else 0
                )
                await asyncio.sleep(delay)

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
            raise InvocationFailed(
                "Unable to get response from algorithm: no response within "
                f"{self.timeout_s:g} s (InvocationsTimeoutInSeconds)",
                kind="timeout",
            ) from None
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
        detail = _excerpt(answer.content)
        if 400 <= status < 500:
            raise InvocationFailed(f"ClientError: {status}: {detail}", kind="client", status=status)
        raise InvocationFailed(
            f"Bad HTTP status received from algorithm: {status}: {detail}", kind="server", status=status
        )
