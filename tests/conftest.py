"""Fixtures shared by every test layer: tiny real models, free loopback ports, moto's S3/SQS server.

Tests use real components only: real model directories, real HTTP servers on 127.0.0.1, real SQLite files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchlane.testing import free_port, wait_for_http

# Keep torch from oversubscribing the 2 CI cores when several servers/tests run at once.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Tests never touch the user's ~/.batchlane (job store, queue, caches): one throwaway home per test session.
_TEST_HOME = tempfile.mkdtemp(prefix="batchlane-test-home-")
os.environ["BATCHLANE_HOME"] = _TEST_HOME
os.environ.pop("BATCHLANE_DB", None)
# One OpenVINO IR cache for the session (`--runtime auto` converts the default classifier): the cache is keyed by the
# model's content, so each tiny model converts once, not once per test home. Subprocess env helpers pass it on.
os.environ["BATCHLANE_OPENVINO_CACHE"] = os.path.join(_TEST_HOME, "openvino")
os.environ.pop("BATCHLANE_QUEUE", None)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_TEST_HOME, ignore_errors=True)


_E2E = Path(__file__).parent / "e2e"
# Fixtures whose first use costs seconds: torch and transformers loading a real (tiny) model, moto's server.
_SLOW_FIXTURES = frozenset({"tiny_bert_dir", "tiny_modernbert_dir", "moto_server", "s3_bucket"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # What `make test-fast` (-m "not slow") skips besides the tests marked slow one by one (those --durations shows
    # over about half a second on 2 busy cores): every end-to-end test, since each starts the real CLI or servers
    # as subprocesses, and every test that needs a real model or moto's server.
    for item in items:
        if item.path.is_relative_to(_E2E) or _SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT sequence classifier with labels billing/fraud/service."""
    from batchlane.examples.tiny_models import build_tiny_classifier

    return build_tiny_classifier(tmp_path_factory.mktemp("tiny-bert"), arch="bert")


@pytest.fixture(scope="session")
def tiny_modernbert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random ModernBERT sequence classifier (built from ModernBertConfig) with the same labels."""
    from batchlane.examples.tiny_models import build_tiny_classifier

    return build_tiny_classifier(tmp_path_factory.mktemp("tiny-modernbert"), arch="modernbert")


@pytest.fixture(scope="session")
def aws_env() -> Iterator[dict[str, str]]:
    """Fake AWS credentials so boto3 never looks for real ones."""
    values = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    yield values
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def moto_server(aws_env: dict[str, str]) -> Iterator[str]:
    """moto's server (S3, SQS, SageMaker control plane) on a free loopback port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/moto-api/", timeout=30)
        yield url
    finally:
        server.stop()


@pytest.fixture()
def s3_bucket(moto_server: str) -> str:
    """A fresh, empty bucket on the moto server; returns its name."""
    import uuid

    import boto3

    name = f"bl-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1").create_bucket(Bucket=name)
    return name
