"""SQS's batch actions and PurgeQueue on the control plane, driven by boto3, the `aws` CLI and a hand-signed
query-protocol client against a real server (uvicorn on a free loopback port, a real SQLite queue file)."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from batchlane.api.protocol import AwsError
from batchlane.api.sqs import SqsApi
from batchlane.queue import open_queue
from tests.integration.api import sqs_server
from tests.integration.api.sqs_server import KEY, SECRET, query
from tests.servers import aws_cli

NS = {"sqs": "http://queue.amazonaws.com/doc/2012-11-05/"}
# The shared SQS-only control plane (tests/integration/api/sqs_server.py): one of each fixture for this module.
root, server, sqs = sqs_server.root, sqs_server.server, sqs_server.sqs


@pytest.fixture()
def queue_url(sqs) -> str:
    """A fresh queue per test (visibility 60 s), so counts are the test's own."""
    return sqs.create_queue(
        QueueName=f"batch-{uuid.uuid4().hex[:8]}", Attributes={"VisibilityTimeout": "60"}
    )["QueueUrl"]


def receive_all(sqs, url: str, expected: int) -> list[dict]:
    messages: list[dict] = []
    while len(messages) < expected:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])
        if not got.get("Messages"):
            break
        messages += got["Messages"]
    return messages


def counts(sqs, url: str) -> tuple[int, int]:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return int(attributes[names[0]]), int(attributes[names[1]])


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def test_send_message_batch_of_10_then_receive_them_all(sqs, queue_url: str) -> None:
    entries = [{"Id": f"m{i}", "MessageBody": json.dumps({"n": i})} for i in range(10)]
    entries[3]["MessageAttributes"] = {"kind": {"DataType": "String", "StringValue": "transform"}}
    answer = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
    assert answer["Failed"] == []
    assert [s["Id"] for s in answer["Successful"]] == [e["Id"] for e in entries]
    assert all(
        s["MD5OfMessageBody"] == md5(e["MessageBody"])
        for s, e in zip(answer["Successful"], entries, strict=True)
    )
    assert (
        "MD5OfMessageAttributes" in answer["Successful"][3]
        and "MD5OfMessageAttributes" not in (answer["Successful"][0])
    )
    ids = {s["MessageId"] for s in answer["Successful"]}
    assert len(ids) == 10

    messages = receive_all(sqs, queue_url, 10)
    assert {m["MessageId"] for m in messages} == ids
    assert sorted(json.loads(m["Body"])["n"] for m in messages) == list(range(10))
    [tagged] = [m for m in messages if "MessageAttributes" in m]
    assert tagged["MD5OfMessageAttributes"] == answer["Successful"][3]["MD5OfMessageAttributes"]


@pytest.mark.slow
def test_batch_limits_refuse_the_whole_request(sqs, queue_url: str) -> None:
    def refused(entries: list[dict]) -> ClientError:
        with pytest.raises(ClientError) as caught:
            sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        return caught.value

    eleven = [{"Id": f"m{i}", "MessageBody": "x"} for i in range(11)]
    with pytest.raises(sqs.exceptions.TooManyEntriesInBatchRequest) as too_many:
        sqs.send_message_batch(QueueUrl=queue_url, Entries=eleven)
    assert too_many.value.response["Error"]["Code"] == "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"
    assert "You have sent 11" in too_many.value.response["Error"]["Message"]

    twins = refused([{"Id": "same", "MessageBody": "a"}, {"Id": "same", "MessageBody": "b"}])
    assert twins.response["Error"]["Code"] == "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"
    assert "Id same repeated" in twins.response["Error"]["Message"]
    bad_id = refused([{"Id": "has space", "MessageBody": "a"}])
    assert bad_id.response["Error"]["Code"] == "AWS.SimpleQueueService.InvalidBatchEntryId"
    assert (
        refused([{"Id": "x" * 81, "MessageBody": "a"}])
        .response["Error"]["Code"]
        .endswith("InvalidBatchEntryId")
    )
    empty = refused([])
    assert empty.response["Error"]["Code"] == "AWS.SimpleQueueService.EmptyBatchRequest"

    # Two messages of 600 KiB: each is under SQS's 1 MiB, together they are over it.
    half = "x" * (600 * 1024)
    too_long = refused([{"Id": "a", "MessageBody": half}, {"Id": "b", "MessageBody": half}])
    assert too_long.response["Error"]["Code"] == "AWS.SimpleQueueService.BatchRequestTooLong"
    assert "1228800 bytes" in too_long.response["Error"]["Message"]

    with pytest.raises(ClientError) as not_distinct:
        sqs.delete_message_batch(
            QueueUrl=queue_url, Entries=[{"Id": "a", "ReceiptHandle": "r"}, {"Id": "a", "ReceiptHandle": "s"}]
        )
    assert not_distinct.value.response["Error"]["Code"].endswith("BatchEntryIdsNotDistinct")
    with pytest.raises(sqs.exceptions.TooManyEntriesInBatchRequest):
        sqs.change_message_visibility_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": f"c{i}", "ReceiptHandle": "r", "VisibilityTimeout": 0} for i in range(11)],
        )
    assert counts(sqs, queue_url) == (0, 0)  # nothing of a refused batch was sent


