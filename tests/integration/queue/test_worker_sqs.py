"""The seed's flow on moto's SQS and S3: boto3 `send_message` → worker → job Completed → outputs in the bucket."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import boto3
import pytest

from batchlane.jobs.state import JobStatus
from batchlane.jobs.store import JobStore
from batchlane.models import ModelSpec
from batchlane.queue.message import job_name_for
from batchlane.queue.sqs import ATTR_REASON, SqsQueue, ensure_queue
from batchlane.queue.worker import Action, Worker
from tests.integration.queue.worker_support import CSV_DEFAULTS, make_model, reordered, seed_body


def test_seed_flow_on_sqs_with_duplicates_and_a_poison_message(
    tmp_path: Path, moto_server: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_server)  # the job runner reads and writes the bucket
    env = {"AWS_ENDPOINT_URL_SQS": moto_server}
    name = f"jobs-{uuid.uuid4().hex[:8]}"
    ensure_queue(name, visibility_timeout=30, max_receive_count=5, env=env)
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.put_object(Bucket=s3_bucket, Key="in/part-1.csv", Body=b"alpha\nbeta\n")
    # The seed's sender, unchanged: plain boto3, the four fields, json.dumps.
    sqs = boto3.client("sqs", endpoint_url=moto_server, region_name="us-east-1")
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    body = seed_body(f"s3://{s3_bucket}/in/", f"s3://{s3_bucket}/out/")
    for text in (body, reordered(body), seed_body(f"s3://{s3_bucket}/in/", "s3://Bad_Bucket/out/")):
        sqs.send_message(QueueUrl=url, MessageBody=text)

    queue = SqsQueue(url, env=env)
    store = JobStore(tmp_path / "jobs.db")
    model = ModelSpec(name="upper", model_data=str(make_model(tmp_path / "model")))
    try:
        stats = Worker(queue, store, model=model, defaults=CSV_DEFAULTS, wait_s=1).work(burst=True)

        assert sorted(o.action for o in stats.outcomes) == [Action.DEAD_LETTERED, Action.DONE, Action.DONE]
        [job] = store.list_jobs()[0]
        assert (job.name, job.status, job.attempts) == (job_name_for(body), JobStatus.COMPLETED, 1)
        output = s3.get_object(Bucket=s3_bucket, Key="out/part-1.csv.out")["Body"].read()
        assert output == b"ALPHA\nBETA\n"
        [letter] = queue.list_dead_letters()
        assert "'Bad_Bucket' is not a valid S3 bucket name" in letter.reason and letter.attempts == 1
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attrs["ApproximateNumberOfMessages"] == attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
        # The dead letter carries its reason where any SQS tool can read it.
        dlq_url = sqs.get_queue_url(QueueName=f"{name}-dlq")["QueueUrl"]
        [raw] = sqs.receive_message(QueueUrl=dlq_url, MessageAttributeNames=["All"])["Messages"]
        assert json.loads(raw["Body"])["output_path"] == "s3://Bad_Bucket/out/"
        assert "not a valid S3 bucket name" in raw["MessageAttributes"][ATTR_REASON]["StringValue"]
    finally:
        store.close()
        queue.close()
