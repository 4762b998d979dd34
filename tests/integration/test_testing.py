"""`batchlane.testing`: the helpers users' tests (and ours) start real servers with."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from batchlane.testing import free_port, running_server, stop_process, wait_for_http
from tests.models import ECHO_DIR, ECHO_ENV
from tests.servers import clean_env


def test_free_port_can_be_bound_on_loopback() -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))


def test_wait_for_http_names_the_last_answer_when_nothing_listens() -> None:
    url = f"http://127.0.0.1:{free_port()}/ping"
    with pytest.raises(TimeoutError, match=r"did not answer 200 within 0\.3s \(last: ConnectError"):
        wait_for_http(url, timeout=0.3)


def test_wait_for_http_stops_waiting_when_the_server_process_exits() -> None:
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    process.wait()
    with pytest.raises(RuntimeError, match="exited with status 3"):
        wait_for_http(f"http://127.0.0.1:{free_port()}/ping", timeout=60, process=process)


@pytest.mark.slow
def test_stop_process_kills_a_process_that_ignores_sigterm() -> None:
    code = "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    assert stop_process(process, timeout=0.5) == -9


@pytest.mark.slow
def test_running_server_serves_a_model_and_stops_it_on_exit(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    env = clean_env(**ECHO_ENV, BATCHLANE_HOME=str(tmp_path))
    with running_server(["serve", "--model-dir", str(ECHO_DIR)], env=env, log=log) as url:
        assert url.startswith("http://127.0.0.1:")
        answer = httpx.post(f"{url}/invocations", content=b"hello\n", headers={"Content-Type": "text/plain"})
        assert answer.status_code == 200 and answer.text.strip() == "echo:hello"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/ping", timeout=2)
    assert log.stat().st_size > 0


@pytest.mark.slow
def test_running_server_reports_a_server_that_cannot_start(tmp_path: Path) -> None:
    env = clean_env(BATCHLANE_HOME=str(tmp_path))
    with (
        pytest.raises(
            RuntimeError, match=r"exited with status [1-9].*`batchlane control-plane --port 0` logged"
        ),
        running_server(["control-plane", "--port", "0"], env=env, timeout=60),
    ):
        pytest.fail("a control plane without access keys must not start")


@pytest.mark.slow
def test_running_server_serves_an_asgi_app_in_this_process() -> None:
    from batchlane.serving.app import create_app
    from batchlane.settings import ServeSettings

    app = create_app(ServeSettings.from_env(ECHO_ENV, model_dir=ECHO_DIR))
    with running_server(app) as url:
        answer = httpx.post(f"{url}/invocations", content=b"hi\n", headers={"Content-Type": "text/plain"})
        assert answer.text.strip() == "echo:hi"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/ping", timeout=2)
