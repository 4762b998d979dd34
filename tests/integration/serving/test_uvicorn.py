"""The container contract end to end over real HTTP: uvicorn on a free 127.0.0.1 port, in a thread."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

from batchlane.examples.user_code import make_model_dir
from batchlane.serving.app import create_app
from batchlane.settings import ServeSettings
from batchlane.testing import free_port, wait_for_http

# Each test starts a `batchlane serve` process or loads a real model: `make test-fast` skips them.
pytestmark = pytest.mark.slow

TEXTS = ["the fee was charged twice on my statement", "hello", "they never answered my calls", "ok"]
LABELS = {"billing", "fraud", "service"}


@contextmanager
def serving(model_dir: Path, env: dict[str, str] | None = None, wait: bool = True) -> Iterator[str]:
    """Run the container app under uvicorn in a thread; yield its base URL."""
    port = free_port()
    settings = ServeSettings.from_env(env or {}, model_dir=model_dir, host="127.0.0.1", port=port)
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        if wait:
            wait_for_http(f"{url}/ping", timeout=30)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module", params=["bert", "modernbert"])
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    with serving(request.getfixturevalue(f"tiny_{request.param}_dir")) as base:
        yield base


def test_ping_and_execution_parameters(url: str) -> None:
    ping = httpx.get(f"{url}/ping")
    assert (ping.status_code, ping.content) == (200, b"")
    assert httpx.get(f"{url}/execution-parameters").json() == {
        "MaxConcurrentTransforms": 2,
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": 6,
    }


@pytest.mark.parametrize(
    ("content_type", "body", "accept"),
    [
        ("application/json", json.dumps({"inputs": TEXTS}), "application/json"),
        (
            "application/jsonlines",
            "".join(json.dumps({"text": t}) + "\n" for t in TEXTS),
            "application/jsonlines",
        ),
        ("text/csv", "".join(f'"{t}"\n' for t in TEXTS), "text/csv"),
        ("text/plain", "\n".join(TEXTS), "text/plain"),
    ],
)
def test_each_content_type_round_trip(url: str, content_type: str, body: str, accept: str) -> None:
    response = httpx.post(
        f"{url}/invocations", content=body, headers={"content-type": content_type, "accept": accept}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(accept)
    lines = response.text.splitlines() if accept != "application/json" else response.json()
    assert len(lines) == len(TEXTS)
    labels = [line.split(",")[0] if isinstance(line, str) else line["label"] for line in lines]
    if accept == "application/jsonlines":
        labels = [json.loads(line)["label"] for line in lines]
    assert set(labels) <= LABELS
    # Same records in another format give the same labels in the same order.
    as_json = httpx.post(f"{url}/invocations", content=body, headers={"content-type": content_type}).json()
    assert labels == [r["label"] for r in as_json]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "error_type"),
    [
        ('{"inputs": ["unterminated"', "application/json", 400, "BadInput"),
        ("<xml/>", "application/xml", 415, "UnsupportedContentType"),
    ],
)
def test_client_errors(url: str, body: str, content_type: str, status: int, error_type: str) -> None:
    response = httpx.post(f"{url}/invocations", content=body, headers={"content-type": content_type})
    assert response.status_code == status
    assert response.json()["type"] == error_type


def test_oversized_payload(tiny_bert_dir: Path) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(48):
            yield b"x" * 32768

    with serving(tiny_bert_dir, {"SAGEMAKER_MAX_PAYLOAD_IN_MB": "1"}) as base:
        declared = httpx.post(
            f"{base}/invocations", content=b"y" * (1024 * 1024 + 10), headers={"content-type": "text/plain"}
        )
        streamed = httpx.post(f"{base}/invocations", content=chunks(), headers={"content-type": "text/plain"})
        still_fine = httpx.post(
            f"{base}/invocations", content=b"small", headers={"content-type": "text/plain"}
        )
    assert declared.status_code == 413 and "SAGEMAKER_MAX_PAYLOAD_IN_MB" in declared.json()["message"]
    assert streamed.status_code == 413 and "1 MB" in streamed.json()["message"]
    assert still_fine.status_code == 200


def test_ping_before_and_after_load(tiny_bert_dir: Path, tmp_path: Path) -> None:
    model_dir = make_model_dir("slow_load", tiny_bert_dir, tmp_path / "slow")
    with serving(model_dir, wait=False) as base:
        assert httpx.get(f"{base}/ping").status_code == 503
        (model_dir / "release").touch()
        wait_for_http(f"{base}/ping", timeout=30)
        assert httpx.get(f"{base}/ping").content == b""


@pytest.mark.parametrize("example", ["with_context", "without_context", "transform_fn"])
def test_user_inference_py(example: str, tiny_bert_dir: Path, tmp_path: Path) -> None:
    body, content_type = json.dumps({"inputs": ["fraud on my card", "nice"]}), "application/json"
    if example == "transform_fn":
        body, content_type = '{"text": "fraud on my card"}\n{"text": "nice"}\n', "application/jsonlines"
    with serving(make_model_dir(example, tiny_bert_dir, tmp_path / example)) as base:
        response = httpx.post(
            f"{base}/invocations",
            content=body,
            headers={"content-type": content_type, "X-Amzn-SageMaker-Custom-Attributes": "a=1"},
        )
    assert response.status_code == 200, response.text
    if example == "with_context":
        assert response.json()["attributes"] == "a=1" and len(response.json()["predictions"]) == 2
    elif example == "without_context":
        assert response.json() == ["fraud", "billing"]
    else:
        assert [json.loads(line)["label"] for line in response.text.splitlines()] == ["fraud", "billing"]


def test_model_that_raises(tiny_bert_dir: Path, tmp_path: Path) -> None:
    with serving(make_model_dir("raises", tiny_bert_dir, tmp_path / "raises")) as base:
        response = httpx.post(
            f"{base}/invocations", content='["x"]', headers={"content-type": "application/json"}
        )
        assert httpx.get(f"{base}/ping").status_code == 200  # one failing request does not make it unhealthy
    assert response.status_code == 500
    assert response.json()["message"] == "predict_fn raised ValueError: the model exploded on purpose"
    assert "Traceback" not in response.text
