"""The control plane that test_api_sqs.py and test_api_sqs_batch.py drive: SQS only (no workers, no queue worker, so
sent messages stay for the tests to receive), its queue file ``transform-requests`` in the module's ``root``.

Test modules import the fixtures ``root``, ``server`` and ``sqs`` (one of each per module) and :func:`query`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import pytest

from batchlane.api.auth import AccessKey
from tests.servers import api_server, aws_client, sqs_query

KEY, SECRET = "AKIDSQS", "sqs-test-secret"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api-sqs")


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[str]:
    keys = AccessKey(KEY, SECRET)
    with api_server(root, keys, queue="transform-requests", workers=0, queue_worker=False) as url:
        yield url


@pytest.fixture(scope="module")
def sqs(server: str):
    return aws_client("sqs", server, KEY, SECRET)


def query(server: str, params: dict[str, str], path: str = "/") -> ElementTree.Element:
    """A signed query-protocol call (how older SDKs speak to SQS) as KEY; the parsed XML answer."""
    return sqs_query(server, KEY, SECRET, params, path)
