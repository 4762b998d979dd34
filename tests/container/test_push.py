"""`batchlane container push` for real: ECR's API on moto's server, the image pushed to a local registry.

moto implements ECR's API but not a Docker registry, so the push goes to a local registry (Debian's
`docker-registry`, the CNCF distribution) through `--registry`, while the repository check, creation and
`get_authorization_token` go to moto. Docker lets 127.0.0.0/8 registries speak plain HTTP.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from batchlane.testing import free_port, wait_for_http
from tests.container.conftest import BASE_IMAGE, cli_env


@pytest.fixture()
def local_registry(tmp_path: Path) -> Iterator[str]:
    """A Docker registry on a free loopback port (filesystem storage under tmp_path); yields host:port."""
    binary = shutil.which("docker-registry")
    assert binary, "the push test needs a local registry: apt-get install docker-registry"
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'registry'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\nlog:\n  level: warn\n"
    )
    process = subprocess.Popen(
        [binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/v2/", timeout=30, process=process)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_push_creates_the_ecr_repository_logs_in_and_pushes(
    docker_cli: str, local_registry: str, moto_server: str, tmp_path: Path
) -> None:
    env = cli_env()
    env.update(
        AWS_ENDPOINT_URL=moto_server,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        DOCKER_CONFIG=str(tmp_path / "docker-config"),  # docker login writes here, not to ~/.docker
    )
    argv = [sys.executable, "-m", "batchlane", "container", "push", "--image", BASE_IMAGE]
    argv += [
        "--repository",
        "team/pushed",
        "--tag",
        "t1",
        "--region",
        "eu-west-1",
        "--registry",
        local_registry,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "created ECR repository team/pushed in eu-west-1" in done.stdout
    assert f"pushed {local_registry}/team/pushed:t1" in done.stdout

    ecr = boto3.client("ecr", endpoint_url=moto_server, region_name="eu-west-1")
    assert [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]] == ["team/pushed"]
    tags = httpx.get(f"http://{local_registry}/v2/team/pushed/tags/list").json()
    assert tags == {"name": "team/pushed", "tags": ["t1"]}
    assert (tmp_path / "docker-config" / "config.json").is_file()

    # Pushing again finds the repository and creates nothing.
    again = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "created ECR repository" not in again.stdout
    subprocess.run([docker_cli, "rmi", f"{local_registry}/team/pushed:t1"], capture_output=True)
