"""The retry function (``batchlane.aws.retry_handler``) on synthetic EventBridge "SageMaker Transform Job State
Change" events, with the launching function (``lambda_handler``) making the jobs, both with real boto3 against moto's
SQS and SageMaker (DescribeTransformJob, ListTags): each Failed event sends exactly one message with the next
attempt, the launcher turns it into ``<job>-r<k>``, and the last attempt is parked with SageMaker's FailureReason.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from batchlane.aws import job_tags
from batchlane.aws.lambda_handler import handler as launch
from batchlane.aws.retry_handler import RETRY_OF_ATTRIBUTE
from batchlane.aws.retry_handler import handler as retry
from batchlane.queue.launcher import job_name_for_attempt
from batchlane.queue.message import parse_message
from batchlane.queue.sqs import ATTR_ATTEMPTS, ATTR_ORIGINAL_ID, ATTR_REASON
from tests.integration.aws.test_lambda_handler import Aws, sqs_event

REASON = "AlgorithmError: model server answered 500 for record 7 of s3://bucket/in/part-1.csv"


@pytest.fixture()
def aws(moto_server: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> Aws:
    return Aws(moto_server, s3_bucket, monkeypatch)


@pytest.fixture()
def queue_url(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> str:
    url = aws.sqs.create_queue(QueueName=f"jobs-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    monkeypatch.setenv("BATCHLANE_QUEUE_URL", url)
    monkeypatch.setenv("BATCHLANE_MAX_ATTEMPTS", "3")
    return url


def failed_event(aws: Aws, job_name: str, status: str = "Failed") -> dict[str, Any]:
    """What EventBridge delivers for a job's state change (detail: DescribeTransformJob's fields)."""
    job = aws.sagemaker.describe_transform_job(TransformJobName=job_name)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "SageMaker Transform Job State Change",
        "source": "aws.sagemaker",
        "account": "123456789012",
        "region": "us-east-1",
        "resources": [job["TransformJobArn"]],
        "detail": {
            "TransformJobName": job_name,
            "TransformJobArn": job["TransformJobArn"],
            "TransformJobStatus": status,
            "FailureReason": REASON,
            "ModelName": job["ModelName"],
        },
    }


def drain(aws: Aws, url: str) -> list[dict[str, Any]]:
    """Every message in the queue (received and deleted), with its attributes as plain strings."""
    found = []
    while True:
        batch = aws.sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        ).get("Messages", [])
        if not batch:
            return found
        for message in batch:
            aws.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            message["Strings"] = {
                k: v["StringValue"] for k, v in message.get("MessageAttributes", {}).items()
            }
            found.append(message)


def as_event(message: dict[str, Any]) -> dict[str, Any]:
    """A received SQS message as the event source mapping hands it to the launching function."""
    return sqs_event(message["Body"], attributes=message["Strings"])


@pytest.mark.slow
def test_failed_jobs_are_retried_with_the_next_attempt_then_parked_with_the_reason(
    aws: Aws, queue_url: str
) -> None:
    body = aws.body()
    base = job_name_for_attempt(parse_message(body), 0)
    assert launch(sqs_event(body), None) == {"batchItemFailures": []}
    job = aws.sagemaker.describe_transform_job(TransformJobName=base)
    tags = aws.sagemaker.list_tags(ResourceArn=job["TransformJobArn"])["Tags"]
    origin = job_tags.origin_from_tags(tags)
    assert origin is not None and origin.attempt == 0
    assert parse_message(origin.body) == parse_message(body)

    for attempt in (1, 2):
        failed = job_name_for_attempt(parse_message(body), attempt - 1)
        outcome = retry(failed_event(aws, failed), None)

        assert outcome["outcome"] == "retried"
        [message] = drain(aws, queue_url)  # exactly one re-try message
        assert message["Strings"]["batchlane-attempt"] == str(attempt)
        assert message["Strings"][RETRY_OF_ATTRIBUTE] == failed
        assert parse_message(message["Body"]) == parse_message(body)
        assert aws.dead_letters() == {}
        # The launcher starts it under the attempt's own name, tagged with that attempt.
        assert launch(as_event(message), None) == {"batchItemFailures": []}
        name = job_name_for_attempt(parse_message(body), attempt)
        assert name == f"{base}-r{attempt}"
        arn = aws.sagemaker.describe_transform_job(TransformJobName=name)["TransformJobArn"]
        retried = job_tags.origin_from_tags(aws.sagemaker.list_tags(ResourceArn=arn)["Tags"])
        assert retried is not None and retried.attempt == attempt

    # The third attempt (BATCHLANE_MAX_ATTEMPTS=3) failed too: parked with SageMaker's reason, not re-sent.
    last = f"{base}-r2"
    assert retry(failed_event(aws, last), None)["outcome"] == "dead_lettered"
    assert drain(aws, queue_url) == []
    [letter] = drain(aws, aws.dlq_url)
    assert letter["Strings"][ATTR_REASON] == f"transform job {last} failed on attempt 3 of 3: {REASON}"
    assert letter["Strings"][ATTR_ATTEMPTS] == "3"
    assert letter["Strings"][ATTR_ORIGINAL_ID] == last
    assert parse_message(letter["Body"]) == parse_message(body)


def test_a_duplicate_event_sends_a_duplicate_that_finds_the_same_job(aws: Aws, queue_url: str) -> None:
    body = aws.body(idempotency_key=f"dup-{uuid.uuid4().hex[:8]}")
    launch(sqs_event(body), None)
    name = job_name_for_attempt(parse_message(body), 0)
    event = failed_event(aws, name)

    retry(event, None)
    retry(event, None)  # EventBridge delivers at least once

    messages = drain(aws, queue_url)
    assert [m["Strings"]["batchlane-attempt"] for m in messages] == ["1", "1"]
    for message in messages:
        assert launch(as_event(message), None) == {"batchItemFailures": []}
    assert sorted(j["TransformJobName"] for j in aws.jobs(name)) == [name, f"{name}-r1"]


def test_other_jobs_and_other_statuses_are_ignored(aws: Aws, queue_url: str) -> None:
    body = aws.body(idempotency_key=f"other-{uuid.uuid4().hex[:8]}")
    launch(sqs_event(body), None)
    name = job_name_for_attempt(parse_message(body), 0)
    assert retry(failed_event(aws, name, status="Completed"), None)["outcome"] == "ignored"

    # A job someone else started (no batchlane tags) is not ours to retry.
    foreign = f"foreign-{uuid.uuid4().hex[:8]}"
    request = aws.sagemaker.describe_transform_job(TransformJobName=name)
    aws.sagemaker.create_transform_job(
        TransformJobName=foreign,
        ModelName=request["ModelName"],
        TransformInput=request["TransformInput"],
        TransformOutput=request["TransformOutput"],
        TransformResources=request["TransformResources"],
        Tags=[{"Key": "team", "Value": "search"}],  # moto's ListTags fails (500) on a job with no tags at all
    )
    assert retry(failed_event(aws, foreign), None)["outcome"] == "ignored"
    assert drain(aws, queue_url) == [] and aws.dead_letters() == {}


def test_a_message_too_large_for_tags_is_parked_when_its_job_fails(aws: Aws, queue_url: str) -> None:
    tags = job_tags.launch_tags("x" * 20_000, 0)
    assert len(tags) == 2 and job_tags.origin_from_tags(tags) == job_tags.JobOrigin(None, 0)
    body = aws.body(idempotency_key="k" * 64)  # fits
    assert len(job_tags.launch_tags(body, 0)) <= 1 + job_tags.MAX_MESSAGE_TAGS
    assert job_tags.origin_from_tags(job_tags.launch_tags(body, 4)) == job_tags.JobOrigin(body, 4)
