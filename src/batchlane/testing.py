"""Helpers for tests that talk to real batchlane servers: yours and ours (see docs/testing.md).

``running_server(["serve", "--model-dir", "model/"])`` starts ``batchlane serve`` as a subprocess on a free
127.0.0.1 port, waits until ``/ping`` answers 200, yields its URL and stops it afterwards;
``running_server(["control-plane", "--no-auth"])`` does the same for the control plane. Given an ASGI app instead
of arguments, it serves the app with uvicorn on a thread of this process. Nothing here is mocked: what a test
reaches is the server a user runs.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["free_port", "running_server", "stop_process", "wait_for_http"]

HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A TCP port that is free on ``host`` right now (another process may still take it before you bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for_http(
    url: str,
    timeout: float = 60.0,
    status: int = 200,
    *,
    process: subprocess.Popen | None = None,
    interval: float = 0.1,
) -> None:
    """Poll ``url`` with GET until it answers ``status``.

    Raises TimeoutError naming the last answer after ``timeout`` seconds, or RuntimeError at once if ``process``
    (the server being waited for) exits first.
    """
    import httpx

    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        try:
            answer = httpx.get(url, timeout=2.0)
            if answer.status_code == status:
                return
            last = f"HTTP {answer.status_code}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode} before {url} answered")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{url} did not answer {status} within {timeout}s (last: {last})")
        time.sleep(interval)


def stop_process(process: subprocess.Popen, timeout: float = 20.0) -> int:
    """SIGTERM ``process``, then SIGKILL if it is still running after ``timeout`` seconds; returns its exit
    status."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@contextlib.contextmanager
def running_server(
    argv_or_app: Sequence[str] | Callable[..., Any],
    *,
    env: Mapping[str, str] | None = None,
    log: str | Path | None = None,
    health: str = "/ping",
    timeout: float = 60.0,
    stop_timeout: float = 20.0,
    port: int | None = None,
) -> Iterator[str]:
    """Run a batchlane server on 127.0.0.1 for the length of a ``with`` block; yields its base URL.

    ``argv_or_app`` is either the arguments of the ``batchlane`` command (``["serve", "--model-dir", d]``,
    ``["control-plane", "--no-auth"]``), to which ``--host 127.0.0.1 --port PORT`` are added, or an ASGI app
    (``batchlane.serving.app.create_app(...)``), served by uvicorn on a daemon thread of this process.

    A subprocess runs with this interpreter (``python -m batchlane``) and ``env`` (default: this process's
    environment); its stdout and stderr go to ``log`` (default: a temporary file, printed in the error if the server
    does not come up). The block starts once GET ``health`` answers 200 within ``timeout`` seconds; on exit the
    process gets SIGTERM, then SIGKILL after ``stop_timeout`` seconds. ``port`` defaults to a free one.
    """
    port = free_port() if port is None else port
    if callable(argv_or_app):
        with _running_app(argv_or_app, port, health, timeout) as url:
            yield url
        return
    url = f"http://{HOST}:{port}"
    argv = [sys.executable, "-m", "batchlane", *argv_or_app, "--host", HOST, "--port", str(port)]
    log_path = Path(log) if log is not None else None
    if log_path is None:
        handle, name = tempfile.mkstemp(prefix="batchlane-server-", suffix=".log")
        os.close(handle)
        log_path = Path(name)
    with open(log_path, "wb") as out:
        process = subprocess.Popen(
            argv, env=dict(os.environ if env is None else env), stdout=out, stderr=subprocess.STDOUT
        )
    try:
        try:
            wait_for_http(url + health, timeout=timeout, process=process)
        except (TimeoutError, RuntimeError) as exc:
            tail = log_path.read_text(errors="replace")[-4000:]
            raise type(exc)(f"{exc}; `batchlane {' '.join(argv_or_app)}` logged:\n{tail}") from None
        yield url
    finally:
        stop_process(process, timeout=stop_timeout)
        if log is None:
            log_path.unlink(missing_ok=True)


@contextlib.contextmanager
def _running_app(app: Callable[..., Any], port: int, health: str, timeout: float) -> Iterator[str]:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="batchlane-testing-server", daemon=True)
    thread.start()
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"the app did not start on {url}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the app did not start on {url} within {timeout}s")
            time.sleep(0.02)
        wait_for_http(url + health, timeout=max(0.0, deadline - time.monotonic()))
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
