"""The Lambda handler called directly with synthetic SQS events, against moto's SageMaker, SQS and S3
(docs/reliability.md): duplicates and reordered keys give one job, bad messages are parked with reasons and not retried, an
unreachable SageMaker fails only the records that need it. Plus the CloudFormation template, checked by cfn-lint.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from batchlane.aws import TEMPLATE_PATH
from batchlane.aws.lambda_handler import handler
from batchlane.errors import ValidationError
from batchlane.queue.launcher import build_request, job_name_for_attempt
from batchlane.queue.message import job_name_for, parse_message
from batchlane.queue.sqs import ATTR_ORIGINAL_ID, ATTR_REASON
from batchlane.testing import free_port
from tests.integration.queue.worker_support import reordered, seed_body


class Aws:
    """moto-backed clients plus the function's environment for one test (unique model, queue and bucket)."""

    def __init__(self, endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.bucket = bucket
        self.sagemaker = boto3.client("sagemaker", endpoint_url=endpoint, region_name="us-east-1")
        self.sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.put_object(Bucket=bucket, Key="in/part-1.csv", Body=b"alpha\nbeta\n")
        self.dlq_url = self.sqs.create_queue(QueueName=f"jobs-{uuid.uuid4().hex[:8]}-dlq")["QueueUrl"]
        self.model = f"model-{uuid.uuid4().hex[:8]}"
        self.env = {
            "AWS_ENDPOINT_URL_SAGEMAKER": endpoint,
            "AWS_ENDPOINT_URL_SQS": endpoint,
            "AWS_ENDPOINT_URL_S3": endpoint,
            "BATCHLANE_MODEL_NAME": self.model,
            "BATCHLANE_MODEL_IMAGE": "123456789012.dkr.ecr.us-east-1.amazonaws.com/classifier:1",
            "BATCHLANE_MODEL_DATA_URL": f"s3://{bucket}/models/model.tar.gz",
            "BATCHLANE_EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/sagemaker",
            "BATCHLANE_DLQ_URL": self.dlq_url,
            "BATCHLANE_DEFAULT_CONTENT_TYPE": "text/csv",
            "BATCHLANE_DEFAULT_SPLIT_TYPE": "Line",
        }
        for key, value in self.env.items():
            monkeypatch.setenv(key, value)

    def body(self, **extra: Any) -> str:
        return seed_body(f"s3://{self.bucket}/in/", f"s3://{self.bucket}/out/", **extra)

    def jobs(self, name: str) -> list[dict[str, Any]]:
        return self.sagemaker.list_transform_jobs(NameContains=name)["TransformJobSummaries"]

    def dead_letters(self) -> dict[str, dict[str, str]]:
        """{original message id: {"reason": …, "body": …}} of everything in the dead-letter queue."""
        found: dict[str, dict[str, str]] = {}
        while True:
            batch = self.sqs.receive_message(
                QueueUrl=self.dlq_url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=60,
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not batch:
                return found
            for message in batch:
                attrs = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
                found[attrs[ATTR_ORIGINAL_ID]] = {"reason": attrs[ATTR_REASON], "body": message["Body"]}


@pytest.fixture()
def aws(moto_server: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    yield Aws(moto_server, s3_bucket, monkeypatch)


def sqs_event(*bodies: str, attributes: dict[str, str] | None = None) -> dict[str, Any]:
    """What the event source mapping hands the function: one record per body, each with its own messageId."""
    now = str(int(time.time() * 1000))
    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": uuid.uuid4().hex,
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": now},
                "messageAttributes": {
                    k: {"stringValue": v, "dataType": "String"} for k, v in (attributes or {}).items()
                },
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:jobs",
                "awsRegion": "us-east-1",
            }
            for body in bodies
        ]
    }


def ids(event: dict[str, Any]) -> list[str]:
    return [record["messageId"] for record in event["Records"]]


