"""`batchlane queue send --queue-url` against moto's SQS and S3 (AWS_ENDPOINT_URL), as a user sends to the queue that
`deploy aws` printed: the message arrives as sent; an empty input prefix, a bad URL or a missing queue is one line.
"""

from __future__ import annotations

import json
import uuid

import boto3
import pytest

from tests.integration.aws.test_deploy import run_cli


@pytest.fixture()
def sqs(moto_server: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    return boto3.client("sqs", endpoint_url=moto_server, region_name="us-east-1")


def received(sqs, url: str) -> list[dict]:
    return sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])


def test_send_to_a_queue_url_checks_the_input_prefix_first(
    sqs, moto_server: str, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"jobs-{uuid.uuid4().hex[:8]}"
    sqs.create_queue(QueueName=name)
    # The URL as CloudFormation's output gives it (AWS's host); AWS_ENDPOINT_URL sends it to moto.
    url = f"https://sqs.us-east-1.amazonaws.com/123456789012/{name}"
    boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1").put_object(
        Bucket=s3_bucket, Key="input/a.txt", Body=b"one\ntwo\n"
    )
    seed = [
        "--instance-type", "ml.m5.xlarge", "--instance-count", "2", "--queue-url", url, "--json",
    ]  # fmt: skip

    code, out, err = run_cli(
        [
            "queue",
            "send",
            "--input-path",
            f"s3://{s3_bucket}/input/",
            "--output-path",
            f"s3://{s3_bucket}/out/",
            *seed,
        ],
        capsys,
    )

    assert code == 0, err
    answer = json.loads(out)
    [message] = received(sqs, url)
    assert message["MessageId"] == answer["message_id"]
    assert json.loads(message["Body"]) == {
        "input_path": f"s3://{s3_bucket}/input/",
        "output_path": f"s3://{s3_bucket}/out/",
        "instance_type": "ml.m5.xlarge",
        "instance_count": 2,
    }

    code, out, err = run_cli(
        [
            "queue",
            "send",
            "--input",
            f"s3://{s3_bucket}/nothing/",
            "--output",
            f"s3://{s3_bucket}/out/",
            *seed,
        ],
        capsys,
    )
    assert code == 2
    assert err == f"error: input_path 's3://{s3_bucket}/nothing/': no input objects at or under this prefix\n"
    assert received(sqs, url) == []  # nothing was sent


def test_bad_queue_urls_are_one_line_errors(sqs, s3_bucket: str, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["queue", "send", "--input", f"s3://{s3_bucket}/in/", "--output", f"s3://{s3_bucket}/out/"]
    base += ["--instance-type", "ml.m5.xlarge", "--skip-input-check"]

    code, _, err = run_cli([*base, "--queue-url", "jobs"], capsys)
    assert (
        code == 2 and err.startswith("error: --queue-url must be an SQS queue URL") and err.count("\n") == 1
    )

    code, _, err = run_cli([*base, "--queue-url", "https://x/1/jobs", "--queue", "jobs"], capsys)
    assert (code, err) == (2, "error: give either --queue or --queue-url, not both\n")

    missing = f"https://sqs.us-east-1.amazonaws.com/123456789012/missing-{uuid.uuid4().hex[:8]}"
    code, _, err = run_cli([*base, "--queue-url", missing], capsys)
    assert code != 0 and err.startswith("error: ") and err.count("\n") == 1 and "missing-" in err
