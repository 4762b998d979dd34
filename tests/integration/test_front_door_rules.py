"""One table of URI and name cases fed through every front door, with the same verdict at each
(docs/names-and-uris.md): the CLI (``batchlane transform --request``, in process), the control plane (boto3 against a
real ``batchlane server``), a queue message (``parse_message``) and the Lambda handler (moto's SageMaker, SQS, S3).

A case is either accepted (it passes every name and URI rule) or refused naming one field, with a reason that
holds the same words at every door. To tell "accepted" apart without running a job, the CLI and the control plane
are given a model that does not exist: a request that passes the rules fails at the model lookup that follows them,
naming ``ModelName``. The Lambda starts a real (moto) SageMaker job for an accepted case. SageMaker itself cannot
read local files or run ``local_gpu``; for those rows the Lambda refuses the same field for that reason instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from batchlane import aws_names
from batchlane.aws.lambda_handler import handler
from batchlane.cli.main import main
from batchlane.errors import ValidationError
from batchlane.queue.message import job_name_for, parse_message
from tests.integration.aws.test_lambda_handler import Aws, sqs_event
from tests.models import cli_env
from tests.servers import aws_client, control_plane_server

KEY, SECRET = "AKIDFRONTDOORS", "front-door-secret"
ABSENT_MODEL = "absent-model"

# The request field and the queue-message field each case may blame.
FIELDS = {
    "input": ("TransformInput.DataSource.S3DataSource.S3Uri", "input_path"),
    "output": ("TransformOutput.S3OutputPath", "output_path"),
    "job": ("TransformJobName", "job_name"),
    "model": ("ModelName", "model_name"),
    "instance": ("TransformResources.InstanceType", "instance_type"),
}


@dataclass(frozen=True)
class Case:
    id: str
    field: str  # a key of FIELDS
    value: str  # "{bucket}" and "{tmp}" are filled in per test
    refused: str | None  # words every door's reason holds; None: accepted
    sagemaker: str | None = None  # the Lambda's reason when SageMaker cannot do what the rules allow


CASES = [
    Case("s3", "input", "s3://{bucket}/in/", None),
    Case("https-virtual-host", "input", "https://{bucket}.s3.us-east-1.amazonaws.com/in/", None),
    Case("https-path-style", "input", "https://s3.us-east-1.amazonaws.com/{bucket}/in/", None),
    Case("file-uri", "input", "file://{tmp}/in/", None, sagemaker="SageMaker reads and writes only s3://"),
    Case("invalid-bucket", "input", "s3://Bad_Bucket/in/", "not a valid S3 bucket name"),
    Case("invalid-output-bucket", "output", "s3://10.0.0.1/out/", "not a valid S3 bucket name"),
    Case("https-other-host", "input", "https://example.com/in/", "https URLs must be S3 object URLs"),
    Case("relative-path", "input", "data/in/", "is a relative path"),
    Case("dot-dot", "output", "s3://{bucket}/out/../in/", "'..' path segments"),
    Case("uppercase-job-name", "job", "Nightly-Run-7", None),
    Case("bad-job-name", "job", "nightly_run!", aws_names.JOB_NAME_PATTERN),
    Case("bad-model-name", "model", "my_model", aws_names.MODEL_NAME_PATTERN),
    Case("bad-instance-type", "instance", "m5.xlarge", aws_names.INSTANCE_TYPE_PATTERN),
    Case("local-gpu", "instance", "local_gpu", None, sagemaker="SageMaker needs an ml.* instance type"),
]
IDS = [case.id for case in CASES]


def _fill(case: Case, bucket: str, tmp: Path) -> str:
    return case.value.format(bucket=bucket, tmp=tmp)


def _request(case: Case, value: str, bucket: str, name: str) -> dict[str, Any]:
    """A CreateTransformJob request that is valid but for ``case``'s field."""
    request: dict[str, Any] = {
        "TransformJobName": name,
        "ModelName": ABSENT_MODEL,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/in/"}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        "TransformOutput": {"S3OutputPath": f"s3://{bucket}/out/"},
        "TransformResources": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1},
    }
    target = {
        "input": request["TransformInput"]["DataSource"]["S3DataSource"],
        "output": request["TransformOutput"],
        "instance": request["TransformResources"],
    }
    key = {"input": "S3Uri", "output": "S3OutputPath", "instance": "InstanceType"}
    if case.field in target:
        target[case.field][key[case.field]] = value
    else:
        request[FIELDS[case.field][0]] = value
    return request


