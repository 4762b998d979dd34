"""Where the SageMaker engine's settings come from (flags over the environment), how a content digest names what
is staged (the same folder, the same key; any change, another), and AWS error codes as one line with a fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchlane.engines.sagemaker_aws import AwsSettings
from batchlane.engines.sagemaker_staging import folder_digest

ENV = {
    "AWS_DEFAULT_REGION": "us-west-2",
    "BATCHLANE_EXECUTION_ROLE_ARN": "arn:aws:iam::1:role/lambda-default",
    "BATCHLANE_SAGEMAKER_STAGING": "s3://env-bucket/staging",
    "BATCHLANE_SAGEMAKER_IMAGE": "env-image",
}


@pytest.mark.parametrize(
    ("flags", "env", "expected"),
    [
        (
            {},
            ENV,
            ("us-west-2", "arn:aws:iam::1:role/lambda-default", "s3://env-bucket/staging", "env-image"),
        ),
        (
            {},
            {**ENV, "AWS_REGION": "eu-west-1", "BATCHLANE_SAGEMAKER_ROLE": "arn:aws:iam::1:role/sm"},
            ("eu-west-1", "arn:aws:iam::1:role/sm", "s3://env-bucket/staging", "env-image"),
        ),
        (
            {"region": "ap-south-1", "role": "r", "staging": "s3://flag/x", "image": "flag-image"},
            ENV,
            ("ap-south-1", "r", "s3://flag/x", "flag-image"),
        ),
        ({}, {"AWS_REGION": "  "}, (None, None, None, None)),
    ],
)
def test_flags_win_over_the_environment(flags: dict, env: dict, expected: tuple) -> None:
    aws = AwsSettings.resolve(**flags, env=env)
    assert (aws.region, aws.role, aws.staging, aws.image) == expected


def test_a_folder_digest_follows_names_and_contents_only(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for folder in (first, second):
        (folder / "code").mkdir(parents=True)
        (folder / "code" / "inference.py").write_text("x = 1\n")
        (folder / "weights.bin").write_bytes(b"\x01\x02")
    assert folder_digest(first) == folder_digest(second)
    (second / "code" / "__pycache__").mkdir()
    (second / "code" / "__pycache__" / "inference.pyc").write_bytes(b"cache")
    assert folder_digest(first) == folder_digest(second)
    (second / "weights.bin").write_bytes(b"\x01\x03")
    assert folder_digest(first) != folder_digest(second)
    (second / "weights.bin").write_bytes(b"\x01\x02")
    (second / "weights.bin").rename(second / "weights2.bin")
    assert folder_digest(first) != folder_digest(second)


@pytest.mark.parametrize(
    ("code", "kind", "hint"),
    [
        ("ThrottlingException", "SageMakerError", "retry in a minute"),
        ("AccessDeniedException", "AuthError", "grant it to them"),
        ("ResourceLimitExceeded", "SageMakerError", "ask AWS Service Quotas"),
        ("ValidationException", "ValidationError", "fix the field it names"),
        ("ResourceNotFound", "NotFound", None),
        ("ResourceInUse", "Conflict", None),
        ("InternalFailure", "SageMakerError", None),
    ],
)
def test_every_aws_error_code_is_one_line_with_what_to_do(code: str, kind: str, hint: str | None) -> None:
    """A real boto3 client whose answer is botocore's own Stubber: the error as SageMaker sends it."""
    import boto3
    from botocore.stub import Stubber

    from batchlane.engines.sagemaker_aws import call

    api = boto3.client("sagemaker", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
    with Stubber(api) as stub:
        stub.add_client_error("stop_transform_job", service_error_code=code, service_message="said AWS")
        with pytest.raises(Exception) as caught:
            call(api, "stop_transform_job", TransformJobName="x")
    assert type(caught.value).__name__ == kind
    message = str(caught.value)
    assert message.startswith(f"SageMaker StopTransformJob: {code}: said AWS") and "\n" not in message
    assert hint is None or hint in message
