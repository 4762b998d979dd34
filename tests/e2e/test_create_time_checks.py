"""Checks that used to fail late, now refused at create time with the field named: invalid S3 bucket names in job
URIs, and ``ModelDataUrl`` values with ``..`` segments or relative paths. Through the real CLI (subprocess) and
through boto3 against a real `batchlane server`."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from batchlane.jobs.store import JobStore
from tests.models import ECHO_DIR, cli_env, run_cli
from tests.servers import aws_client, control_plane_server

KEY, SECRET = "AKIDCREATECHECKS", "create-checks-secret"
INPUT = "TransformInput.DataSource.S3DataSource.S3Uri"
OUTPUT = "TransformOutput.S3OutputPath"


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, f"{done.stdout}\n{done.stderr}"
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("input_uri", "output_uri", "field"),
    [
        ("s3://A_B/in/", "{tmp}/out/", INPUT),
        ("{tmp}/in/", "s3://A_B/out/", OUTPUT),
        ("{tmp}/in/", "s3://10.0.0.1/out/", OUTPUT),
        ("{tmp}/in/", "s3://my..bucket/out/", OUTPUT),
    ],
    ids=["input-bucket", "output-bucket", "ip-address", "adjacent-dots"],
)
def test_cli_transform_refuses_an_invalid_bucket_at_submit(
    tmp_path: Path, input_uri: str, output_uri: str, field: str
) -> None:
    env = cli_env(tmp_path / "home")
    assert run_cli(["models", "create", "echo", "--model-data", str(ECHO_DIR)], env).returncode == 0
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("x\n")
    args = ["transform", "--model", "echo", "--input", input_uri.format(tmp=tmp_path)]
    args += ["--output", output_uri.format(tmp=tmp_path), "--content-type", "text/plain", "-q"]
    line = _one_error_line(run_cli(args, env))
    assert f"'{field}'" in line and "is not a valid S3 bucket name" in line, line
    assert JobStore(env["BATCHLANE_DB"]).list_jobs()[0] == []


@pytest.mark.parametrize(
    ("model_data", "message"),
    [
        ("s3://bucket/models/../other/model.tar.gz", "'..' path segments"),
        ("file:///opt/models/../../etc/model", "'..' path segments"),
        ("s3://Bad_Bucket/model.tar.gz", "'Bad_Bucket' is not a valid S3 bucket name"),
    ],
)
def test_cli_models_create_refuses_bad_model_data(tmp_path: Path, model_data: str, message: str) -> None:
    env = cli_env(tmp_path / "home")
    line = _one_error_line(run_cli(["models", "create", "m", "--model-data", model_data], env))
    assert "'model_data'" in line and message in line, line
    assert run_cli(["models", "describe", "m"], env).returncode != 0


@pytest.fixture(scope="module")
def sagemaker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    root = tmp_path_factory.mktemp("server-create-checks")
    args = ["--workers", "1", "--no-worker"]
    with control_plane_server(root, *args, key=KEY, secret=SECRET, home=root) as url:
        yield aws_client("sagemaker", url, KEY, SECRET, retries=None)


def _refused(call, field: str, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientError) as caught:
        call()
    error = caught.value.response["Error"]
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["Code"] == "ValidationException", error
    assert field in error["Message"] and message in error["Message"], error["Message"]
    assert "\n" not in error["Message"]


@pytest.mark.parametrize(
    ("model_data", "message"),
    [
        ("models/my-model", "is a relative path"),
        ("./my-model.tar.gz", "is a relative path"),
        ("/srv/models/../../etc/model", "'..' path segments"),
        ("file:///srv/models/%2e%2e/secret", "'..' path segments"),
        ("s3://bucket/a/../model.tar.gz", "'..' path segments"),
        ("s3://A_B/model.tar.gz", "'A_B' is not a valid S3 bucket name"),
    ],
)
def test_api_create_model_checks_model_data_url(sagemaker, model_data: str, message: str) -> None:  # type: ignore[no-untyped-def]
    _refused(
        lambda: sagemaker.create_model(ModelName="checked", PrimaryContainer={"ModelDataUrl": model_data}),
        "PrimaryContainer.ModelDataUrl",
        message,
    )
    assert sagemaker.list_models()["Models"] == []


def test_api_create_model_takes_the_https_s3_form(sagemaker) -> None:  # type: ignore[no-untyped-def]
    url = "https://models-bucket.s3.us-east-1.amazonaws.com/tiny/model.tar.gz"
    sagemaker.create_model(ModelName="https-form", PrimaryContainer={"ModelDataUrl": url})
    described = sagemaker.describe_model(ModelName="https-form")
    assert described["PrimaryContainer"]["ModelDataUrl"] == "s3://models-bucket/tiny/model.tar.gz"
    sagemaker.delete_model(ModelName="https-form")


@pytest.mark.parametrize(("field", "uri"), [(INPUT, "s3://A_B/in/"), (OUTPUT, "s3://A_B/out/")])
def test_api_create_transform_job_checks_bucket_names(sagemaker, field: str, uri: str) -> None:  # type: ignore[no-untyped-def]
    sagemaker.create_model(ModelName="for-jobs", PrimaryContainer={"ModelDataUrl": str(ECHO_DIR)})
    input_uri = uri if field == INPUT else "s3://good-bucket/in/"
    output_uri = uri if field == OUTPUT else "s3://good-bucket/out/"
    _refused(
        lambda: sagemaker.create_transform_job(
            TransformJobName="bad-bucket",
            ModelName="for-jobs",
            TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_uri}}},
            TransformOutput={"S3OutputPath": output_uri},
            TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
        ),
        field,
        "'A_B' is not a valid S3 bucket name",
    )
    assert sagemaker.list_transform_jobs()["TransformJobSummaries"] == []
    sagemaker.delete_model(ModelName="for-jobs")
