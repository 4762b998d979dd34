"""Fixtures of the container tests: the batchlane image built from deploy/Dockerfile, and containers run from it.

These tests need a Docker daemon. They are marked ``container`` and left out of ``make test``; ``make
test-containers`` (and .ci/run, after starting Docker) runs them with ``-m container``. A missing daemon is an error
here, never a skip: a green run means the image was built and exercised.

The base image defaults to ``local/python:3.11-slim`` (built by the machine's docker-up script, standing in for
``python:3.11-slim`` where no registry is reachable); ``BATCHLANE_TEST_BASE_IMAGE`` picks another. Builds run with
``--network host`` (the daemon may have no bridge network), and so do the containers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchlane.container.docker import require_docker

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BASE_IMAGE = os.environ.get("BATCHLANE_TEST_BASE_IMAGE", "local/python:3.11-slim")
IMAGE_TAG = "batchlane:container-tests"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Every test under tests/container is a container test; unless the run selects them (`-m container`), they are
    # deselected so `make test` and `make test-fast` never need Docker.
    mine = [item for item in items if item.path.is_relative_to(HERE)]
    for item in mine:
        item.add_marker(pytest.mark.container)
        item.add_marker(pytest.mark.slow)
    if "container" not in (config.option.markexpr or ""):
        config.hook.pytest_deselected(items=mine)
        items[:] = [item for item in items if not item.path.is_relative_to(HERE)]


def cli_env() -> dict[str, str]:
    """The environment for `batchlane` subprocesses: this checkout's source first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    return env


def build_image(tag: str = IMAGE_TAG) -> subprocess.CompletedProcess:
    """`batchlane container build` of the CPU image (the real CLI); output captured for the tests to read."""
    argv = [sys.executable, "-m", "batchlane", "container", "build", "--context", str(REPO), "--tag", tag]
    argv += ["--base-image", BASE_IMAGE, "--network", "host"]
    return subprocess.run(argv, capture_output=True, text=True, env=cli_env(), timeout=1800)


@pytest.fixture(scope="session")
def docker_cli() -> str:
    """The docker CLI's path; fails (never skips) when no daemon answers."""
    return require_docker()


@pytest.fixture(scope="session")
def batchlane_image(docker_cli: str) -> str:
    """The batchlane CPU image built from deploy/Dockerfile (BASE_IMAGE=local/python:3.11-slim); yields its tag.

    Built once per session; later sessions reuse Docker's layer cache, so a rebuild after a source change takes
    seconds (only batchlane's own wheel layer changes).
    """
    result = build_image()
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return IMAGE_TAG


class Container:
    """A container started with `docker run -d`; removed at teardown."""

    def __init__(self, docker: str, container_id: str) -> None:
        self.docker = docker
        self.id = container_id

    def inspect(self, fmt: str) -> str:
        return subprocess.run(
            [self.docker, "inspect", "--format", fmt, self.id], capture_output=True, text=True, check=True
        ).stdout.strip()

    def logs(self) -> str:
        done = subprocess.run([self.docker, "logs", self.id], capture_output=True, text=True)
        return done.stdout + done.stderr

    def wait(self, timeout: float = 60) -> int:
        done = subprocess.run([self.docker, "wait", self.id], capture_output=True, text=True, timeout=timeout)
        return int(done.stdout.strip())

    def stop(self, grace_s: int = 30) -> float:
        """`docker stop` (SIGTERM, then SIGKILL after ``grace_s``); returns the seconds it took."""
        started = time.monotonic()
        subprocess.run([self.docker, "stop", "-t", str(grace_s), self.id], capture_output=True, check=True)
        return time.monotonic() - started


@pytest.fixture()
def run_container(docker_cli: str) -> Iterator:
    """``run_container(image, *command, env={}, volumes={host: target}, user=None)`` starts a container on the host
    network (detached) and returns a :class:`Container`; every one started is removed at the end."""
    started: list[Container] = []

    def run(image: str, *command: str, env=None, volumes=None, user: str | None = None) -> Container:
        argv = [docker_cli, "run", "-d", "--network", "host"]
        for key, value in (env or {}).items():
            argv += ["-e", f"{key}={value}"]
        for source, target in (volumes or {}).items():
            argv += ["-v", f"{source}:{target}"]
        if user:
            argv += ["--user", user]
        done = subprocess.run([*argv, image, *command], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        container = Container(docker_cli, done.stdout.strip())
        started.append(container)
        return container

    yield run
    for container in started:
        subprocess.run([docker_cli, "rm", "-f", container.id], capture_output=True)
