"""`batchlane server` given JSON nested deeper than a parser goes: AWS's 400 error shape, never a plain-text 500.

A real server process on a free loopback port; requests are signed as botocore signs them (a deep body cannot come
from boto3 itself: its serializer gives up first), and the answers are read back with botocore's own parsers, as an
SDK would read them.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlencode

import httpx
import pytest
from botocore.parsers import create_parser

from tests.servers import control_plane_server, signed_post

KEY, SECRET = "AKIDBADJSON", "bad-json-secret"
DEEP = "[" * 100_000 + "]" * 100_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("server-bad-json")
    args = ["--workers", "1", "--no-worker"]
    with control_plane_server(root, *args, key=KEY, secret=SECRET, home=root) as url:
        yield url


def _post(url: str, body: bytes, headers: dict[str, str], service: str) -> httpx.Response:
    return signed_post(url + "/", body, headers, service, KEY, SECRET, timeout=30)


def _sdk_error(response: httpx.Response, protocol: str) -> dict:
    """What botocore makes of the answer: its ``Error`` dict (``Code``, ``Message``)."""
    parsed = create_parser(protocol).parse(
        {"status_code": response.status_code, "headers": dict(response.headers), "body": response.content},
        None,
    )
    return parsed["Error"]


@pytest.mark.parametrize(
    ("target", "content_type", "service"),
    [
        ("SageMaker.CreateTransformJob", "application/x-amz-json-1.1", "sagemaker"),
        ("AmazonSQS.SendMessage", "application/x-amz-json-1.0", "sqs"),
    ],
)
def test_deep_json_body_is_a_serialization_exception(
    server: str, target: str, content_type: str, service: str
) -> None:
    headers = {"X-Amz-Target": target, "Content-Type": content_type}
    response = _post(server, DEEP.encode(), headers, service)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == content_type
    assert response.headers["x-amzn-errortype"] == "SerializationException"
    body = response.json()
    assert body["__type"].endswith("SerializationException")
    assert "nested deeper than the parser's limit" in body["message"]
    error = _sdk_error(response, "json")
    assert error["Code"] == "SerializationException", error


def test_deep_json_attribute_over_the_query_protocol(server: str) -> None:
    form = {
        "Action": "CreateQueue",
        "Version": "2012-11-05",
        "QueueName": "deep",
        "Attribute.1.Name": "RedrivePolicy",
        "Attribute.1.Value": DEEP,
    }
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    response = _post(server, urlencode(form).encode(), headers, "sqs")
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("text/xml")
    error = _sdk_error(response, "query")
    assert error["Code"] == "InvalidAttributeValue", error
    assert error["Type"] == "Sender"


def test_deep_json_attribute_over_the_json_protocol(server: str) -> None:
    body = ('{"QueueName": "deep", "Attributes": {"RedrivePolicy": "' + DEEP + '"}}').encode()
    headers = {"X-Amz-Target": "AmazonSQS.CreateQueue", "Content-Type": "application/x-amz-json-1.0"}
    response = _post(server, body, headers, "sqs")
    assert response.status_code == 400, response.text
    assert _sdk_error(response, "json")["Code"] == "InvalidAttributeValue"
