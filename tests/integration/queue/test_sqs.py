"""The SQS backend against moto's server on a loopback port: the same Protocol, SQS's own semantics.

Visibility expiry uses a real 1-second timeout (moto keeps real time). Where SQS differs from the embedded queue
(no fencing, no recorded nack reason), the tests pin the documented difference.
"""

from __future__ import annotations

import time
import uuid

import pytest

from batchlane.errors import NotFound, PayloadTooLarge, ValidationError
from batchlane.queue import Queue, create_queue, open_queue
from batchlane.queue.base import MAX_BODY_BYTES
from batchlane.queue.sqs import SqsQueue, ensure_queue


@pytest.fixture()
def sqs_env(moto_server: str, aws_env: dict[str, str]) -> dict[str, str]:
    return {**aws_env, "AWS_ENDPOINT_URL_SQS": moto_server}


@pytest.fixture()
def queue(sqs_env: dict[str, str]) -> SqsQueue:
    q = ensure_queue(f"jobs-{uuid.uuid4().hex[:8]}", env=sqs_env)
    yield q
    q.close()


def test_ensure_queue_creates_the_queue_and_its_dlq_with_the_seed_settings(
    queue: SqsQueue, sqs_env: dict[str, str]
) -> None:
    assert isinstance(queue, Queue)
    attrs = queue.attributes()
    settings = (attrs["visibility_timeout_s"], attrs["max_receive_count"], attrs["retention_s"])
    assert settings == (900, 5, 345_600)
    assert attrs["dead_letter_queue"] == f"{queue.name}-dlq" and attrs["oldest_age_s"] is None
    dlq = queue.dead_letter_queue
    assert dlq is not None and dlq.attributes()["retention_s"] == 14 * 86_400
    # Idempotent, and it updates settings.
    again = ensure_queue(queue.name, visibility_timeout=60, max_receive_count=3, env=sqs_env)
    assert again.url == queue.url
    assert (again.attributes()["visibility_timeout_s"], again.attributes()["max_receive_count"]) == (60, 3)


def test_send_receive_delete(queue: SqsQueue) -> None:
    message_id = queue.send('{"a": 1}', attributes={"origin": "test"})
    [message] = queue.receive(wait_s=1)
    assert (message.message_id, message.body, message.receive_count) == (message_id, '{"a": 1}', 1)
    assert message.attributes == {"origin": "test"}
    assert abs(message.sent_at - time.time()) < 60 and message.first_received_at is not None
    assert queue.receive() == []
    assert (queue.attributes()["visible"], queue.attributes()["in_flight"]) == (0, 1)
    queue.delete(message)
    assert (queue.attributes()["visible"], queue.attributes()["in_flight"]) == (0, 0)


def test_visibility_expiry_redelivers_and_a_stale_receipt_still_deletes(queue: SqsQueue) -> None:
    """SQS semantics, unlike the embedded queue: no fencing (docs/reliability.md)."""
    queue.send("m")
    [first] = queue.receive(visibility_timeout_s=1)
    time.sleep(1.2)
    [second] = queue.receive(visibility_timeout_s=30)
    assert second.message_id == first.message_id and second.receive_count == 2
    queue.delete(first)  # the zombie's receipt: SQS (moto) accepts it and deletes the message the other holds
    assert queue.attributes()["in_flight"] == 0 and queue.attributes()["visible"] == 0


def test_heartbeat_keeps_the_message_hidden_and_nack_releases_it(queue: SqsQueue) -> None:
    queue.send("m")
    [message] = queue.receive(visibility_timeout_s=1)
    queue.change_visibility(message, 30)
    time.sleep(1.2)
    assert queue.receive() == []
    queue.nack(message, "transient")
    [again] = queue.receive()
    assert again.receive_count == 2
    queue.delete(again)


