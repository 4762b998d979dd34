"""`batchlane server` as a user runs it: a real server process on a free loopback port, the real `aws` CLI and boto3
as clients, jobs run by the server's workers through `batchlane serve` (a tiny BERT), the seed's SQS sender."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import aws_cli, aws_client, clean_env, control_plane_server

KEY, SECRET = "AKIDSERVERE2E", "server-e2e-secret"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server-e2e")


@pytest.fixture(scope="module")
def server(root: Path, tiny_bert_dir: Path) -> Iterator[str]:
    args = [
        "--workers",
        "1",
        "--lease-seconds",
        "3",
        "--model",
        "seed-model",
        "--model-data",
        str(tiny_bert_dir),
    ]
    with control_plane_server(root, *args, key=KEY, secret=SECRET) as url:
        yield url


def boto(server: str, service: str):
    return aws_client(service, server, KEY, SECRET, retries=None)


def write_inputs(folder: Path, texts: list[str]) -> Path:
    folder.mkdir(parents=True)
    (folder / "tickets.jsonl").write_text("".join(json.dumps({"inputs": t}) + "\n" for t in texts))
    return folder


def request_file(root: Path, name: str, source: Path, out: Path) -> str:
    request = {
        "TransformJobName": name,
        "ModelName": "cli-model",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"{source}/"}},
            "ContentType": "application/jsonlines",
            "SplitType": "Line",
        },
        "TransformOutput": {
            "S3OutputPath": f"{out}/",
            "Accept": "application/jsonlines",
            "AssembleWith": "Line",
        },
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }
    path = root / f"{name}.json"
    path.write_text(json.dumps(request))
    return f"file://{path}"


def test_the_aws_cli_creates_runs_lists_and_stops_jobs(server: str, root: Path, tiny_bert_dir: Path) -> None:
    created = aws_cli(
        server,
        root,
        KEY,
        SECRET,
        "sagemaker",
        "create-model",
        "--model-name",
        "cli-model",
        "--primary-container",
        f"Image=batchlane:local,ModelDataUrl={tiny_bert_dir}",
        "--execution-role-arn",
        "arn:aws:iam::000000000000:role/unused",
    )
    assert created["ModelArn"].endswith(":model/cli-model")

    source = write_inputs(root / "cli-in", ["card charged twice", "rude agent", "refund please"])
    job = aws_cli(
        server,
        root,
        KEY,
        SECRET,
        "sagemaker",
        "create-transform-job",
        "--cli-input-json",
        request_file(root, "cli-job", source, root / "cli-out"),
    )
    assert job["TransformJobArn"].endswith(":transform-job/cli-job")
    # One job worker: this second job waits behind the first, and is stopped before it starts.
    aws_cli(
        server,
        root,
        KEY,
        SECRET,
        "sagemaker",
        "create-transform-job",
        "--cli-input-json",
        request_file(root, "cli-stop", source, root / "cli-stop-out"),
    )
    assert (
        aws_cli(
            server, root, KEY, SECRET, "sagemaker", "stop-transform-job", "--transform-job-name", "cli-stop"
        )
        == {}
    )

    described = aws_cli(
        server, root, KEY, SECRET, "sagemaker", "describe-transform-job", "--transform-job-name", "cli-job"
    )
    assert (
        described["TransformJobStatus"] in ("InProgress", "Completed")
        and described["ModelName"] == "cli-model"
    )
    listed = aws_cli(server, root, KEY, SECRET, "sagemaker", "list-transform-jobs", "--name-contains", "cli-")
    assert {s["TransformJobName"] for s in listed["TransformJobSummaries"]} == {"cli-job", "cli-stop"}

    waiter = boto(server, "sagemaker").get_waiter("transform_job_completed_or_stopped")
    for name in ("cli-job", "cli-stop"):
        waiter.wait(TransformJobName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 90})
    final = aws_cli(server, root, KEY, SECRET, "sagemaker", "list-transform-jobs", "--name-contains", "cli-")
    assert {s["TransformJobName"]: s["TransformJobStatus"] for s in final["TransformJobSummaries"]} == {
        "cli-job": "Completed",
        "cli-stop": "Stopped",
    }
    assert len((root / "cli-out" / "tickets.jsonl.out").read_text().splitlines()) == 3
    assert not (root / "cli-stop-out").exists() or not list((root / "cli-stop-out").iterdir())


def test_the_seed_flow_sqs_send_to_worker_to_completed_job(server: str, root: Path) -> None:
    source = write_inputs(root / "seed-in", ["where is my refund", "fraud on my card"])
    sqs = boto(server, "sqs")
    queue_url = sqs.get_queue_url(QueueName="batchlane-jobs")["QueueUrl"]
    message = {
        "input_path": str(source) + "/",
        "output_path": str(root / "seed-out") + "/",
        "instance_type": "ml.m5.xlarge",
        "instance_count": 1,
        "content_type": "application/jsonlines",
        "split_type": "Line",
        "accept": "application/jsonlines",
    }
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(message))

    # The server's queue worker takes the message and starts a job named from its content (bl-seed-in-…).
    sagemaker = boto(server, "sagemaker")
    deadline = time.monotonic() + 60
    summaries: list[dict] = []
    while time.monotonic() < deadline:
        summaries = sagemaker.list_transform_jobs(NameContains="bl-seed-in")["TransformJobSummaries"]
        if summaries and summaries[0]["TransformJobStatus"] not in ("InProgress", "Stopping"):
            break
        time.sleep(0.5)
    assert [s["TransformJobStatus"] for s in summaries] == ["Completed"], (root / "server.log").read_text()[
        -3000:
    ]
    assert len((root / "seed-out" / "tickets.jsonl.out").read_text().splitlines()) == 2
    assert sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])[
        "Attributes"
    ] == {"ApproximateNumberOfMessages": "0"}


def test_unsigned_requests_are_refused(server: str) -> None:
    answer = httpx.post(server + "/", content=b"{}", headers={"X-Amz-Target": "SageMaker.ListTransformJobs"})
    assert answer.status_code == 403 and answer.json()["__type"] == "MissingAuthenticationToken"


def test_the_server_will_not_start_unauthenticated_by_accident(root: Path) -> None:
    env = clean_env(BATCHLANE_HOME=str(root / "refusals"))
    cases = [
        (["server", "--port", "0"], "needs an access key"),
        (["server", "--port", "0", "--no-auth", "--host", "0.0.0.0"], "only allowed when binding a loopback"),
    ]
    for args, expected in cases:
        done = subprocess.run(
            [sys.executable, "-m", "batchlane", *args], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2 and expected in done.stderr and "Traceback" not in done.stderr, (
            done.stderr
        )