def test_one_job_for_duplicates_and_reordered_keys_across_invocations(aws: Aws) -> None:
    body = aws.body()
    name = job_name_for(body)
    assert handler(sqs_event(body, body, reordered(body)), None) == {"batchItemFailures": []}
    [summary] = aws.jobs(name)
    created = summary["CreationTime"]
    assert handler(sqs_event(reordered(body)), None) == {"batchItemFailures": []}  # a later redelivery

    [again] = aws.jobs(name)
    assert again["CreationTime"] == created  # found, not created again (moto would silently replace it)
    job = aws.sagemaker.describe_transform_job(TransformJobName=name)
    assert job["ModelName"] == aws.model
    assert job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{aws.bucket}/in/"
    assert (job["TransformInput"]["ContentType"], job["TransformInput"]["SplitType"]) == ("text/csv", "Line")
    assert job["TransformOutput"] == {
        "S3OutputPath": f"s3://{aws.bucket}/out/",
        "Accept": "application/json",  # the seed's default: BATCHLANE_DEFAULT_ACCEPT is not set here
        "AssembleWith": "Line",
    }
    assert job["TransformResources"] == {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1}
    model = aws.sagemaker.describe_model(ModelName=aws.model)  # created because it was missing
    assert model["PrimaryContainer"]["ModelDataUrl"] == aws.env["BATCHLANE_MODEL_DATA_URL"]
    assert aws.dead_letters() == {}


def test_bad_messages_are_parked_with_their_reasons_and_not_retried(aws: Aws) -> None:
    bad = {
        aws.body(instance_count=True): "instance_count: must be an integer, not a boolean",
        aws.body(instance_count=0): "instance_count: must be between 1 and 100",
        aws.body(instance_type="local"): "SageMaker needs an ml.* instance type",
        seed_body("/data/in/", f"s3://{aws.bucket}/out/"): "SageMaker reads and writes only s3:// URIs",
        seed_body(
            "https://169.254.169.254/latest/", f"s3://{aws.bucket}/out/"
        ): "http(s) URLs are not fetched",
        seed_body(f"s3://{aws.bucket}/in/../../etc/", f"s3://{aws.bucket}/out/"): "'..' path segments",
        seed_body(f"s3://{aws.bucket}/in", f"s3://{aws.bucket}/in-results/"): "is inside input_path",
        seed_body(f"s3://{aws.bucket}/nothing-here/", f"s3://{aws.bucket}/out/"): "no input objects",
        aws.body(model_name="missing-model"): "model missing-model does not exist",
        aws.body(priority="high"): "priority: unknown field",
        json.dumps({"input_path": f"s3://{aws.bucket}/in/"}): "output_path: is required",
        "not json": "message is not valid JSON",
    }
    event = sqs_event(*bad)

    assert handler(event, None) == {"batchItemFailures": []}  # parked, so SQS must not deliver them again

    parked = aws.dead_letters()
    assert set(parked) == set(ids(event))
    for record, expected in zip(event["Records"], bad.values(), strict=True):
        assert expected in parked[record["messageId"]]["reason"]
        assert parked[record["messageId"]]["body"] == record["body"]
    for body in bad:
        try:
            name = job_name_for(body)
        except ValidationError:
            continue
        assert aws.jobs(name) == []  # no job was started for any of them


