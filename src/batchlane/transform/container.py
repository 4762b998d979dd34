"""The model container a transform job talks to: a `batchlane serve` subprocess, a user's own serving command,
or an already running server at a URL.

Start-up waits for ``GET /ping`` to answer 200 within a deadline (docs/transform.md: a container that never becomes
healthy fails the job quickly with the last status seen, instead of pinging for 30 minutes). A started process is
tied to its parent (Linux ``PR_SET_PDEATHSIG``) so a runner killed with SIGKILL does not leave servers behind. It
gets a clean environment (``serving.environment.model_process_environment``): runtime variables, SageMaker's and the
job's, never the runner's credentials.

A server we started can be restarted (``restart``: the old process group is killed, a new server starts on a new
port) when it hangs or dies mid-job; ``transform.supervisor`` decides when (docs/transform.md, "Recovery").
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

from batchlane.errors import ModelLoadError
from batchlane.serving.environment import model_process_environment
from batchlane.transform.invoke import HttpInvoker, http_invoker

if TYPE_CHECKING:
    from batchlane.transform.params import EffectiveParams

log = logging.getLogger(__name__)

PING_TIMEOUT_S = 2.0  # per-ping timeout of the SageMaker platform (docs/transform.md)
STOP_GRACE_S = 10.0
# A server being restarted is stuck or dead: a hung handler thread would hold a graceful exit for ever.
RESTART_GRACE_S = 2.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ModelContainer:
    """A model server for one job. Use as a context manager; ``url`` is valid after ``start()``.

    Exactly one of ``model_dir`` (served by ``batchlane serve``), ``serve_command`` (argv; ``{port}`` is replaced
    and ``SAGEMAKER_BIND_TO_PORT`` is set) or ``url`` (nothing is started) must be given.
    """

    def __init__(
        self,
        *,
        model_dir: str | Path | None = None,
        serve_command: Sequence[str] | None = None,
        url: str | None = None,
        env: Mapping[str, str] | None = None,
        startup_timeout_s: float = 120.0,
        log_file: str | Path | None = None,
        serve_args: Sequence[str] = (),
        on_wait: Callable[[], None] | None = None,
    ) -> None:
        if sum(x is not None for x in (model_dir, serve_command, url)) != 1:
            raise ValueError("give exactly one of model_dir, serve_command or url")
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.serve_command = list(serve_command) if serve_command is not None else None
        self.url = url.rstrip("/") if url else None
        self.env = dict(env or {})
        self.startup_timeout_s = startup_timeout_s
        self.log_file = Path(log_file) if log_file else None
        self.serve_args = list(serve_args)
        # Called on every /ping poll during start-up; it may raise (e.g. the job was asked to stop) to give up.
        self.on_wait = on_wait
        self.process: subprocess.Popen[bytes] | None = None
        self._log_handle: IO[bytes] | None = None

    def __enter__(self) -> ModelContainer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _command(self, port: int) -> list[str]:
        if self.serve_command is not None:
            return [part.replace("{port}", str(port)) for part in self.serve_command]
        assert self.model_dir is not None
        return [
            sys.executable, "-m", "batchlane", "serve",
            "--model-dir", str(self.model_dir), "--host", "127.0.0.1", "--port", str(port),
            *self.serve_args,
        ]  # fmt: skip

    def start(self) -> str:
        """Start the server if needed and wait until ``/ping`` answers 200; return the base URL."""
        if (
            self.url is not None
            and self.process is None
            and self.model_dir is None
            and self.serve_command is None
        ):
            self._wait_healthy()
            return self.url
        port = free_port()
        # A clean environment, never ours: the model process runs user code (serving/environment.py).
        env = model_process_environment(os.environ, {**self.env, "SAGEMAKER_BIND_TO_PORT": str(port)})
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            self._log_handle = open(self.log_file, "ab")  # noqa: SIM115 - closed in stop()
        command = self._command(port)
        log.info("starting model container: %s", " ".join(command))
        self.process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_handle or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,  # noqa: PLW1509
            # Its own process group: Ctrl-C in a terminal reaches the runner only, which stops the job gracefully
            # (abandoning the file in flight) and then stops this server itself; ``stop`` kills the whole group.
            process_group=0,
        )
        self.url = f"http://127.0.0.1:{port}"
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self.url

    def _tail_log(self, lines: int = 5) -> str:
        if self.log_file is None or not self.log_file.exists():
            return ""
        tail = self.log_file.read_bytes()[-4000:].decode("utf-8", "replace").strip().splitlines()[-lines:]
        return " | ".join(line.strip() for line in tail)

    def _wait_healthy(self) -> None:
        import httpx

        assert self.url is not None
        deadline = time.monotonic() + self.startup_timeout_s
        last = "no answer"
        with httpx.Client(timeout=PING_TIMEOUT_S) as client:
            while True:
                if self.on_wait is not None:
                    self.on_wait()
                if self.process is not None and self.process.poll() is not None:
                    tail = self._tail_log()
                    raise ModelLoadError(
                        f"model container exited with code {self.process.returncode} before becoming healthy"
                        + (f": {tail}" if tail else "")
                    )
                try:
                    answer = client.get(f"{self.url}/ping")
                    if answer.status_code == 200:
                        return
                    last = f"status {answer.status_code}"
                except httpx.HTTPError as exc:
                    last = type(exc).__name__
                if time.monotonic() >= deadline:
                    tail = self._tail_log()
                    raise ModelLoadError(
                        f"container failed health check within {self.startup_timeout_s:g} s: last {last}"
                        + (f" (log: {tail})" if tail else "")
                    )
                time.sleep(0.1)

    def execution_parameters(self) -> dict | None:
        """The container's ``GET /execution-parameters`` answer, or None when it has none (any non-200)."""
        import httpx

        assert self.url is not None
        try:
            answer = httpx.get(f"{self.url}/execution-parameters", timeout=PING_TIMEOUT_S * 5)
        except httpx.HTTPError:
            return None
        if answer.status_code != 200:
            return None
        try:
            data = answer.json()
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def invoker(self, params: EffectiveParams) -> HttpInvoker:
        """An ``HttpInvoker`` for the server as it is now (call again after ``restart``: the URL changes)."""
        assert self.url is not None
        return http_invoker(self.url, params)

    @property
    def restartable(self) -> bool:
        """Whether we start the server ourselves (``model_dir`` or ``serve_command``) and so can restart it."""
        return self.model_dir is not None or self.serve_command is not None

    def exit_code(self, wait_s: float = 0.0) -> int | None:
        """The exit code of the server we started, or None while it runs (or when we started none). ``wait_s``: how
        long to wait for it to end (a dropped connection can come a moment before the process is reaped)."""
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout=wait_s) if wait_s > 0 else self.process.poll()
        except subprocess.TimeoutExpired:
            return None

    def ping(self) -> bool:
        """Whether ``GET /ping`` answers 200 within the platform's ping timeout."""
        import httpx

        if self.url is None:
            return False
        try:
            return httpx.get(f"{self.url}/ping", timeout=PING_TIMEOUT_S).status_code == 200
        except httpx.HTTPError:
            return False

    def restart(self, note: str = "") -> str:
        """Kill the server (its whole process group) and start a new one; return the new base URL. ``note`` is
        written to the container log between the two servers' lines."""
        if not self.restartable:
            raise ValueError("only a server this container started can be restarted")
        self.stop(grace_s=RESTART_GRACE_S)
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_file, "a", encoding="utf-8") as handle:
                handle.write(
                    f"---- batchlane: restarting the model server{': ' + note if note else ''} ----\n"
                )
        self.url = None
        return self.start()

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM the server (if we started it); if it has not ended after ``grace_s``, SIGKILL its process group
        (what user code started, e.g. a worker process, goes with it)."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                # Not reaped yet, so its pid (= its group id, ``process_group=0``) cannot have been reused.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None
