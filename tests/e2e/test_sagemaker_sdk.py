"""The SageMaker Python SDK 2.x against a `batchlane server` process, as docs/howto-sagemaker-sdk.md shows it.

The how-to's Python blocks run unchanged in a subprocess: `Model.transformer(...)`, the SDK's default
`transform()` (wait=True, logs=True: CloudWatch Logs DescribeLogStreams + GetLogEvents against the server), then
`transform(wait=False)` + `Transformer.wait()`, then `stop_transform_job()`. Inputs and outputs live in a bucket on
moto's S3 server, which the batchlane server reads and writes; the model is the echo test model.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tests.models import ECHO_DIR
from tests.servers import aws_cli_env, aws_client, control_plane_server

KEY, SECRET = "AKIDSDKE2E", "sdk-e2e-secret"
HOWTO = Path(__file__).resolve().parents[2] / "docs" / "howto-sagemaker-sdk.md"
# The SDK runs in the script's own process; here it only has to be installed. `make install` installs the `sdk`
# extra, so a missing SDK is a failure, never a skip.
pytestmark = [pytest.mark.slow]


def test_the_sdk_is_installed() -> None:
    assert importlib.util.find_spec("sagemaker") is not None, "install the `sdk` extra: make install"


def sdk_env(home: Path, key: str, secret: str) -> dict[str, str]:
    """The `aws` CLI's clean environment as ``key``, with HOME too: no ~/.config/sagemaker or ~/.aws of the person
    running the tests."""
    return {**aws_cli_env(home, key, secret), "HOME": str(home)}


@pytest.fixture(scope="module")
def bucket(moto_server: str) -> str:
    name = f"sdk-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket=name)
    # One record has the echo model sleep (ECHO_SLOW_S) so the stopped job is still running when it is stopped.
    s3.put_object(
        Bucket=name, Key="in/tickets.txt", Body=b"card charged twice\nslow refund please\nrude agent\n"
    )
    return name


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, moto_server: str) -> Iterator[str]:
    root = tmp_path_factory.mktemp("sdk-server")
    env = {
        # The server's own S3 access (moto's keys), and what its model containers inherit.
        **sdk_env(root, "testing", "testing"),
        "AWS_ENDPOINT_URL_S3": moto_server,
        "BATCHLANE_DEVICE": "cpu",
        "ECHO_SLOW_S": "3",
    }
    with control_plane_server(root, "--workers", "1", key=KEY, secret=SECRET, env=env) as url:
        yield url


def howto_script() -> str:
    """The how-to's Python blocks, in order, as one script."""
    blocks = re.findall(r"```python\n(.*?)```", HOWTO.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) == 2, "docs/howto-sagemaker-sdk.md should hold the two Python blocks this test runs"
    return "\n".join(blocks)


def test_the_sdk_transforms_with_logs_waits_and_stops(server: str, bucket: str, tmp_path: Path) -> None:
    script = tmp_path / "transform.py"
    script.write_text(howto_script(), encoding="utf-8")
    env = {
        **sdk_env(tmp_path, KEY, SECRET),
        "BATCHLANE_ENDPOINT": server,
        "BUCKET": bucket,
        "MODEL_DATA": str(ECHO_DIR),
        "SAGEMAKER_SUPPRESS_V2_WARNING": "1",
    }
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=400, cwd=tmp_path
    )
    output = done.stdout
    assert done.returncode == 0, f"stdout:\n{output}\nstderr:\n{done.stderr[-4000:]}"

    statuses = dict(re.findall(r"^(\S+) (Completed|Stopped|finished)$", output, flags=re.M))
    assert sorted(statuses.values()) == ["Completed", "Stopped", "finished"], output
    # The SDK printed the platform's data-log lines and the container's lines for the jobs it waited on.
    assert output.count("[sagemaker logs]: MaxConcurrentTransforms=") >= 2, output
    assert output.count(f"s3://{bucket}/in/tickets.txt: done: 3 records, 0 failed") >= 2, output
    assert output.count("[batchlane]: job Completed") >= 2, output
    assert "[batchlane]: job Stopped" in output, output
    assert "batchlane.serving.handler: loaded user module" in output, output

    sagemaker = aws_client("sagemaker", server, KEY, SECRET, retries=None)
    for job, printed in statuses.items():
        described = sagemaker.describe_transform_job(TransformJobName=job)
        assert described["TransformJobStatus"] == ("Stopped" if printed == "Stopped" else "Completed")
        assert described["TransformOutput"]["S3OutputPath"] == f"s3://{bucket}/out/"
