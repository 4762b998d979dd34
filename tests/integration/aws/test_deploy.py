"""`batchlane deploy aws` against moto's server (CloudFormation, S3, SQS, Lambda, IAM, Events, SNS): the stack and
its resources, the no-op second deploy, `--delete`; the Lambda package imports both handlers with nothing else on
sys.path. moto's CloudFormation does not create AWS::CloudWatch::Alarm (docs/aws.md): the alarm is checked in the
template, and with cfn-lint.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest

from batchlane.aws import TEMPLATE_PATH, lambda_zip
from batchlane.cli.main import main

ROLE = "arn:aws:iam::123456789012:role/sagemaker-execution"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/batchlane:1"


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


class Stack:
    """One test's stack: unique names, the deploy flags, and clients for moto."""

    def __init__(self, endpoint: str, bucket: str) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.name = f"bl-{suffix}"
        self.queue = f"jobs-{suffix}"
        self.function = f"launch-{suffix}"
        self.bucket = bucket
        self.clients = {
            s: boto3.client(s, endpoint_url=endpoint, region_name="us-east-1")
            for s in ("cloudformation", "sqs", "lambda", "events", "s3", "sns")
        }

    def flags(self, *extra: str) -> list[str]:
        return [
            "deploy", "aws", "--stack-name", self.name, "--artifact-bucket", self.bucket,
            "--queue-name", self.queue, "--function-name", self.function, "--data-bucket", self.bucket,
            "--model-name", "classifier", "--model-data", f"s3://{self.bucket}/model/model.tar.gz",
            "--image", IMAGE, "--role", ROLE, "--max-attempts", "4", "--alarm-email", "ops@example.com",
            "--poll", "0.2", *extra,
        ]  # fmt: skip

    def events(self) -> list[dict[str, Any]]:
        return self.clients["cloudformation"].describe_stack_events(StackName=self.name)["StackEvents"]

    def resources(self) -> dict[str, dict[str, Any]]:
        listed = self.clients["cloudformation"].list_stack_resources(StackName=self.name)
        return {r["LogicalResourceId"]: r for r in listed["StackResourceSummaries"]}