def test_unreachable_sagemaker_fails_only_the_records_that_need_it(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", f"http://127.0.0.1:{free_port()}")  # nothing listens
    event = sqs_event(aws.body(), aws.body(instance_count=True))

    answer = handler(event, None)

    good, poison = ids(event)
    assert answer == {"batchItemFailures": [{"itemIdentifier": good}]}
    assert set(aws.dead_letters()) == {poison}


def test_drifted_model_and_conflicting_job_are_conflicts_not_reuses(aws: Aws) -> None:
    aws.sagemaker.create_model(
        ModelName=aws.model,
        PrimaryContainer={"Image": "other:2", "ModelDataUrl": aws.env["BATCHLANE_MODEL_DATA_URL"]},
        ExecutionRoleArn=aws.env["BATCHLANE_EXECUTION_ROLE_ARN"],
    )
    drifted = sqs_event(aws.body())
    assert handler(drifted, None) == {"batchItemFailures": []}
    [reason] = [v["reason"] for v in aws.dead_letters().values()]
    assert (
        f"model {aws.model} already exists with a different spec: PrimaryContainer.Image ('other:2'" in reason
    )

    other = f"model-{uuid.uuid4().hex[:8]}"
    aws.sagemaker.create_model(
        ModelName=other,
        PrimaryContainer={"Image": "x:1"},
        ExecutionRoleArn=aws.env["BATCHLANE_EXECUTION_ROLE_ARN"],
    )
    job_name = f"fixed-{uuid.uuid4().hex[:8]}"
    first = sqs_event(aws.body(model_name=other, job_name=job_name))
    second = sqs_event(aws.body(model_name=other, job_name=job_name, instance_count=2))
    assert handler(first, None) == handler(second, None) == {"batchItemFailures": []}
    [reason] = [v["reason"] for k, v in aws.dead_letters().items() if k == ids(second)[0]]
    assert f"transform job {job_name} already exists with a different spec" in reason
    assert "TransformResources.InstanceCount (1 → 2)" in reason
    assert len(aws.jobs(job_name)) == 1


def test_without_a_dead_letter_url_permanent_failures_are_left_to_the_redrive_policy(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BATCHLANE_DLQ_URL")
    event = sqs_event(aws.body(instance_count=True), aws.body(), attributes={"batchlane-attempt": "2"})
    poison, good = ids(event)

    assert handler(event, None) == {"batchItemFailures": [{"itemIdentifier": poison}]}

    assert aws.dead_letters() == {}
    assert len(aws.jobs(job_name_for_attempt(parse_message(aws.body()), 2))) == 1  # attempt 2's own name


def test_a_misconfigured_function_says_what_to_set(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BATCHLANE_MODEL_IMAGE")  # the default model is missing and cannot be created
    event = sqs_event(aws.body())
    assert handler(event, None) == {"batchItemFailures": []}
    [letter] = aws.dead_letters().values()
    assert "cannot create it: set BATCHLANE_MODEL_IMAGE" in letter["reason"]

    monkeypatch.setenv(
        "BATCHLANE_DEFAULT_SPLIT_TYPE", "Lines"
    )  # no record can be handled until this is fixed
    event = sqs_event(aws.body(), aws.body(instance_count=2))
    assert handler(event, None) == {"batchItemFailures": [{"itemIdentifier": i} for i in ids(event)]}


@pytest.mark.slow
def test_template_passes_cfn_lint_and_keeps_the_seed_queue_settings() -> None:
    cfnlint = pytest.importorskip("cfnlint.api")
    import yaml

    text = TEMPLATE_PATH.read_text()
    problems = [m for m in cfnlint.lint_all(text) if m.rule.id[0] in "EW"]
    assert problems == [], [str(p) for p in problems]
    # The lint is meaningful: a visibility timeout below the function timeout is caught (E3505).
    broken = text.replace("VisibilityTimeout: 900", "VisibilityTimeout: 60")
    assert "E3505" in {m.rule.id for m in cfnlint.lint_all(broken)}

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    resources = yaml.load(text, Loader=Loader)["Resources"]  # noqa: S506 - a SafeLoader subclass
    queue = resources["JobsQueue"]["Properties"]
    function = resources["LauncherFunction"]["Properties"]
    mapping = resources["LauncherEventSource"]["Properties"]
    assert queue["RedrivePolicy"]["maxReceiveCount"] == 5
    assert queue["VisibilityTimeout"] >= 6 * function["Timeout"] + mapping["MaximumBatchingWindowInSeconds"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert function["Handler"] == "batchlane.aws.lambda_handler.handler"
    assert set(function["Environment"]["Variables"]) <= set(_settings_names())


def _settings_names() -> set[str]:
    from batchlane import settings

    return {value for name, value in vars(settings).items() if name.isupper() and isinstance(value, str)}


def test_seed_message_gets_the_seed_lambdas_request_without_default_settings(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BATCHLANE_DEFAULT_CONTENT_TYPE")
    monkeypatch.delenv("BATCHLANE_DEFAULT_SPLIT_TYPE")
    body = aws.body()
    name = job_name_for(body)

    assert handler(sqs_event(body), None) == {"batchItemFailures": []}
    assert handler(sqs_event(reordered(body)), None) == {"batchItemFailures": []}  # no conflict with itself

    job = aws.sagemaker.describe_transform_job(TransformJobName=name)
    assert (job["TransformInput"]["ContentType"], job["TransformInput"]["SplitType"]) == (
        "text/plain",
        "Line",
    )
    assert (job["TransformOutput"]["Accept"], job["TransformOutput"]["AssembleWith"]) == (
        "application/json",
        "Line",
    )
    assert (job["BatchStrategy"], job["MaxPayloadInMB"]) == ("MultiRecord", 6)
    # The queue worker builds the same request from the same message (one function for both).
    worker_request = build_request(parse_message(body), job_name=name, model_name=aws.model)
    assert {k: v for k, v in job.items() if k in worker_request} == worker_request
    assert len(aws.jobs(name)) == 1 and aws.dead_letters() == {}

    # The message's own fields win over the defaults.
    csv_body = aws.body(content_type="text/csv", accept="text/csv", strategy="SingleRecord")
    assert handler(sqs_event(csv_body), None) == {"batchItemFailures": []}
    job = aws.sagemaker.describe_transform_job(TransformJobName=job_name_for(csv_body))
    assert (job["TransformInput"]["ContentType"], job["TransformOutput"]["Accept"]) == (
        "text/csv",
        "text/csv",
    )
    assert job["BatchStrategy"] == "SingleRecord"


def test_a_message_whose_model_was_missing_starts_its_job_when_resent_after_the_model_exists(
    aws: Aws,
) -> None:
    body = aws.body(model_name=f"later-{uuid.uuid4().hex[:8]}")
    first = sqs_event(body)
    assert handler(first, None) == {"batchItemFailures": []}
    [letter] = aws.dead_letters().values()
    assert "does not exist in SageMaker" in letter["reason"]
    assert aws.jobs(job_name_for(body)) == []

    aws.sagemaker.create_model(
        ModelName=parse_message(body).model_name,
        PrimaryContainer={"Image": "x:1"},
        ExecutionRoleArn=aws.env["BATCHLANE_EXECUTION_ROLE_ARN"],
    )
    assert handler(sqs_event(letter["body"]), None) == {"batchItemFailures": []}
    assert [j["TransformJobName"] for j in aws.jobs(job_name_for(body))] == [job_name_for(body)]


def test_a_message_sent_after_its_job_failed_starts_the_next_attempt(aws: Aws) -> None:
    from moto.sagemaker.models import sagemaker_backends

    body = aws.body()
    name = job_name_for(body)
    original = sqs_event(body)  # sent now, before its job exists
    assert handler(original, None) == {"batchItemFailures": []}
    # moto completes every job at once; SageMaker would report this failure itself (moto's state, not ours).
    moto_job = sagemaker_backends["123456789012"]["us-east-1"].transform_jobs[name]
    moto_job.transform_job_status = "Failed"
    moto_job.failure_reason = "ClientError: 415 the request has no Content-Type"

    assert handler(original, None) == {"batchItemFailures": []}  # a redelivery finds its Failed job
    assert [j["TransformJobName"] for j in aws.jobs(name)] == [name]

    time.sleep(0.01)  # SentTimestamp has millisecond resolution
    assert handler(sqs_event(body), None) == {"batchItemFailures": []}  # re-sent after the fix
    retry = job_name_for_attempt(parse_message(body), 1)
    assert sorted(j["TransformJobName"] for j in aws.jobs(name)) == [name, retry]
    assert handler(sqs_event(body), None) == {"batchItemFailures": []}  # and again: retry is not Failed
    assert len(aws.jobs(name)) == 2 and aws.dead_letters() == {}
