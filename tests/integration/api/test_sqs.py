"""boto3's SQS client (JSON protocol) and a hand-signed query-protocol client against the control plane's SQS API
over the embedded queue: uvicorn on a free loopback port, a real SQLite queue file."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import httpx
import pytest
from botocore.exceptions import ClientError

from batchlane.queue import open_queue
from tests.integration.api import sqs_server
from tests.integration.api.sqs_server import KEY, query
from tests.servers import aws_client

SEED_MESSAGE = {
    "input_path": "s3://bucket/in/",
    "output_path": "s3://bucket/out/",
    "instance_type": "ml.m5.xlarge",
    "instance_count": 1,
}
NS = {"sqs": "http://queue.amazonaws.com/doc/2012-11-05/"}
# The shared SQS-only control plane (tests/integration/api/sqs_server.py): one of each fixture for this module.
root, server, sqs = sqs_server.root, sqs_server.server, sqs_server.sqs


def test_the_seed_sender_works_unmodified(sqs, root: Path) -> None:
    # What the seed's client does: look the queue up by name, send the request as JSON.
    queue_url = sqs.get_queue_url(QueueName="transform-requests")["QueueUrl"]
    assert queue_url.endswith("/000000000000/transform-requests")
    body = json.dumps(SEED_MESSAGE)
    sent = sqs.send_message(QueueUrl=queue_url, MessageBody=body)
    assert sent["MD5OfMessageBody"] == hashlib.md5(body.encode()).hexdigest()

    got = sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageSystemAttributeNames=["All"]
    )
    [message] = got["Messages"]
    assert message["MessageId"] == sent["MessageId"] and json.loads(message["Body"]) == SEED_MESSAGE
    assert message["Attributes"]["ApproximateReceiveCount"] == "1"
    assert int(message["Attributes"]["SentTimestamp"]) > 0
    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])

    # The same file, through the library: the message is gone.
    library_queue = open_queue(f"sqlite:///{root}/queue.db?queue=transform-requests")
    assert library_queue.attributes()["visible"] == 0 and library_queue.attributes()["in_flight"] == 0


@pytest.mark.slow
def test_visibility_attributes_and_fenced_receipts(sqs) -> None:
    url = sqs.create_queue(
        QueueName="work",
        Attributes={
            "VisibilityTimeout": "60",
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": "arn:aws:sqs:us-east-1:000000000000:work-dlq", "maxReceiveCount": 3}
            ),
        },
    )["QueueUrl"]
    assert sqs.create_queue(QueueName="work", Attributes={"VisibilityTimeout": "60"})["QueueUrl"] == url
    with pytest.raises(ClientError, match="QueueAlreadyExists"):
        sqs.create_queue(QueueName="work", Attributes={"VisibilityTimeout": "30"})

    attributes = {"kind": {"DataType": "String", "StringValue": "transform"}}
    sent = sqs.send_message(QueueUrl=url, MessageBody="one", MessageAttributes=attributes)
    [first] = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"])["Messages"]
    assert first["MessageAttributes"] == attributes
    assert first["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]

    stats = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (
        stats["ApproximateNumberOfMessages"] == "0" and stats["ApproximateNumberOfMessagesNotVisible"] == "1"
    )
    assert stats["VisibilityTimeout"] == "60" and json.loads(stats["RedrivePolicy"])["maxReceiveCount"] == 3

    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=0)
    [again] = sqs.receive_message(QueueUrl=url, AttributeNames=["ApproximateReceiveCount"])["Messages"]
    assert again["MessageId"] == first["MessageId"] and again["Attributes"]["ApproximateReceiveCount"] == "2"
    with pytest.raises(ClientError) as stale:  # the first delivery's lease is over: refused, not applied
        sqs.delete_message(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"])
    assert stale.value.response["Error"]["Code"] == "ReceiptHandleIsInvalid"
    sqs.delete_message(QueueUrl=url, ReceiptHandle=again["ReceiptHandle"])

    started = time.monotonic()
    assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
    assert time.monotonic() - started >= 0.9  # long polling waited
    urls = sqs.list_queues(QueueNamePrefix="work")["QueueUrls"]
    assert urls == [url, url + "-dlq"]


def test_errors_have_sqs_codes_and_exception_classes(sqs) -> None:
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as missing:
        sqs.get_queue_url(QueueName="nope")
    assert missing.value.response["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"
    url = sqs.get_queue_url(QueueName="transform-requests")["QueueUrl"]
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.send_message(QueueUrl=url.replace("transform-requests", "other"), MessageBody="x")
    with pytest.raises(ClientError) as too_big:
        sqs.send_message(QueueUrl=url, MessageBody="x" * (1024 * 1024 + 1))
    assert too_big.value.response["Error"]["Code"] == "InvalidParameterValue"
    with pytest.raises(ClientError) as bad_char:
        sqs.send_message(QueueUrl=url, MessageBody="bell \x07")
    assert bad_char.value.response["Error"]["Code"] == "InvalidMessageContents"
    with pytest.raises(ClientError) as receipt:
        sqs.delete_message(QueueUrl=url, ReceiptHandle="not-a-receipt")
    assert receipt.value.response["Error"]["Code"] == "ReceiptHandleIsInvalid"


def test_unsigned_and_wrongly_signed_sqs_calls_get_403(server: str) -> None:
    wrong = aws_client("sqs", server, KEY, "wrong", retries=None)
    with pytest.raises(ClientError) as denied:
        wrong.get_queue_url(QueueName="transform-requests")
    assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert denied.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    answer = httpx.post(
        server + "/",
        content=json.dumps({"QueueName": "transform-requests"}),
        headers={"X-Amz-Target": "AmazonSQS.GetQueueUrl", "Content-Type": "application/x-amz-json-1.0"},
    )
    assert answer.status_code == 403 and answer.json()["__type"].endswith("MissingAuthenticationToken")


@pytest.mark.slow
def test_the_legacy_query_protocol(server: str) -> None:
    root = query(server, {"Action": "GetQueueUrl", "QueueName": "transform-requests"})
    url = root.find("sqs:GetQueueUrlResult/sqs:QueueUrl", NS).text
    root = query(
        server,
        {
            "Action": "SendMessage",
            "QueueUrl": url,
            "MessageBody": json.dumps(SEED_MESSAGE),
            "MessageAttribute.1.Name": "source",
            "MessageAttribute.1.Value.DataType": "String",
            "MessageAttribute.1.Value.StringValue": "legacy",
        },
    )
    message_id = root.find("sqs:SendMessageResult/sqs:MessageId", NS).text
    # Old SDKs post to the queue URL itself.
    root = query(
        server,
        {"Action": "ReceiveMessage", "AttributeName.1": "All", "MessageAttributeName.1": "All"},
        path="/000000000000/transform-requests",
    )
    message = root.find("sqs:ReceiveMessageResult/sqs:Message", NS)
    assert message.find("sqs:MessageId", NS).text == message_id
    assert json.loads(message.find("sqs:Body", NS).text) == SEED_MESSAGE
    assert message.find("sqs:MessageAttribute/sqs:Value/sqs:StringValue", NS).text == "legacy"
    names = [a.find("sqs:Name", NS).text for a in message.findall("sqs:Attribute", NS)]
    assert "ApproximateReceiveCount" in names
    receipt = message.find("sqs:ReceiptHandle", NS).text
    query(server, {"Action": "DeleteMessage", "QueueUrl": url, "ReceiptHandle": receipt})
    error = query(server, {"Action": "GetQueueUrl", "QueueName": "nope"})
    assert error.find("sqs:Error/sqs:Code", NS).text == "AWS.SimpleQueueService.NonExistentQueue"
