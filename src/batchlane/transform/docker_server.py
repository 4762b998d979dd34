"""A model whose ``PrimaryContainer.Image`` is a real image runs in Docker, the way SageMaker runs it
(docs/containers.md, "Running any SageMaker container locally").

``DockerModelContainer`` is a ``ModelContainer`` whose process is an attached ``docker run``: the start-up deadline,
the ``/ping`` health check, the failure reasons (with the container log's tail), restarts and the log file are the
subprocess server's. What differs is the command and the stop:

* ``docker run --rm IMAGE serve`` with the model folder (an archive is extracted first, safely) bind-mounted
  read-only at ``/opt/ml/model``; the job's environment (the model's ``Environment``, the job's over it, the
  ``SAGEMAKER_*`` batch variables) is passed by name (``-e KEY``, values never on the command line), and nothing
  else: the container sees none of batchlane's own variables or credentials;
* a port of its own per container (each replica is one container): on a bridge network (default: ``batchlane``, a
  user-defined bridge created when missing, which works even where the daemon has no default bridge) the
  container listens on 8080 as on SageMaker and ``-p 127.0.0.1:<port>:8080`` publishes it on loopback only; on the
  ``host`` network (``BATCHLANE_DOCKER_NETWORK=host``) the container must listen on ``SAGEMAKER_BIND_TO_PORT``,
  which is set to that port;
* ``--gpus`` when the machine has an NVIDIA GPU (``CUDA_VISIBLE_DEVICES`` picks the devices);
* labels ``batchlane.job`` and ``batchlane.runner``: a runner removes what a dead runner of the same job left behind
  before it starts its own (``remove_orphans``); a runner killed outright takes its container with it, since the
  attached client dies with its parent and forwards the SIGTERM;
* stop: ``docker stop`` (SIGTERM, the grace, then SIGKILL), then the container is removed.

Without a Docker daemon the job fails with a one-line reason saying how to start one (``DockerUnavailable``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from batchlane import settings
from batchlane.container.docker import DockerUnavailable, require_docker
from batchlane.errors import ModelLoadError, ValidationError
from batchlane.transform.container import STOP_GRACE_S, ModelContainer

if TYPE_CHECKING:
    from batchlane.models import ModelSpec

log = logging.getLogger(__name__)

MODEL_MOUNT = "/opt/ml/model"
CONTAINER_PORT = 8080
JOB_LABEL = "batchlane.job"
RUNNER_LABEL = "batchlane.runner"
DOCKER_TIMEOUT_S = 30.0  # a docker CLI call that is not `run` or `pull`
DEFAULT_NETWORK = "batchlane"
NETWORK_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")
RUNTIMES = ("docker", "none")
CAPTURE_PREFIX = "BATCHLANE_CAPTURE_"
RUNTIME_HINT = "or set BATCHLANE_CONTAINER_RUNTIME=none to serve the model with batchlane itself"
IMAGE_REFERENCE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._/:@-]{0,254}")


def container_runtime(env: Mapping[str, str] | None = None) -> str:
    """``BATCHLANE_CONTAINER_RUNTIME``: ``docker`` (default: a model with a real image runs in it) or ``none``
    (images are informational and batchlane serves every model itself)."""
    env = os.environ if env is None else env
    value = env.get(settings.BATCHLANE_CONTAINER_RUNTIME, "").strip().lower() or "docker"
    if value not in RUNTIMES:
        raise ValidationError(
            f"{settings.BATCHLANE_CONTAINER_RUNTIME}={value!r} must be one of {', '.join(RUNTIMES)}",
            field=settings.BATCHLANE_CONTAINER_RUNTIME,
        )
    return value


def docker_image(model: ModelSpec, env: Mapping[str, str] | None = None) -> str | None:
    """The image to run in Docker for ``model`` (``ModelSpec.container_image``), or None when batchlane serves it
    itself (no real image, or ``BATCHLANE_CONTAINER_RUNTIME=none``)."""
    image = model.container_image
    return image if image is not None and container_runtime(env) == "docker" else None


def docker_binary() -> str:
    """The docker CLI's path; ``DockerUnavailable`` when it is not installed."""
    found = shutil.which("docker")
    if found is None:
        raise DockerUnavailable(
            "the model's image runs in Docker, but the docker CLI is not installed: install Docker "
            f"(e.g. `sudo apt-get install docker.io`), {RUNTIME_HINT}"
        )
    return found


