"""A transform job's DataCaptureConfig, as boto3 would send it, through the real `batchlane transform --request`: the
job's model server captures each invocation in SageMaker's format, to a folder or (uploaded after the job) to S3."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.models import cli_env, cli_ok, echo_cli_env, put_echo_model, run_cli, write_files

pytestmark = [pytest.mark.slow]


def _request(name: str, input_uri: str, output_uri: str, capture_uri: str, model: str = "echo") -> dict:
    return {
        "TransformJobName": name,
        "ModelName": model,
        "BatchStrategy": "SingleRecord",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_uri}},
            "ContentType": "text/plain",
            "SplitType": "Line",
        },
        "TransformOutput": {"S3OutputPath": output_uri, "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1},
        "DataCaptureConfig": {"DestinationS3Uri": capture_uri, "GenerateInferenceId": True},
    }


def _check_records(lines: list[str]) -> None:
    records = [json.loads(line) for line in lines]
    inputs = {}
    for record in records:
        data = record["captureData"]
        assert data["endpointInput"]["mode"] == "INPUT" and data["endpointInput"]["encoding"] == "BASE64"
        assert data["endpointInput"]["observedContentType"] == "text/plain"
        assert data["endpointOutput"]["mode"] == "OUTPUT"
        text = base64.b64decode(data["endpointInput"]["data"]).decode().strip()
        inputs[text] = base64.b64decode(data["endpointOutput"]["data"]).decode().strip()
        assert record["eventVersion"] == "0"
        assert set(record["eventMetadata"]) == {"eventId", "inferenceId", "inferenceTime"}
    assert inputs == {"one": "echo:one", "two": "echo:two", "three": "echo:three"}
    assert len({r["eventMetadata"]["inferenceId"] for r in records}) == 3


def test_a_jobs_data_capture_goes_to_a_local_folder(tmp_path: Path) -> None:
    env = echo_cli_env(tmp_path / "home")
    source = write_files(tmp_path / "in", {"a.txt": "one\ntwo\nthree\n"})
    request = _request("captured", source, f"{tmp_path}/out/", str(tmp_path / "capture"))
    (tmp_path / "request.json").write_text(json.dumps(request))

    result = cli_ok(run_cli(["transform", "--request", str(tmp_path / "request.json"), "-q"], env))

    assert "captured: Completed" in result.stdout
    files = sorted((tmp_path / "capture").rglob("*.jsonl"))
    assert files
    for path in files:
        parts = path.relative_to(tmp_path / "capture").parts
        assert parts[0] == "captured" and [len(p) for p in parts[1:5]] == [4, 2, 2, 2]
    _check_records([line for f in files for line in f.read_text().splitlines()])
    described = json.loads(cli_ok(run_cli(["jobs", "describe", "captured"], env)).stdout)
    assert described["DataCaptureConfig"] == request["DataCaptureConfig"]


def test_a_jobs_data_capture_is_uploaded_to_s3(tmp_path: Path, moto_server: str, s3_bucket: str) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    put_echo_model(s3, s3_bucket)
    s3.put_object(Bucket=s3_bucket, Key="in/a.txt", Body=b"one\ntwo\nthree\n")
    env = cli_env(tmp_path / "home", AWS_ENDPOINT_URL=moto_server)
    cli_ok(
        run_cli(
            ["models", "create", "echo-s3", "--model-data", f"s3://{s3_bucket}/models/echo/",
             "--env", "BATCHLANE_DEVICE=cpu"],
            env,
        )
    )  # fmt: skip
    request = _request(
        "captured-s3",
        f"s3://{s3_bucket}/in/",
        f"s3://{s3_bucket}/out/",
        f"s3://{s3_bucket}/capture",
        "echo-s3",
    )
    (tmp_path / "request.json").write_text(json.dumps(request))

    result = cli_ok(run_cli(["transform", "--request", str(tmp_path / "request.json"), "-q"], env))

    assert "captured-s3: Completed" in result.stdout
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=s3_bucket, Prefix="capture/")["Contents"]]
    assert keys and all(k.startswith("capture/captured-s3/") and k.endswith(".jsonl") for k in keys)
    lines = [
        line
        for key in keys
        for line in s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read().decode().splitlines()
    ]
    _check_records(lines)
    assert not list((tmp_path / "home").rglob("*.jsonl")), "the local spool is removed once uploaded"