def test_one_bad_entry_fails_alone(sqs, queue_url: str) -> None:
    answer = sqs.send_message_batch(
        QueueUrl=queue_url,
        Entries=[
            {"Id": "good", "MessageBody": "fine"},
            {"Id": "bell", "MessageBody": "bell \x07"},
            {"Id": "late", "MessageBody": "fine", "DelaySeconds": 901},
        ],
    )
    assert [s["Id"] for s in answer["Successful"]] == ["good"]
    failed = {f["Id"]: f for f in answer["Failed"]}
    assert failed["bell"]["Code"] == "InvalidMessageContents" and failed["bell"]["SenderFault"] is True
    assert "U+0007" in failed["bell"]["Message"]
    assert failed["late"]["Code"] == "InvalidParameterValue" and "DelaySeconds" in failed["late"]["Message"]
    assert counts(sqs, queue_url) == (1, 0)


@pytest.mark.slow
def test_delete_message_batch_one_good_one_bogus_and_a_stale_lease(sqs, queue_url: str) -> None:
    sqs.send_message_batch(
        QueueUrl=queue_url,
        Entries=[{"Id": "a", "MessageBody": "first"}, {"Id": "b", "MessageBody": "second"}],
    )
    first, second = sorted(receive_all(sqs, queue_url, 2), key=lambda m: m["Body"])
    answer = sqs.delete_message_batch(
        QueueUrl=queue_url,
        Entries=[
            {"Id": "good", "ReceiptHandle": first["ReceiptHandle"]},
            {"Id": "bogus", "ReceiptHandle": "not-a-receipt"},
        ],
    )
    assert answer["Successful"] == [{"Id": "good"}]
    [failed] = answer["Failed"]
    assert (
        failed["Id"] == "bogus"
        and failed["Code"] == "ReceiptHandleIsInvalid"
        and failed["SenderFault"] is True
    )
    assert counts(sqs, queue_url) == (0, 1)

    # Fencing as for DeleteMessage: once the lease is released and the message received again, the old receipt
    # is refused and only the current one deletes.
    sqs.change_message_visibility(
        QueueUrl=queue_url, ReceiptHandle=second["ReceiptHandle"], VisibilityTimeout=0
    )
    [again] = receive_all(sqs, queue_url, 1)
    answer = sqs.delete_message_batch(
        QueueUrl=queue_url,
        Entries=[
            {"Id": "stale", "ReceiptHandle": second["ReceiptHandle"]},
            {"Id": "current", "ReceiptHandle": again["ReceiptHandle"]},
        ],
    )
    assert answer["Successful"] == [{"Id": "current"}]
    assert [(f["Id"], f["Code"]) for f in answer["Failed"]] == [("stale", "ReceiptHandleIsInvalid")]
    assert "stale lease" in answer["Failed"][0]["Message"]
    assert counts(sqs, queue_url) == (0, 0)