def _docker(args: Sequence[str], *, timeout_s: float = DOCKER_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [docker_binary(), *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no answer"


def check_daemon() -> None:
    """``DockerUnavailable`` (one line, saying how to start one) unless a Docker daemon answers (the same check and
    wording as ``batchlane container build``)."""
    docker_binary()
    try:
        require_docker(timeout=15)
    except DockerUnavailable as exc:
        raise DockerUnavailable(
            f"the model's image runs in Docker, but {exc.message}; {RUNTIME_HINT}"
        ) from None


def network_setting(env: Mapping[str, str] | None = None) -> str:
    """``BATCHLANE_DOCKER_NETWORK``: ``host``, or the name of a bridge network to publish each container's port
    from (default ``batchlane``; ``bridge`` is Docker's default network)."""
    env = os.environ if env is None else env
    value = env.get(settings.BATCHLANE_DOCKER_NETWORK, "").strip() or DEFAULT_NETWORK
    if not NETWORK_NAME.fullmatch(value):
        raise ValidationError(
            f"{settings.BATCHLANE_DOCKER_NETWORK}={value!r} must be host or a Docker network name",
            field=settings.BATCHLANE_DOCKER_NETWORK,
        )
    return "host" if value.lower() == "host" else value


def ensure_network(name: str) -> None:
    """Create the bridge network ``name`` unless it exists (``host`` and Docker's ``bridge`` always do); a
    concurrent runner creating it first is fine."""
    if name in ("host", "bridge") or _docker(["network", "inspect", name]).returncode == 0:
        return
    created = _docker(["network", "create", name])
    if created.returncode != 0 and _docker(["network", "inspect", name]).returncode != 0:
        raise ModelLoadError(f"cannot create the Docker network {name}: {_last_line(created.stderr)}")


def detect_gpus(env: Mapping[str, str] | None = None) -> str | None:
    """The value of ``docker run --gpus``, or None for no GPUs. ``BATCHLANE_DOCKER_GPUS`` (``all``, ``none``, or
    docker's own syntax such as ``device=0,1``) wins; else ``all`` (or the devices of ``CUDA_VISIBLE_DEVICES``)
    when an NVIDIA GPU is present."""
    env = os.environ if env is None else env
    value = env.get(settings.BATCHLANE_DOCKER_GPUS, "").strip()
    if value:
        return None if value.lower() == "none" else value
    if not (Path("/dev/nvidia0").exists() or Path("/dev/nvidiactl").exists()):
        return None
    visible = env.get("CUDA_VISIBLE_DEVICES", "").strip()
    if visible and visible != "all":
        # docker reads --gpus as CSV: a device list with commas must be quoted.
        return f'"device={visible}"'
    return "all"


def check_image(image: str) -> str:
    """``image`` if it reads as a Docker image reference; ``ValidationError`` otherwise. A name starting with ``-``
    would be read by ``docker run`` as an option (``--privileged``, ``--volume=/:/host``): never passed."""
    if not IMAGE_REFERENCE.fullmatch(image):
        raise ValidationError(
            f"Image {image!r} is not a Docker image reference (e.g. my-model:1 or "
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/my-model@sha256:...)",
            field="Image",
        )
    return image


def _mount(source: Path) -> str:
    field = f"source={source}"
    if any(char in field for char in ',"'):
        field = '"' + field.replace('"', '""') + '"'
    return f"type=bind,{field},target={MODEL_MOUNT},readonly"


def run_command(
    *,
    docker: str,
    image: str,
    name: str,
    port: int,
    env_keys: Sequence[str],
    model_dir: Path | None,
    network: str,
    gpus: str | None,
    labels: Mapping[str, str],
) -> list[str]:
    """The ``docker run`` argument list (pure: tests read it). Environment values are not in it: ``-e KEY`` takes
    each from the docker client's own environment."""
    command = [docker, "run", "--rm", "--name", name]
    for key, value in labels.items():
        command += ["--label", f"{key}={value}"]
    command += ["--network", network]
    if network != "host":
        command += ["-p", f"127.0.0.1:{port}:{CONTAINER_PORT}"]
    if model_dir is not None:
        command += ["--mount", _mount(model_dir)]
    if gpus:
        command += ["--gpus", gpus]
    for key in env_keys:
        command += ["-e", key]
    return [*command, check_image(image), "serve"]


def container_name(job: str) -> str:
    """A container name for a replica of ``job``: docker's name rules, unique per start."""
    stem = re.sub(r"[^a-zA-Z0-9_.-]", "-", job.lower())[:40].strip("-.") or "job"
    return f"batchlane-{stem}-{uuid.uuid4().hex[:8]}"


def remove_orphans(job: str, keep_runner: str) -> list[str]:
    """Remove the containers of ``job`` that a runner other than ``keep_runner`` left (it died, or lost the job's
    lease); returns their ids."""
    answer = _docker(
        [
            "ps",
            "-aq",
            "--filter",
            f"label={JOB_LABEL}={job}",
            "--format",
            f'{{{{.ID}}}} {{{{.Label "{RUNNER_LABEL}"}}}}',
        ]
    )
    orphans = [
        parts[0]
        for parts in (line.split(" ", 1) for line in answer.stdout.splitlines() if line.strip())
        if (parts[1] if len(parts) > 1 else "") != keep_runner
    ]
    if orphans:
        log.info(
            "job %s: removing %d container(s) a dead runner left: %s", job, len(orphans), ", ".join(orphans)
        )
        _docker(["rm", "-f", *orphans])
    return orphans


def ensure_image(image: str, on_wait: Callable[[], None] | None = None) -> None:
    """Pull ``image`` unless it is here already (outside the start-up deadline, as SageMaker pulls before it starts
    the clock); ``ModelLoadError`` with docker's reason when it cannot be pulled."""
    if _docker(["image", "inspect", "--format", "{{.Id}}", image]).returncode == 0:
        return
    log.info("pulling %s", image)
    with subprocess.Popen(
        [docker_binary(), "pull", "--quiet", image],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as pull:
        while pull.poll() is None:
            if on_wait is not None:
                try:
                    on_wait()
                except BaseException:
                    pull.kill()
                    raise
            time.sleep(0.2)
        error = pull.stderr.read() if pull.stderr else ""
    if pull.returncode != 0:
        raise ModelLoadError(
            f"image {image} is not on this machine and cannot be pulled ({_last_line(error)}): build it "
            "(`docker build -t IMAGE ...`) or log in to its registry (`docker login`)"
        )


class DockerModelContainer(ModelContainer):
    """``image`` run as SageMaker runs it (module docstring), for the job ``job`` run by ``runner``. ``model_dir``
    is the model folder to mount at /opt/ml/model (None: the image holds its model); ``env`` the container's whole
    environment. Use as a context manager, like ``ModelContainer``."""

    def __init__(
        self,
        image: str,
        *,
        model_dir: str | Path | None,
        job: str,
        runner: str,
        env: Mapping[str, str] | None = None,
        startup_timeout_s: float = 120.0,
        log_file: str | Path | None = None,
        on_wait: Callable[[], None] | None = None,
        network: str | None = None,
        gpus: str | None = None,
    ) -> None:
        # serve_command is a placeholder: _command builds the real one for each start (a new name and port).
        super().__init__(
            serve_command=["docker"],
            env=env,
            startup_timeout_s=startup_timeout_s,
            log_file=log_file,
            on_wait=on_wait,
        )
        self.image = image
        self.mount = Path(model_dir).resolve() if model_dir is not None else None
        self.job = job.lower()
        self.runner = runner
        self.network = network
        self.gpus = gpus
        self.name: str | None = None
        self._checked = False

    def _command(self, port: int) -> list[str]:
        assert self.network is not None
        self.name = container_name(self.job)
        keys = [key for key in self.env if key != settings.SAGEMAKER_BIND_TO_PORT]
        if self.network == "host":
            keys.append(settings.SAGEMAKER_BIND_TO_PORT)  # ModelContainer.start sets it to the port it picked
        return run_command(
            docker=docker_binary(),
            image=self.image,
            name=self.name,
            port=port,
            env_keys=keys,
            model_dir=self.mount,
            network=self.network,
            gpus=self.gpus,
            labels={JOB_LABEL: self.job, RUNNER_LABEL: self.runner},
        )

    def start(self) -> str:
        """Check the daemon, remove a dead runner's containers, pull the image if needed, then start the container
        and wait until ``/ping`` answers 200; return the base URL."""
        if not self._checked:
            check_daemon()
            remove_orphans(self.job, self.runner)
            ensure_image(self.image, self.on_wait)
            if self.network is None:
                self.network = network_setting()
            ensure_network(self.network)
            if self.gpus is None:
                self.gpus = detect_gpus()
            self._checked = True
        return super().start()

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """``docker stop`` the container (SIGTERM, ``grace_s``, SIGKILL), end the client, remove the container."""
        name, self.name = self.name, None
        if name is not None:
            with contextlib.suppress(subprocess.TimeoutExpired, DockerUnavailable):
                _docker(
                    ["stop", "--time", str(max(0, round(grace_s))), name],
                    timeout_s=grace_s + DOCKER_TIMEOUT_S,
                )
        super().stop(grace_s=grace_s)
        if name is not None:
            _remove(name)


def _remove(name: str, wait_s: float = 10.0) -> None:
    """Remove container ``name`` and wait until it is gone (``--rm`` removes it too, a moment after it exits)."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        _docker(["rm", "-f", name])
        deadline = time.monotonic() + wait_s
        while _docker(["container", "inspect", "--format", "{{.Id}}", name]).returncode == 0:
            if time.monotonic() >= deadline:
                log.warning("container %s is still there after %g s", name, wait_s)
                return
            time.sleep(0.1)


def docker_model_container(
    image: str,
    model_data: Path | None,
    cache_dir: Path,
    *,
    job: str,
    runner: str,
    env: Mapping[str, str],
    **options: object,
) -> DockerModelContainer:
    """A ``DockerModelContainer`` for a job's model: ``model_data`` (a folder, or a ``model.tar.gz`` extracted
    safely into ``cache_dir``, as SageMaker extracts ``ModelDataUrl`` before the container starts) is mounted at
    /opt/ml/model; None mounts nothing (the image holds its model). ``options`` go to the constructor (startup_timeout_s, log_file, on_wait)."""
    from batchlane.serving.archive import resolve_model_dir

    check_image(image)
    folder = None
    if model_data is not None:
        folder = resolve_model_dir(Path(model_data), Path(cache_dir) / "models-extracted")
        if folder != Path(model_data):
            # Our extraction folder is private (mkdtemp); the image's user may not be ours (a non-root USER).
            folder.chmod(0o755)
    dropped = sorted(key for key in env if key.startswith(CAPTURE_PREFIX))
    if dropped:
        # Capture is batchlane serve's; a container image is not told to capture (docs/containers.md).
        log.warning("job %s: DataCaptureConfig is not applied to a model that runs in a container image", job)
    container_env = {key: value for key, value in env.items() if not key.startswith(CAPTURE_PREFIX)}
    return DockerModelContainer(image, model_dir=folder, job=job, runner=runner, env=container_env, **options)  # type: ignore[arg-type]
