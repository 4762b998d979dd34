"""``batchlane deploy aws``: the queue stack (``template.yaml``) on CloudFormation, from one command (docs/aws.md).

``deploy(config)`` builds the Lambda package (``aws.lambda_zip``), uploads it to
``s3://<artifact bucket>/<prefix><content-addressed name>`` unless that object is already there, then creates the
stack or updates it, and waits for ``CREATE_COMPLETE``/``UPDATE_COMPLETE`` while printing the stack's events as
they arrive. It is idempotent: the stack is tagged with the template's SHA-256, and when that tag and every
parameter (the code key among them, so the code's content) match the stack's own, nothing is called; CloudFormation's
"No updates are to be performed" is a no-op too. ``delete(…)`` deletes the stack and waits for it to go.

AWS is reached through boto3's ordinary configuration: credentials, ``--region`` or ``AWS_REGION``, and
``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_<SERVICE>``) for another endpoint such as moto's server. Every botocore
failure becomes one ``DeployError`` line naming the call.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchlane.aws import TEMPLATE_PATH, lambda_zip
from batchlane.errors import BatchlaneError, ValidationError

TEMPLATE_TAG = "batchlane:template-sha256"
DEFAULT_STACK = "batchlane"
_DONE = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "DELETE_COMPLETE"}
_FAILED_END = {
    "CREATE_FAILED",
    "ROLLBACK_COMPLETE",
    "ROLLBACK_FAILED",
    "DELETE_FAILED",
    "UPDATE_ROLLBACK_COMPLETE",
    "UPDATE_ROLLBACK_FAILED",
    "UPDATE_FAILED",
}
_NO_UPDATES = "No updates are to be performed"

Echo = Callable[[str], None]


class DeployError(BatchlaneError):
    """AWS refused a deploy step or the stack did not reach its goal; the message names the call or the resource."""


@dataclass(frozen=True)
class StackConfig:
    """What ``deploy aws`` puts into the stack (``template.yaml``'s parameters, by their CLI names)."""

    artifact_bucket: str
    data_bucket: str
    model_name: str
    model_image: str
    model_data_url: str
    role_arn: str
    stack_name: str = DEFAULT_STACK
    artifact_prefix: str = "batchlane/lambda/"
    queue_name: str = "batchlane-jobs"
    function_name: str = "batchlane-launcher"
    instance_type: str = "ml.m5.xlarge"
    instance_count: int = 1
    max_attempts: int = 3
    alarm_email: str = ""

    def parameters(self, code_key: str, runtime: str, architecture: str) -> dict[str, str]:
        return {
            "SQSQueueName": self.queue_name,
            "LambdaFunctionName": self.function_name,
            "PythonRuntime": runtime,
            "Architecture": architecture,
            "CodeBucket": self.artifact_bucket,
            "CodeKey": code_key,
            "DataBucket": self.data_bucket,
            "ModelName": self.model_name,
            "ModelImage": self.model_image,
            "ModelDataUrl": self.model_data_url,
            "SageMakerRoleArn": self.role_arn,
            "DefaultInstanceType": self.instance_type,
            "DefaultInstanceCount": str(self.instance_count),
            "MaxAttempts": str(self.max_attempts),
            "AlarmEmail": self.alarm_email,
        }


@dataclass(frozen=True)
class DeployResult:
    """How a deploy ended: ``action`` is "created", "updated" or "unchanged"; ``outputs`` the stack's outputs."""

    action: str
    stack_id: str
    code_key: str
    outputs: dict[str, str]

    @property
    def queue_url(self) -> str:
        return self.outputs.get("QueueUrl", "")

    def send_command(self, data_bucket: str, instance_type: str, instance_count: int) -> str:
        """A ready-to-paste ``batchlane queue send`` line for the deployed queue."""
        return (
            f"batchlane queue send --queue-url {self.queue_url} --input s3://{data_bucket}/input/ "
            f"--output s3://{data_bucket}/output/ --instance-type {instance_type} --instance-count {instance_count}"
        )


@contextmanager
def aws_errors(what: str) -> Iterator[None]:
    """botocore's exceptions as one ``DeployError`` line: ``<what>: <code>: <message>``."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise DeployError(f"{what}: {error.get('Code', 'Error')}: {error.get('Message', exc)}") from None
    except BotoCoreError as exc:
        raise DeployError(f"{what}: {exc}") from None


def _session(region: str | None) -> Any:
    import boto3

    with aws_errors("AWS session"):
        return boto3.session.Session(region_name=region)


def deploy(
    config: StackConfig, *, region: str | None = None, echo: Echo = print, poll_s: float = 5.0
) -> DeployResult:
    """Create or update the stack from ``config``, waiting for it; see the module docstring."""
    _check(config)
    session = _session(region)
    s3, cfn = session.client("s3"), session.client("cloudformation")
    with tempfile.TemporaryDirectory(prefix="batchlane-lambda-") as folder:
        package = lambda_zip.build(Path(folder))
        key = config.artifact_prefix + package.key_name
        _upload(s3, package.path, config.artifact_bucket, key, echo)
    template = TEMPLATE_PATH.read_text()
    template_sha = hashlib.sha256(template.encode("utf-8")).hexdigest()
    parameters = config.parameters(key, package.runtime, package.architecture)
    call = {
        "StackName": config.stack_name,
        "TemplateBody": template,
        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        "Capabilities": ["CAPABILITY_IAM"],
        "Tags": [{"Key": TEMPLATE_TAG, "Value": template_sha}],
    }
    stack = _describe(cfn, config.stack_name)
    if stack is not None and stack["StackStatus"] == "ROLLBACK_COMPLETE":
        raise DeployError(
            f"stack {config.stack_name} is ROLLBACK_COMPLETE (its first create failed) and cannot be updated; "
            "remove it with `batchlane deploy aws --delete` and deploy again"
        )
    if stack is not None and stack["StackStatus"].endswith("_IN_PROGRESS"):
        raise DeployError(f"stack {config.stack_name} is {stack['StackStatus']}; wait for it and try again")
    if stack is not None and _unchanged(stack, parameters, template_sha):
        echo(f"stack {config.stack_name} is up to date (code {key}); nothing to do")
        return DeployResult("unchanged", stack["StackId"], key, _outputs(stack))
    seen = _event_ids(cfn, config.stack_name) if stack is not None else set()
    if stack is None:
        echo(f"creating stack {config.stack_name}")
        with aws_errors("CloudFormation CreateStack"):
            stack_id = cfn.create_stack(**call)["StackId"]
        action, goal = "created", "CREATE_COMPLETE"
    else:
        echo(f"updating stack {config.stack_name}")
        try:
            with aws_errors("CloudFormation UpdateStack"):
                stack_id = cfn.update_stack(**call)["StackId"]
        except DeployError as exc:
            if _NO_UPDATES not in str(exc):
                raise
            echo(f"stack {config.stack_name} is up to date; nothing to do")
            return DeployResult("unchanged", stack["StackId"], key, _outputs(stack))
        action, goal = "updated", "UPDATE_COMPLETE"
    final = _wait(cfn, stack_id, goal, seen, echo, poll_s)
    return DeployResult(action, stack_id, key, _outputs(final))


def delete(stack_name: str, *, region: str | None = None, echo: Echo = print, poll_s: float = 5.0) -> bool:
    """Delete the stack and wait until it is gone; False when there was none. The queues are kept (their
    DeletionPolicy is Retain: parked requests outlive the stack)."""
    cfn = _session(region).client("cloudformation")
    stack = _describe(cfn, stack_name)
    if stack is None:
        echo(f"stack {stack_name} does not exist; nothing to delete")
        return False
    seen = _event_ids(cfn, stack_name)
    echo(f"deleting stack {stack_name}")
    with aws_errors("CloudFormation DeleteStack"):
        cfn.delete_stack(StackName=stack["StackId"])
    _wait(cfn, stack["StackId"], "DELETE_COMPLETE", seen, echo, poll_s)
    return True


def _check(config: StackConfig) -> None:
    if not config.model_data_url.startswith("s3://"):
        raise ValidationError(
            f"--model-data must be an s3:// URI of a model.tar.gz, got {config.model_data_url!r}",
            field="model_data",
        )
    if not config.role_arn.startswith("arn:"):
        raise ValidationError(f"--role must be an IAM role ARN, got {config.role_arn!r}", field="role")
    if config.artifact_prefix and not config.artifact_prefix.endswith("/"):
        raise ValidationError("--artifact-prefix must end with '/'", field="artifact_prefix")


def _upload(s3: Any, path: Path, bucket: str, key: str, echo: Echo) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        s3.head_object(Bucket=bucket, Key=key)
        echo(f"code s3://{bucket}/{key} is already uploaded")
        return
    except BotoCoreError as exc:  # no credentials, no network: one line
        raise DeployError(f"S3 HeadObject s3://{bucket}/{key}: {exc}") from None
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
            with aws_errors(f"S3 HeadObject s3://{bucket}/{key}"):
                raise
    with aws_errors(f"S3 PutObject s3://{bucket}/{key}"):
        s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())  # a few MB: one request
    echo(f"uploaded code to s3://{bucket}/{key} ({path.stat().st_size / 1e6:.1f} MB)")


def _describe(cfn: Any, name: str) -> dict[str, Any] | None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except BotoCoreError as exc:
        raise DeployError(f"CloudFormation DescribeStacks: {exc}") from None
    except ClientError as exc:
        if "does not exist" in exc.response.get("Error", {}).get("Message", ""):
            return None
        with aws_errors("CloudFormation DescribeStacks"):
            raise
    live = [s for s in stacks if s["StackStatus"] != "DELETE_COMPLETE"]
    return live[0] if live else None


def _unchanged(stack: Mapping[str, Any], parameters: Mapping[str, str], template_sha: str) -> bool:
    if stack["StackStatus"] not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
        return False
    tags = {t["Key"]: t["Value"] for t in stack.get("Tags") or []}
    current = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters") or []}
    return tags.get(TEMPLATE_TAG) == template_sha and all(current.get(k) == v for k, v in parameters.items())


def _outputs(stack: Mapping[str, Any]) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs") or []}


def _events(cfn: Any, stack: str) -> list[dict[str, Any]]:
    """The stack's events, oldest first."""
    events: list[dict[str, Any]] = []
    with aws_errors("CloudFormation DescribeStackEvents"):
        for page in cfn.get_paginator("describe_stack_events").paginate(StackName=stack):
            events.extend(page["StackEvents"])
    return events[::-1]


def _event_ids(cfn: Any, stack: str) -> set[str]:
    return {e["EventId"] for e in _events(cfn, stack)}


def _wait(cfn: Any, stack_id: str, goal: str, seen: set[str], echo: Echo, poll_s: float) -> dict[str, Any]:
    """Print new events until the stack reaches ``goal`` (returned, described) or fails (DeployError)."""
    failures: list[str] = []
    while True:
        for event in _events(cfn, stack_id):
            if event["EventId"] in seen:
                continue
            seen.add(event["EventId"])
            reason = event.get("ResourceStatusReason") or ""
            status = event.get("ResourceStatus", "")
            echo(
                f"  {event['Timestamp']:%H:%M:%S}  {status:<22} {event.get('ResourceType', '')}  "
                f"{event.get('LogicalResourceId', '')}" + (f"  {reason}" if reason else "")
            )
            if status.endswith("FAILED") and reason:
                failures.append(f"{event.get('LogicalResourceId')}: {reason}")
        with aws_errors("CloudFormation DescribeStacks"):
            stack = cfn.describe_stacks(StackName=stack_id)["Stacks"][0]
        status = stack["StackStatus"]
        if status == goal:
            return stack
        if status in _FAILED_END or (status in _DONE and status != goal):
            why = failures[0] if failures else stack.get("StackStatusReason") or "no reason given"
            raise DeployError(f"stack {stack['StackName']} ended {status}, not {goal}: {why}")
        time.sleep(poll_s)
