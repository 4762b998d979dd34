"""Serving the control plane under uvicorn: ``run_server`` (what ``batchlane control-plane`` does) and
``background_server`` (the same on a thread, for embedding and tests)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from batchlane.api.config import ServerConfig

log = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_S = 10
# Long polling holds a ReceiveMessage up to 20 s; keep idle connections open well beyond that.
KEEP_ALIVE_S = 75


def _bind(config: ServerConfig) -> tuple[socket.socket, str]:
    """A socket bound to the configured address (port 0: a free one) and the base URL it serves."""
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((config.host, config.port))
    except OSError as exc:
        sock.close()
        from batchlane.errors import ValidationError

        raise ValidationError(
            f"cannot listen on {config.host}:{config.port}: {exc.strerror}", field="--port"
        ) from None
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return sock, f"{'https' if config.ssl_certfile else 'http'}://{shown}:{port}"


def _server(app: Any, config: ServerConfig) -> Any:
    import uvicorn

    return uvicorn.Server(
        uvicorn.Config(
            app,
            log_config=None,  # keep the caller's logging set-up
            access_log=False,  # batchlane.api.audit logs every call with its key and action instead
            timeout_keep_alive=KEEP_ALIVE_S,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
            lifespan="on",
            ssl_certfile=str(config.ssl_certfile) if config.ssl_certfile else None,
            ssl_keyfile=str(config.ssl_keyfile) if config.ssl_keyfile else None,
            server_header=False,
        )
    )


def _announce(app: Any, config: ServerConfig, url: str) -> None:
    log.info(
        "batchlane control plane on %s (auth %s, %d job worker(s), queue %s%s)",
        url,
        f"SigV4, {len(config.keys)} key(s)" if config.auth else "OFF",
        config.workers,
        app.state.plane.queue.url,
        ", consumed by the queue worker" if config.queue_worker else "",
    )


def run_server(config: ServerConfig, *, on_ready: Callable[[str], object] | None = None) -> None:
    """Serve until SIGINT/SIGTERM; ``on_ready(url)`` is called once the address is bound."""
    from batchlane.api.app import create_app

    app = create_app(config)
    sock, url = _bind(config)
    _announce(app, config, url)
    if on_ready is not None:
        on_ready(url)
    _server(app, config).run(sockets=[sock])


@contextmanager
def background_server(config: ServerConfig, *, startup_timeout_s: float = 30.0) -> Iterator[str]:
    """Serve on a daemon thread (``port=0``: a free port); yields the base URL once it accepts requests, and stops
    the server (executor and queue worker included) on exit."""
    from batchlane.api.app import create_app

    app = create_app(config)
    sock, url = _bind(config)
    server = _server(app, config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="batchlane-server", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the control plane did not start on {url}")
        time.sleep(0.02)
    _announce(app, config, url)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=GRACEFUL_SHUTDOWN_S + 5)
        sock.close()