def test_change_message_visibility_batch(sqs, queue_url: str) -> None:
    sqs.send_message_batch(
        QueueUrl=queue_url, Entries=[{"Id": name, "MessageBody": name} for name in ("release", "keep")]
    )
    held = {m["Body"]: m for m in receive_all(sqs, queue_url, 2)}
    answer = sqs.change_message_visibility_batch(
        QueueUrl=queue_url,
        Entries=[
            {"Id": "r", "ReceiptHandle": held["release"]["ReceiptHandle"], "VisibilityTimeout": 0},
            {"Id": "k", "ReceiptHandle": held["keep"]["ReceiptHandle"], "VisibilityTimeout": 600},
            {"Id": "bogus", "ReceiptHandle": "nope", "VisibilityTimeout": 30},
            {"Id": "range", "ReceiptHandle": held["keep"]["ReceiptHandle"], "VisibilityTimeout": 43_201},
        ],
    )
    assert answer["Successful"] == [{"Id": "r"}, {"Id": "k"}]
    failed = {f["Id"]: f["Code"] for f in answer["Failed"]}
    assert failed == {"bogus": "ReceiptHandleIsInvalid", "range": "InvalidParameterValue"}
    # Only the released message comes back; the kept one stays hidden for 600 s.
    [back] = receive_all(sqs, queue_url, 2)
    assert back["Body"] == "release"
    assert counts(sqs, queue_url) == (0, 2)


@pytest.mark.slow
def test_purge_queue_empties_it_and_a_second_purge_within_60s_is_refused(sqs, queue_url: str) -> None:
    sqs.send_message_batch(
        QueueUrl=queue_url, Entries=[{"Id": f"m{i}", "MessageBody": str(i)} for i in range(4)]
    )
    [in_flight] = sqs.receive_message(QueueUrl=queue_url)["Messages"]
    assert counts(sqs, queue_url) == (3, 1)

    sqs.purge_queue(QueueUrl=queue_url)
    assert counts(sqs, queue_url) == (0, 0)  # visible and in-flight messages alike
    with pytest.raises(ClientError) as gone:
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=in_flight["ReceiptHandle"])
    assert gone.value.response["Error"]["Code"] == "ReceiptHandleIsInvalid"

    sqs.send_message(QueueUrl=queue_url, MessageBody="after the purge")
    with pytest.raises(sqs.exceptions.PurgeQueueInProgress) as again:
        sqs.purge_queue(QueueUrl=queue_url)
    assert again.value.response["Error"]["Code"] == "AWS.SimpleQueueService.PurgeQueueInProgress"
    assert "every 60 seconds" in again.value.response["Error"]["Message"]
    assert counts(sqs, queue_url) == (1, 0)  # the refused purge deleted nothing
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.purge_queue(QueueUrl=queue_url + "-missing")


def test_the_purge_window_is_60_seconds_per_queue(tmp_path: Path) -> None:
    now = [1000.0]
    api = SqsApi(tmp_path / "queue.db", region="us-east-1", account="000000000000", clock=lambda: now[0])
    try:
        endpoint = "http://127.0.0.1:1"
        urls = [api.handle("CreateQueue", {"QueueName": name}, endpoint)["QueueUrl"] for name in ("a", "b")]
        api.handle("PurgeQueue", {"QueueUrl": urls[0]}, endpoint)
        api.handle("PurgeQueue", {"QueueUrl": urls[1]}, endpoint)  # another queue has its own window
        now[0] += 59.9
        with pytest.raises(AwsError) as refused:
            api.handle("PurgeQueue", {"QueueUrl": urls[0]}, endpoint)
        assert refused.value.code == "PurgeQueueInProgress"
        now[0] += 0.1
        api.handle("SendMessage", {"QueueUrl": urls[0], "MessageBody": "x"}, endpoint)
        assert api.handle("PurgeQueue", {"QueueUrl": urls[0]}, endpoint) == {}
        assert api.handle("ReceiveMessage", {"QueueUrl": urls[0]}, endpoint) == {}
    finally:
        api.close()