@pytest.fixture()
def stack(moto_server: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> Stack:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    return Stack(moto_server, s3_bucket)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Tried to parse AWS..CloudWatch..Alarm:UserWarning")
def test_deploy_creates_the_stack_then_is_a_no_op_then_deletes(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(stack.flags(), capsys)
    assert code == 0, err
    assert f"creating stack {stack.name}" in out
    # The events as they arrived (moto records only the stack's own, not one per resource).
    assert "CREATE_IN_PROGRESS     AWS::CloudFormation::Stack" in out
    assert "CREATE_COMPLETE        AWS::CloudFormation::Stack" in out
    outputs = {
        o["OutputKey"]: o["OutputValue"]
        for o in stack.clients["cloudformation"].describe_stacks(StackName=stack.name)["Stacks"][0]["Outputs"]
    }
    queue_url, dlq_url = outputs["QueueUrl"], outputs["DeadLetterQueueUrl"]
    assert queue_url.endswith(f"/{stack.queue}") and dlq_url.endswith(f"/{stack.queue}-dlq")
    assert f"queue URL: {queue_url}" in out
    assert f"batchlane queue send --queue-url {queue_url} --input s3://{stack.bucket}/input/" in out
    sqs = stack.clients["sqs"]

    # The seed's queue settings.
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    assert attributes["VisibilityTimeout"] == "900"
    assert json.loads(attributes["RedrivePolicy"]) == {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5}

    # Both functions, from the content-addressed package that was uploaded once.
    lam = stack.clients["lambda"]
    launcher = lam.get_function(FunctionName=stack.function)["Configuration"]
    retry = lam.get_function(FunctionName=f"{stack.function}-retry")["Configuration"]
    assert launcher["Handler"] == "batchlane.aws.lambda_handler.handler"
    assert retry["Handler"] == "batchlane.aws.retry_handler.handler"
    assert launcher["Runtime"] == f"python{sys.version_info.major}.{sys.version_info.minor}"
    assert launcher["Environment"]["Variables"]["BATCHLANE_DLQ_URL"] == dlq_url
    # (moto keeps a Number parameter's Ref a number here; Lambda's environment holds strings)
    assert {k: str(v) for k, v in retry["Environment"]["Variables"].items()} == {
        "BATCHLANE_QUEUE_URL": queue_url,
        "BATCHLANE_DLQ_URL": dlq_url,
        "BATCHLANE_MAX_ATTEMPTS": "4",
    }
    [code_object] = stack.clients["s3"].list_objects_v2(Bucket=stack.bucket, Prefix="batchlane/lambda/")[
        "Contents"
    ]
    assert code_object["Key"].startswith("batchlane/lambda/batchlane-lambda-")

    # The event source mapping, with partial batch responses.
    [mapping] = lam.list_event_source_mappings(FunctionName=stack.function)["EventSourceMappings"]
    assert mapping["EventSourceArn"] == attributes["QueueArn"]
    assert mapping["BatchSize"] == 10

    # The EventBridge rule on failed transform jobs, targeting the retry function.
    events = stack.clients["events"]
    resources = stack.resources()
    rule_name = resources["JobFailedRule"]["PhysicalResourceId"]
    rule = events.describe_rule(Name=rule_name)
    assert json.loads(rule["EventPattern"]) == {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Transform Job State Change"],
        "detail": {"TransformJobStatus": ["Failed"]},
    }
    [target] = events.list_targets_by_rule(Rule=rule_name)["Targets"]
    assert target["Arn"] == retry["FunctionArn"]

    # The alarm's topic, with the e-mail subscription (the alarm itself: see the module docstring).
    topic_arn = resources["AlarmTopic"]["PhysicalResourceId"]
    subscriptions = stack.clients["sns"].list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subscriptions] == [("email", "ops@example.com")]
    assert "DeadLetterAlarm" not in resources  # moto skips AWS::CloudWatch::Alarm; docs/aws.md says so

    # A second deploy changes nothing: no call to CloudFormation's update, no new event, no second upload.
    before = stack.events()
    code, out, err = run_cli(stack.flags(), capsys)
    assert code == 0, err
    assert "up to date" in out and "stack " + stack.name + " unchanged" in out
    assert stack.events() == before
    listed = stack.clients["s3"].list_objects_v2(Bucket=stack.bucket, Prefix="batchlane/lambda/")["Contents"]
    assert [o["Key"] for o in listed] == [code_object["Key"]]

    # A changed parameter updates the stack.
    code, out, err = run_cli(stack.flags("--max-attempts", "2"), capsys)
    assert code == 0, err
    assert f"stack {stack.name} updated" in out
    retry = lam.get_function(FunctionName=f"{stack.function}-retry")["Configuration"]
    assert str(retry["Environment"]["Variables"]["BATCHLANE_MAX_ATTEMPTS"]) == "2"

    code, out, err = run_cli(
        ["deploy", "aws", "--delete", "--stack-name", stack.name, "--poll", "0.2"], capsys
    )
    assert code == 0, err
    assert "DELETE_COMPLETE" in out
    live = [
        s["StackName"]
        for s in stack.clients["cloudformation"].list_stacks()["StackSummaries"]
        if s["StackStatus"] != "DELETE_COMPLETE"
    ]
    assert stack.name not in live
    code, out, err = run_cli(["deploy", "aws", "--delete", "--stack-name", stack.name], capsys)
    assert code == 0 and "does not exist" in out


def test_deploy_errors_are_one_line(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    flags = stack.flags()
    flags[flags.index("--artifact-bucket") + 1] = "no-such-bucket-" + uuid.uuid4().hex[:8]
    code, out, err = run_cli(flags, capsys)
    assert code == 1
    assert err.startswith("error: S3 PutObject s3://no-such-bucket-") and "NoSuchBucket" in err
    assert len(err.strip().splitlines()) == 1

    code, _, err = run_cli(["deploy", "aws", "--stack-name", stack.name], capsys)
    assert code == 2
    assert err.strip() == (
        "error: deploy aws needs --artifact-bucket, --data-bucket, --model-name, --model-data, --image, --role"
    )


def test_without_credentials_deploy_and_delete_say_so_in_one_line(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    code, _, err = run_cli(stack.flags(), capsys)
    assert code == 1
    assert err.startswith("error: S3 HeadObject s3://") and "Unable to locate credentials" in err
    assert err.count("\n") == 1

    code, _, err = run_cli(["deploy", "aws", "--delete", "--stack-name", stack.name], capsys)
    assert (code, err) == (1, "error: CloudFormation DescribeStacks: Unable to locate credentials\n")


@pytest.mark.slow
def test_the_lambda_package_imports_both_handlers_alone(tmp_path: Path) -> None:
    package = lambda_zip.build(tmp_path / "a")
    assert lambda_zip.build(tmp_path / "b").sha256 == package.sha256  # reproducible, so content-addressed
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(package.path) as archive:
        names = archive.namelist()
        archive.extractall(unpacked)
    top = {name.split("/", 1)[0] for name in names}
    assert {"batchlane", "pydantic", "pydantic_core"} <= top
    assert not top & {"torch", "numpy", "transformers", "typer", "httpx", "boto3"}
    assert not [n for n in names if "__pycache__" in n]
    # Isolated (-I), without site-packages (-S): only the package and the standard library, as on Lambda
    # (whose boto3 the handlers import only when they make clients).
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "import batchlane.aws.lambda_handler, batchlane.aws.retry_handler; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'boto3')))"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe, str(unpacked)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_template_has_the_retry_rule_and_the_dead_letter_alarm() -> None:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor(
        "!",
        lambda loader, suffix, node: (
            {suffix: loader.construct_sequence(node)}
            if isinstance(node, yaml.SequenceNode)
            else {suffix: node.value}
        ),
    )
    template = yaml.load(TEMPLATE_PATH.read_text(), Loader=Loader)  # noqa: S506 - a SafeLoader subclass
    resources = template["Resources"]
    alarm = resources["DeadLetterAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"GetAtt": "JobsDeadLetterQueue.QueueName"}}
    ]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    assert template["Conditions"]["HasAlarmEmail"] is not None
    assert resources["JobsDeadLetterQueue"]["Properties"]["QueueName"] == {"Sub": "${SQSQueueName}-dlq"}
    assert resources["RetryInvokePermission"]["Properties"]["Principal"] == "events.amazonaws.com"