def test_poison_message_moves_to_the_dlq_after_5_receives(queue: SqsQueue) -> None:
    message_id = queue.send("poison")
    for attempt in range(1, 6):
        [message] = queue.receive()
        assert message.receive_count == attempt
        queue.nack(message, "model crashed")
    assert queue.receive() == []
    [letter] = queue.list_dead_letters()
    assert letter.message_id == message_id and letter.body == "poison"
    assert letter.reason.startswith("maxReceiveCount exceeded") and letter.attempts == 5
    # Listing releases what it received: the letter is still there and visible.
    assert [d.message_id for d in queue.list_dead_letters()] == [message_id]
    assert queue.attributes()["dead_letters"] == 1


def test_permanent_error_dead_letters_at_once_with_reason(queue: SqsQueue) -> None:
    queue.send('{"instance_count": true}')
    [message] = queue.receive()
    dead_id = queue.dead_letter(message.receipt, "invalid message: instance_count: not a boolean")
    assert queue.attributes()["visible"] == 0 and queue.attributes()["in_flight"] == 0
    [letter] = queue.list_dead_letters()
    assert letter.message_id == dead_id and letter.attempts == 1 and letter.source_queue == queue.name
    assert letter.reason == "invalid message: instance_count: not a boolean"
    with pytest.raises(ValidationError, match="needs the Message"):
        queue.dead_letter("unknown-receipt", "x")


def test_redrive_resets_the_receive_count(queue: SqsQueue) -> None:
    for body in ("a", "b"):
        queue.send(body)
    for message in queue.receive(10):
        queue.dead_letter(message, f"bad {message.body}")
    letters = {d.body: d.message_id for d in queue.list_dead_letters()}
    assert set(letters) == {"a", "b"}
    with pytest.raises(NotFound, match="no-such-id"):
        queue.redrive(["no-such-id"])
    [moved] = queue.redrive([letters["a"]])
    [message] = queue.receive()
    assert message.message_id == moved and message.body == "a" and message.receive_count == 1
    assert message.attributes["batchlane-redrive-count"] == "1"
    assert "batchlane-dead-letter-reason" not in message.attributes
    assert [d.body for d in queue.list_dead_letters()] == ["b"]
    assert len(queue.redrive()) == 1 and queue.list_dead_letters() == []


def test_open_queue_by_name_and_url(queue: SqsQueue, sqs_env: dict[str, str], moto_server: str) -> None:
    by_name = open_queue(f"sqs://{queue.name}", sqs_env)
    assert isinstance(by_name, SqsQueue) and by_name.url == queue.url
    no_endpoint = {k: v for k, v in sqs_env.items() if k != "AWS_ENDPOINT_URL_SQS"}
    by_url = open_queue(queue.url, no_endpoint)  # moto's queue URL names its server
    by_url.send("x")
    assert by_name.receive()[0].body == "x"
    with pytest.raises(NotFound, match="batchlane queue create"):
        open_queue("sqs://does-not-exist", sqs_env)
    created = create_queue(f"sqs://made-{uuid.uuid4().hex[:6]}", sqs_env, visibility_timeout_s=30)
    assert created.attributes()["visibility_timeout_s"] == 30


def test_limits_are_checked_before_calling_sqs(queue: SqsQueue) -> None:
    with pytest.raises(PayloadTooLarge, match="1048577 bytes"):
        queue.send("x" * (MAX_BODY_BYTES + 1))
    with pytest.raises(ValidationError, match="U\\+0001"):
        queue.send("a\x01")


def test_input_check_on_s3(moto_server: str, aws_env: dict[str, str], s3_bucket: str) -> None:
    import boto3

    from batchlane.queue.message import check_input_exists

    env = {**aws_env, "AWS_ENDPOINT_URL_S3": moto_server}
    with pytest.raises(ValidationError, match="no input objects") as caught:
        check_input_exists(f"s3://{s3_bucket}/in/", env)
    assert caught.value.field == "input_path"
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.put_object(Bucket=s3_bucket, Key="in/part-1.csv", Body=b"a\n")
    assert check_input_exists(f"s3://{s3_bucket}/in/", env) == 1
    assert check_input_exists(f"s3://{s3_bucket}/in/part", env) == 1
    with pytest.raises(ValidationError, match="does not exist"):
        check_input_exists("s3://no-such-bucket-here/in/", env)