@pytest.mark.slow
def test_the_query_protocol_batch_actions(server: str, sqs, queue_url: str) -> None:
    root = query(
        server,
        {
            "Action": "SendMessageBatch",
            "QueueUrl": queue_url,
            "SendMessageBatchRequestEntry.1.Id": "one",
            "SendMessageBatchRequestEntry.1.MessageBody": "first",
            "SendMessageBatchRequestEntry.1.MessageAttribute.1.Name": "source",
            "SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.DataType": "String",
            "SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.StringValue": "legacy",
            "SendMessageBatchRequestEntry.2.Id": "two",
            "SendMessageBatchRequestEntry.2.MessageBody": "second",
            "SendMessageBatchRequestEntry.2.DelaySeconds": "0",
        },
    )
    sent = root.findall("sqs:SendMessageBatchResult/sqs:SendMessageBatchResultEntry", NS)
    assert [e.find("sqs:Id", NS).text for e in sent] == ["one", "two"]
    assert sent[0].find("sqs:MD5OfMessageBody", NS).text == md5("first")
    assert sent[0].find("sqs:MD5OfMessageAttributes", NS) is not None
    messages = receive_all(sqs, queue_url, 2)
    assert {m["Body"] for m in messages} == {"first", "second"}
    assert [m["MessageAttributes"]["source"]["StringValue"] for m in messages if m["Body"] == "first"] == [
        "legacy"
    ]

    root = query(
        server,
        {
            "Action": "DeleteMessageBatch",
            "QueueUrl": queue_url,
            "DeleteMessageBatchRequestEntry.1.Id": "good",
            "DeleteMessageBatchRequestEntry.1.ReceiptHandle": messages[0]["ReceiptHandle"],
            "DeleteMessageBatchRequestEntry.2.Id": "bogus",
            "DeleteMessageBatchRequestEntry.2.ReceiptHandle": "nope",
        },
    )
    result = root.find("sqs:DeleteMessageBatchResult", NS)
    assert [e.find("sqs:Id", NS).text for e in result.findall("sqs:DeleteMessageBatchResultEntry", NS)] == [
        "good"
    ]
    [error] = result.findall("sqs:BatchResultErrorEntry", NS)
    assert error.find("sqs:Code", NS).text == "ReceiptHandleIsInvalid"
    assert error.find("sqs:SenderFault", NS).text == "true"

    root = query(
        server,
        {
            "Action": "ChangeMessageVisibilityBatch",
            "QueueUrl": queue_url,
            "ChangeMessageVisibilityBatchRequestEntry.1.Id": "release",
            "ChangeMessageVisibilityBatchRequestEntry.1.ReceiptHandle": messages[1]["ReceiptHandle"],
            "ChangeMessageVisibilityBatchRequestEntry.1.VisibilityTimeout": "0",
        },
    )
    result = root.find("sqs:ChangeMessageVisibilityBatchResult", NS)
    assert [e.find("sqs:Id", NS).text for e in result] == ["release"]
    assert counts(sqs, queue_url) == (1, 0)

    too_many = {"Action": "DeleteMessageBatch", "QueueUrl": queue_url}
    for i in range(1, 12):
        too_many[f"DeleteMessageBatchRequestEntry.{i}.Id"] = f"e{i}"
        too_many[f"DeleteMessageBatchRequestEntry.{i}.ReceiptHandle"] = "r"
    error = query(server, too_many)
    assert error.find("sqs:Error/sqs:Code", NS).text == "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"

    assert query(server, {"Action": "PurgeQueue", "QueueUrl": queue_url}).tag.endswith("PurgeQueueResponse")
    assert counts(sqs, queue_url) == (0, 0)
    error = query(server, {"Action": "PurgeQueue", "QueueUrl": queue_url})
    assert error.find("sqs:Error/sqs:Code", NS).text == "AWS.SimpleQueueService.PurgeQueueInProgress"


@pytest.mark.slow
def test_aws_cli_send_message_batch(server: str, sqs, queue_url: str, root: Path) -> None:
    entries = root / "entries.json"
    entries.write_text(
        json.dumps([{"Id": "a", "MessageBody": "from the cli"}, {"Id": "b", "MessageBody": "and again"}])
    )
    args = ["sqs", "send-message-batch", "--queue-url", queue_url, "--entries", f"file://{entries}"]
    answer = aws_cli(server, root, KEY, SECRET, *args)
    assert [s["Id"] for s in answer["Successful"]] == ["a", "b"] and not answer.get("Failed")
    assert {m["Body"] for m in receive_all(sqs, queue_url, 2)} == {"from the cli", "and again"}


def test_the_library_queue_sees_what_the_batch_sent(sqs, queue_url: str, root: Path) -> None:
    sqs.send_message_batch(QueueUrl=queue_url, Entries=[{"Id": "x", "MessageBody": "shared file"}])
    name = queue_url.rsplit("/", 1)[-1]
    library = open_queue(f"sqlite:///{root}/queue.db?queue={name}")
    try:
        [message] = library.receive()
        assert message.body == "shared file"
        library.delete(message)
    finally:
        library.close()
