"""A recording HTTP proxy in front of moto's server, for tests of what batchlane sends to AWS.

Every request is forwarded to moto unchanged and its answer returned unchanged, except for the AWS JSON-protocol
actions a test scripts: ``answer[action]`` (an HTTP status and a JSON body, e.g. an AWS error, or an action moto
lacks such as StopTransformJob) or ``rewrite[action]`` (a function applied to moto's JSON answer, e.g. to make a
job Failed, which moto's jobs never are). ``calls`` records each JSON-protocol call as ``(action, body)``, where the
action is the ``X-Amz-Target``'s last part (``CreateTransformJob``); ``requests`` records every request as
``(method, path)`` (S3 uploads are ``PUT /bucket/key``).
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class AwsProxy:
    """A recording proxy on a free 127.0.0.1 port in front of ``upstream`` (moto's URL); ``url`` is its endpoint."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.requests: list[tuple[str, str]] = []
        self.answer: dict[str, tuple[int, dict[str, Any]]] = {}
        self.rewrite: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                target = self.headers.get("X-Amz-Target", "")
                action = target.rsplit(".", 1)[-1] if target else ""
                with proxy._lock:
                    proxy.requests.append((self.command, self.path))
                    if action:
                        proxy.calls.append((action, json.loads(body or b"{}")))
                if action in proxy.answer:
                    status, payload = proxy.answer[action]
                    self._reply(
                        status, {"Content-Type": "application/x-amz-json-1.1"}, json.dumps(payload).encode()
                    )
                    return
                connection = http.client.HTTPConnection(
                    proxy.upstream.hostname, proxy.upstream.port, timeout=60
                )
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
                headers["Content-Length"] = str(len(body))
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                if action in proxy.rewrite and response.status == 200:
                    data = json.dumps(proxy.rewrite[action](json.loads(data))).encode()
                out_headers = {k: v for k, v in response.getheaders() if k.lower() not in _HOP_HEADERS}
                self._reply(response.status, out_headers, data, head=self.command == "HEAD", length=response)
                connection.close()

            def _reply(
                self,
                status: int,
                headers: dict[str, str],
                data: bytes,
                *,
                head: bool = False,
                length: Any = None,
            ) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                # A HEAD answer keeps the object's length; any other carries its own body's.
                upstream_length = (
                    length.getheader("Content-Length") if (head and length is not None) else None
                )
                self.send_header("Content-Length", upstream_length or str(len(data)))
                self.end_headers()
                if not head:
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="aws-proxy", daemon=True)

    def __enter__(self) -> AwsProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def bodies(self, action: str) -> list[dict[str, Any]]:
        """The bodies of every recorded ``action`` call, in order."""
        with self._lock:
            return [body for name, body in self.calls if name == action]

    def uploads(self) -> list[str]:
        """The paths of every S3 PUT (``/bucket/key``), in order."""
        with self._lock:
            return [path.split("?", 1)[0] for method, path in self.requests if method == "PUT"]

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()
            self.requests.clear()