def _message(case: Case, value: str, bucket: str) -> dict[str, Any]:
    message = {
        "input_path": f"s3://{bucket}/in/",
        "output_path": f"s3://{bucket}/out/",
        "instance_type": "ml.m5.xlarge",
        "instance_count": 1,
    }
    message[FIELDS[case.field][1]] = value
    return message


def _job_name(case: Case, door: str) -> str:
    return f"{door}-{case.id}"[:63].strip("-")


# --- the CLI ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_cli(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in cli_env(tmp_path / "home").items():
        monkeypatch.setenv(key, value)
    value = _fill(case, "cli-bucket", tmp_path)
    request_file = tmp_path / "request.json"
    request_file.write_text(json.dumps(_request(case, value, "cli-bucket", _job_name(case, "cli"))))

    with pytest.raises(SystemExit) as exited:
        main(["transform", "--request", str(request_file), "-q"])

    [line] = capsys.readouterr().err.strip().splitlines()
    if case.refused is None:
        assert exited.value.code != 0 and f"model {ABSENT_MODEL} does not exist" in line, line
    else:
        assert exited.value.code == 2, line
        assert f"'{FIELDS[case.field][0]}'" in line and case.refused in line, line


# --- the control plane ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sagemaker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("front-doors")
    with control_plane_server(
        root, "--workers", "1", "--no-worker", key=KEY, secret=SECRET, home=root
    ) as url:
        yield aws_client("sagemaker", url, KEY, SECRET, retries=None)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_control_plane(case: Case, sagemaker: Any, tmp_path: Path) -> None:
    value = _fill(case, "api-bucket", tmp_path)
    request = _request(case, value, "api-bucket", _job_name(case, "api"))

    with pytest.raises(ClientError) as caught:
        sagemaker.create_transform_job(**request)

    message = caught.value.response["Error"]["Message"]
    assert "\n" not in message
    if case.refused is None:
        assert ABSENT_MODEL in message and FIELDS[case.field][0] not in message, message
    else:
        assert caught.value.response["Error"]["Code"] == "ValidationException", message
        assert FIELDS[case.field][0] in message and case.refused in message, message
    assert sagemaker.list_transform_jobs()["TransformJobSummaries"] == []


# --- a queue message -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_a_queue_message(case: Case, tmp_path: Path) -> None:
    value = _fill(case, "queue-bucket", tmp_path)
    body = json.dumps(_message(case, value, "queue-bucket"))

    if case.refused is None:
        assert getattr(parse_message(body), FIELDS[case.field][1]) == value
        return
    with pytest.raises(ValidationError) as caught:
        parse_message(body)
    assert caught.value.field == FIELDS[case.field][1]
    assert case.refused in str(caught.value), str(caught.value)


# --- the Lambda handler --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_lambda_handler(
    case: Case, moto_server: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    aws = Aws(moto_server, s3_bucket, monkeypatch)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("x\n")
    value = _fill(case, s3_bucket, tmp_path)
    body = json.dumps(_message(case, value, s3_bucket))
    event = sqs_event(body)

    assert handler(event, None) == {"batchItemFailures": []}  # done or parked, never retried

    parked = aws.dead_letters()
    expected = case.refused or case.sagemaker
    if expected is None:
        assert parked == {}
        [job] = aws.jobs(job_name_for(body))
        assert job["TransformJobStatus"] in ("InProgress", "Completed")
    else:
        [reason] = [letter["reason"] for letter in parked.values()]
        assert f"{FIELDS[case.field][1]}: " in reason and expected in reason, reason
