"""One output prefix, one active job: concurrent boto3 creates against `batchlane server`, the other spellings of a
prefix (https S3 forms, file://, symlinks), and an output inside the input prefix (API and CLI)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from threading import Barrier

import pytest
from botocore.exceptions import ClientError

from tests.models import CLI, ECHO_DIR, cli_env, transform_request
from tests.servers import aws_client, control_plane_server

KEY, SECRET = "AKIDOUTPUTGUARD", "output-guard-secret"
BUCKET = "guard-bucket"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("output-guard")
    # No workers: accepted jobs stay InProgress, so every create below races against an active job.
    with control_plane_server(root, "--workers", "0", key=KEY, secret=SECRET) as url:
        client = sagemaker(url)
        client.create_model(
            ModelName="echo",
            PrimaryContainer={"Image": "batchlane:local", "ModelDataUrl": str(ECHO_DIR)},
            ExecutionRoleArn="arn:aws:iam::000000000000:role/unused",
        )
        yield url


def sagemaker(url: str):
    return aws_client("sagemaker", url, KEY, SECRET, retries=0, max_pool_connections=32)


def create(client, name: str, input_uri: str, output_uri: str) -> str | ClientError:
    try:
        return client.create_transform_job(**transform_request(name, input_uri, output_uri))[
            "TransformJobArn"
        ]
    except ClientError as exc:
        return exc


def test_twenty_concurrent_creates_on_one_output_accept_exactly_one(server: str) -> None:
    clients = [sagemaker(server) for _ in range(20)]
    start = Barrier(20)

    def attempt(i: int) -> str | ClientError:
        start.wait()
        return create(clients[i], f"race-{i}", f"s3://{BUCKET}/race-in/", f"s3://{BUCKET}/race-out/")

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(attempt, range(20)))

    accepted = [i for i, result in enumerate(results) if isinstance(result, str)]
    assert len(accepted) == 1, [str(r) for r in results]
    winner = f"race-{accepted[0]}"
    refused = [result for result in results if isinstance(result, ClientError)]
    assert len(refused) == 19
    for error in refused:
        assert error.response["Error"]["Code"] == "ResourceInUse"
        assert f"active job {winner}" in error.response["Error"]["Message"]
    listed = clients[0].list_transform_jobs(NameContains="race-", MaxResults=100)["TransformJobSummaries"]
    assert [job["TransformJobName"] for job in listed] == [winner]


def test_other_spellings_of_an_active_s3_output_are_refused(server: str) -> None:
    client = sagemaker(server)
    assert isinstance(
        create(client, "s3-holder", f"s3://{BUCKET}/alias-in/", f"s3://{BUCKET}/alias-out/"), str
    )
    aliases = [
        f"https://{BUCKET}.s3.amazonaws.com/alias-out/run1",
        f"https://{BUCKET}.s3.us-east-1.amazonaws.com/alias-out",
        f"https://s3.us-east-1.amazonaws.com/{BUCKET}/alias-out/",
        f"s3://{BUCKET}/alias-out/sub/",
        f"s3://{BUCKET}/alias-out",
    ]
    for i, alias in enumerate(aliases):
        refused = create(client, f"s3-alias-{i}", f"s3://{BUCKET}/alias-in/", alias)
        assert isinstance(refused, ClientError), (
            f"{alias} was accepted while s3://{BUCKET}/alias-out/ is active"
        )
        assert refused.response["Error"]["Code"] == "ResourceInUse"
        assert "active job s3-holder" in refused.response["Error"]["Message"]
    # A sibling prefix shares no object (outputs are written as <prefix>/...), so it is not refused.
    assert isinstance(
        create(client, "s3-sibling", f"s3://{BUCKET}/alias-in/", f"s3://{BUCKET}/alias-out2/"), str
    )


def test_other_spellings_of_an_active_local_output_are_refused(server: str, tmp_path: Path) -> None:
    client = sagemaker(server)
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "out")
    assert isinstance(create(client, "local-holder", f"{tmp_path}/in/", f"{tmp_path}/out/"), str)
    for i, alias in enumerate(
        [f"{tmp_path}/out", f"file://{tmp_path}/out/", f"file://{tmp_path}/out/deeper", f"{tmp_path}/link/"]
    ):
        refused = create(client, f"local-alias-{i}", f"{tmp_path}/in/", alias)
        assert isinstance(refused, ClientError), f"{alias} was accepted while {tmp_path}/out/ is active"
        assert refused.response["Error"]["Code"] == "ResourceInUse"
        assert "active job local-holder" in refused.response["Error"]["Message"]


@pytest.mark.parametrize(
    ("input_suffix", "output_suffix", "reason"),
    [
        ("in/", "in/", "is inside the input prefix"),
        ("in/", "in/results/", "is inside the input prefix"),
        ("in", "in-results/", "is inside the input prefix"),
        ("data/in/", "data/", "contains the input prefix"),
    ],
)
def test_an_output_inside_the_input_is_refused_by_the_api(
    server: str, input_suffix: str, output_suffix: str, reason: str
) -> None:
    client = sagemaker(server)
    name = "inside-" + input_suffix.replace("/", "") + "-" + output_suffix.replace("/", "")
    for output in (f"s3://{BUCKET}/{output_suffix}", f"https://{BUCKET}.s3.amazonaws.com/{output_suffix}"):
        refused = create(client, name, f"s3://{BUCKET}/{input_suffix}", output)
        assert isinstance(refused, ClientError), f"{output} accepted for input {input_suffix}"
        assert refused.response["Error"]["Code"] == "ValidationException"
        assert "TransformOutput.S3OutputPath" in refused.response["Error"]["Message"]
        assert reason in refused.response["Error"]["Message"]


def test_an_output_inside_the_input_is_refused_by_the_cli(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "home")
    subprocess.run(
        [*CLI, "models", "create", "echo", "--model-data", str(ECHO_DIR)], env=env, check=True, timeout=60
    )
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("a\n")
    done = subprocess.run(
        [*CLI, "transform", "--model", "echo", "--name", "inside", "--input", f"{tmp_path}/in",
         "--output", f"file://{tmp_path}/in/results/", "--content-type", "text/plain"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "TransformOutput.S3OutputPath" in line and "is inside the input prefix" in line
    assert not (tmp_path / "in" / "results").exists()
