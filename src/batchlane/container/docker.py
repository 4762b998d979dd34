"""Running the ``docker`` CLI: finding it, checking its daemon, and one-line errors when either is missing.

Shared by ``batchlane container build|push`` and anything else that starts containers.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Sequence

from batchlane.errors import BatchlaneError

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
START_HINT = "start it with `sudo systemctl start docker` (or `sudo dockerd &`)"


class DockerUnavailable(BatchlaneError):
    """The docker CLI is not installed, or no Docker daemon answers it."""

    code = "DockerUnavailable"


def docker_host(env: dict[str, str] | None = None) -> str:
    """The daemon address the docker CLI talks to: ``$DOCKER_HOST`` or the default socket."""
    env = dict(os.environ) if env is None else env
    return env.get("DOCKER_HOST", "").strip() or DEFAULT_DOCKER_HOST


def require_docker(timeout: float = 20) -> str:
    """Return the docker CLI's path once its daemon answers; raise ``DockerUnavailable`` with the fix otherwise."""
    cli = shutil.which("docker")
    if cli is None:
        raise DockerUnavailable(
            "docker: command not found; install Docker (e.g. `apt-get install docker.io`)"
        )
    try:
        probe = subprocess.run(
            [cli, "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise DockerUnavailable(
            f"the Docker daemon at {docker_host()} did not answer within {timeout:g}s"
        ) from None
    if probe.returncode != 0 or not probe.stdout.strip():
        detail = (probe.stderr.strip().splitlines() or ["no answer"])[-1]
        raise DockerUnavailable(f"no Docker daemon at {docker_host()} ({detail}); {START_HINT}")
    return cli


def format_command(argv: Sequence[str]) -> str:
    """One shell-quoted line, as ``--dry-run`` prints it."""
    return shlex.join(argv)


def run_docker(argv: Sequence[str], *, input_text: str | None = None) -> None:
    """Run a docker command with its output on the terminal; a failure raises ``BatchlaneError`` naming it.

    ``input_text`` goes to stdin (``docker login --password-stdin``) and is never echoed or logged.
    """
    result = subprocess.run(list(argv), input=input_text, text=True)
    if result.returncode != 0:
        shown = format_command(argv[:3]) + (" …" if len(argv) > 3 else "")
        raise BatchlaneError(f"`{shown}` failed with exit status {result.returncode}")
