"""`batchlane server` as a user runs it: a real server process on a free loopback port, the real `aws` CLI and boto3
as clients, jobs run by the server's workers through `batchlane serve` (a tiny BERT), the seed's SQS sender."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from tests.conftest import free_port, wait_for_http

KEY, SECRET = "AKIDSERVERE2E", "server-e2e-secret"
AWS = str(Path(sys.executable).with_name("aws"))


def base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BATCHLANE_", "AWS_"))}
    env["BATCHLANE_HOME"] = str(home)
    return env


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server-e2e")


@pytest.fixture(scope="module")
def server(root: Path, tiny_bert_dir: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **base_env(root / "home"),
        "BATCHLANE_ACCESS_KEY_ID": KEY,
        "BATCHLANE_SECRET_ACCESS_KEY": SECRET,
    }
    args = [sys.executable, "-m", "batchlane", "server", "--port", str(port), "--workers", "1"]
    args += ["--lease-seconds", "3", "--model", "seed-model", "--model-data", str(tiny_bert_dir)]
    with open(root / "server.log", "wb") as log:
        process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/ping", timeout=60)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def aws_cli(server: str, root: Path, *args: str) -> dict:
    env = {
        **base_env(root / "home"),
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(root / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(root / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    done = subprocess.run(
        [AWS, "--endpoint-url", server, "--output", "json", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"aws {' '.join(args)}: {done.stderr}"
    return json.loads(done.stdout) if done.stdout.strip() else {}


def boto(server: str, service: str):
    return boto3.client(
        service,
        endpoint_url=server,
        region_name="us-east-1",
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
    )


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
        "sagemaker",
        "create-transform-job",
        "--cli-input-json",
        request_file(root, "cli-stop", source, root / "cli-stop-out"),
    )
    assert aws_cli(server, root, "sagemaker", "stop-transform-job", "--transform-job-name", "cli-stop") == {}

    described = aws_cli(
        server, root, "sagemaker", "describe-transform-job", "--transform-job-name", "cli-job"
    )
    assert (
        described["TransformJobStatus"] in ("InProgress", "Completed")
        and described["ModelName"] == "cli-model"
    )
    listed = aws_cli(server, root, "sagemaker", "list-transform-jobs", "--name-contains", "cli-")
    assert {s["TransformJobName"] for s in listed["TransformJobSummaries"]} == {"cli-job", "cli-stop"}

    waiter = boto(server, "sagemaker").get_waiter("transform_job_completed_or_stopped")
    for name in ("cli-job", "cli-stop"):
        waiter.wait(TransformJobName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 90})
    final = aws_cli(server, root, "sagemaker", "list-transform-jobs", "--name-contains", "cli-")
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
    env = base_env(root / "refusals")
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
