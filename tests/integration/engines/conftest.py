"""Fixtures for the SageMaker engine's tests: moto's server behind a recording proxy, and the real CLI pointed at it
through ``AWS_ENDPOINT_URL`` (as a user points boto3 at any endpoint)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.engines.aws_proxy import AwsProxy

ROLE = "arn:aws:iam::123456789012:role/batchlane-sagemaker"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/batchlane:cpu"


@dataclass
class SageMakerSetup:
    """The proxy (``calls``, ``answer``, ``rewrite``), a fresh bucket, the staging prefix, and ``cli(*args)``."""

    proxy: AwsProxy
    bucket: str
    staging: str
    cli: Callable[..., tuple[int, str, str]]
    tmp: Path

    def boto(self, service: str):  # noqa: ANN201 - a boto3 client of moto, behind the proxy
        import boto3

        return boto3.client(service, endpoint_url=self.proxy.url, region_name="us-east-1")


@pytest.fixture()
def sm(
    moto_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[SageMakerSetup]:
    """The real CLI (``batchlane.cli.main.main``) talking to moto through a recording proxy; a job store of its own."""
    from batchlane.cli.main import main

    with AwsProxy(moto_server) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        monkeypatch.setenv("AWS_REGION", "us-east-1")
        monkeypatch.setenv("BATCHLANE_DB", str(tmp_path / "state" / "jobs.db"))
        for name in ("BATCHLANE_SAGEMAKER_ROLE", "BATCHLANE_SAGEMAKER_STAGING", "BATCHLANE_SAGEMAKER_IMAGE"):
            monkeypatch.delenv(name, raising=False)
        bucket = f"bl-{uuid.uuid4().hex[:12]}"
        import boto3

        boto3.client("s3", endpoint_url=proxy.url, region_name="us-east-1").create_bucket(Bucket=bucket)

        def cli(*args: str) -> tuple[int, str, str]:
            capsys.readouterr()
            try:
                main(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            else:  # pragma: no cover - main always exits
                code = 0
            out, err = capsys.readouterr()
            return code, out, err

        proxy.clear()
        yield SageMakerSetup(proxy, bucket, f"s3://{bucket}/staging", cli, tmp_path)


def unique(prefix: str) -> str:
    """A name no other test uses on the shared moto server."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
