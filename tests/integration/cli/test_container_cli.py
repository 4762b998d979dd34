"""`batchlane container build|push` without building: --dry-run output, Docker errors, and the ECR calls on moto.

The image itself is built and run in tests/container (`make test-containers`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from batchlane.container.push import ensure_repository, login_password, plan_push

REPO = Path(__file__).resolve().parents[3]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full = dict(os.environ, PYTHONPATH=str(REPO / "src"), **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "batchlane", "container", *args],
        capture_output=True,
        text=True,
        env=full,
        timeout=120,
    )


def test_push_dry_run_prints_the_ecr_commands_for_the_account_and_region() -> None:
    done = cli(
        "push", "--dry-run", "--account", "123456789012", "--region", "eu-west-1", "--image", "batchlane:1.2"
    )
    assert done.returncode == 0, done.stderr
    registry = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    assert done.stdout.splitlines() == [
        "aws ecr describe-repositories --repository-names batchlane --region eu-west-1 >/dev/null 2>&1"
        " || aws ecr create-repository --repository-name batchlane --region eu-west-1",
        f"aws ecr get-login-password --region eu-west-1 | docker login --username AWS --password-stdin {registry}",
        f"docker tag batchlane:1.2 {registry}/batchlane:1.2",
        f"docker push {registry}/batchlane:1.2",
    ]


def test_push_dry_run_with_another_repository_and_tag() -> None:
    done = cli(
        "push", "--dry-run", "--account", "123456789012", "--region", "cn-north-1",
        "--repository", "team/classifier", "--tag", "v7",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == (
        "docker push 123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/team/classifier:v7"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--account", "12345", "--region", "eu-west-1"), "error: --account must be 12 digits, got '12345'"),
        (("--region", "eu-west-1"), "error: --dry-run needs --account"),
        (
            ("--account", "123456789012", "--region", "eu-west-1", "--repository", "Bad Name"),
            "error: --repository 'Bad Name' is not a valid ECR repository name",
        ),
    ],
)
def test_push_dry_run_refuses_bad_arguments_in_one_line(args: tuple[str, ...], message: str) -> None:
    done = cli("push", "--dry-run", *args)
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith(message), done.stderr


def test_build_dry_run_stages_the_pinned_cpu_torch_wheel(tmp_path: Path) -> None:
    wheel = tmp_path / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
    wheel.write_bytes(b"not really a wheel")
    done = cli(
        "build", "--dry-run", "--context", str(REPO), "--torch-wheel", str(wheel),
        "--base-image", "local/python:3.11-slim", "--network", "host", "--tag", "bl:t",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"mkdir -p {REPO}/deploy/wheels && cp {wheel} {REPO}/deploy/wheels/",
        f"docker build --network host -f {REPO}/deploy/Dockerfile --build-arg BASE_IMAGE=local/python:3.11-slim"
        f" -t bl:t {REPO}",
    ]


def test_build_refuses_a_torch_wheel_other_than_the_pinned_one(tmp_path: Path) -> None:
    wheel = tmp_path / "torch-2.9.0-cp311-cp311-manylinux_2_28_x86_64.whl"
    wheel.write_bytes(b"x")
    done = cli("build", "--dry-run", "--context", str(REPO), "--torch-wheel", str(wheel))
    assert done.returncode != 0
    assert "constraints.txt pins torch==2.13.0+cpu" in done.stderr


def test_gpu_build_dry_run_uses_the_cuda_dockerfile_and_stages_nothing() -> None:
    done = cli("build", "--dry-run", "--gpu", "--context", str(REPO))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"docker build -f {REPO}/deploy/Dockerfile.gpu --build-arg "
        f"BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04 -t batchlane:latest {REPO}"
    ]


def test_no_docker_daemon_is_one_line_that_says_how_to_start_one(tmp_path: Path) -> None:
    socket = tmp_path / "docker.sock"
    done = cli(
        "push", "--account", "123456789012", "--region", "eu-west-1", env={"DOCKER_HOST": f"unix://{socket}"}
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: no Docker daemon at unix://{socket} (")
    assert "start it with `sudo systemctl start docker`" in lines[0]


def test_ecr_repository_is_created_once_and_the_login_token_decoded(moto_server: str) -> None:
    # The calls `container push` makes before docker's login/tag/push, against moto's ECR (moto has no registry
    # to push image layers to, so the docker half is covered by --dry-run's output above).
    ecr = boto3.client("ecr", endpoint_url=moto_server, region_name="eu-west-1")
    plan = plan_push(
        "batchlane:latest", account="123456789012", region="eu-west-1", repository=None, tag=None
    )
    assert ensure_repository(ecr, plan) is True
    assert ensure_repository(ecr, plan) is False
    names = [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]]
    assert names.count("batchlane") == 1
    assert login_password(ecr, plan)


def test_push_dry_run_to_another_registry_host() -> None:
    done = cli(
        "push", "--dry-run", "--account", "123456789012", "--region", "eu-west-1",
        "--registry", "127.0.0.1:5000", "--image", "batchlane:dev",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1:] == [
        "aws ecr get-login-password --region eu-west-1 | docker login --username AWS --password-stdin 127.0.0.1:5000",
        "docker tag batchlane:dev 127.0.0.1:5000/batchlane:dev",
        "docker push 127.0.0.1:5000/batchlane:dev",
    ]
