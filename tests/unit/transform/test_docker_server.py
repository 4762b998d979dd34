"""The pure parts of the Docker model runtime (transform/docker_server.py): which models run in Docker, the
``docker run`` command line, and the settings that choose the network, the GPUs and the runtime. Running containers
is tested in tests/container/test_model_runtime.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchlane.errors import ValidationError
from batchlane.models import ModelSpec
from batchlane.transform.docker_server import (
    container_name,
    container_runtime,
    detect_gpus,
    docker_image,
    network_setting,
    run_command,
)


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (None, None),
        ("local", None),
        ("batchlane:local", None),
        ("Batchlane:Local", None),
        ("batchlane:latest", "batchlane:latest"),
        (
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/flask:1",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/flask:1",
        ),
    ],
)
def test_which_images_run_in_docker(tmp_path: Path, image: str | None, expected: str | None) -> None:
    spec = ModelSpec(name="m", model_data=str(tmp_path), image=image)
    assert spec.container_image == expected
    assert docker_image(spec, {}) == expected
    assert docker_image(spec, {"BATCHLANE_CONTAINER_RUNTIME": "none"}) is None


def test_a_serve_command_or_url_model_never_runs_its_image() -> None:
    assert ModelSpec(name="m", serve_url="http://127.0.0.1:9", image="x:1").container_image is None
    assert ModelSpec(name="m", serve_command=["srv"], image="x:1").container_image is None


def test_an_unknown_runtime_is_refused_naming_the_setting() -> None:
    with pytest.raises(
        ValidationError, match="BATCHLANE_CONTAINER_RUNTIME='podman' must be one of docker, none"
    ):
        container_runtime({"BATCHLANE_CONTAINER_RUNTIME": "podman"})


def _command(network: str, **overrides: object) -> list[str]:
    options = {
        "docker": "docker", "image": "me/flask:1", "name": "batchlane-job-1", "port": 40001,
        "env_keys": ["A", "SAGEMAKER_BATCH"], "model_dir": Path("/models/m"), "network": network, "gpus": None,
        "labels": {"batchlane.job": "job", "batchlane.runner": "r1"},
    }  # fmt: skip
    options.update(overrides)
    return run_command(**options)  # type: ignore[arg-type]


def test_the_run_command_on_a_bridge_network_publishes_the_port_on_loopback() -> None:
    assert _command("batchlane") == [
        "docker", "run", "--rm", "--name", "batchlane-job-1",
        "--label", "batchlane.job=job", "--label", "batchlane.runner=r1",
        "--network", "batchlane", "-p", "127.0.0.1:40001:8080",
        "--mount", "type=bind,source=/models/m,target=/opt/ml/model,readonly",
        "-e", "A", "-e", "SAGEMAKER_BATCH",
        "me/flask:1", "serve",
    ]  # fmt: skip


def test_the_run_command_on_the_host_network_publishes_nothing_and_passes_gpus() -> None:
    command = _command("host", gpus="all", model_dir=None)
    assert command[command.index("--network") + 1] == "host"
    assert "-p" not in command and "--mount" not in command
    assert command[command.index("--gpus") + 1] == "all"
    assert command[-2:] == ["me/flask:1", "serve"]


def test_a_model_folder_with_a_comma_is_quoted_for_docker_mount() -> None:
    command = _command("bridge", model_dir=Path("/models/a,b"))
    assert (
        command[command.index("--mount") + 1]
        == 'type=bind,"source=/models/a,b",target=/opt/ml/model,readonly'
    )


@pytest.mark.parametrize("image", ["--privileged", "-v/:/host", "me/flask:1 --rm", "", "a\nb"])
def test_an_image_name_that_docker_would_read_as_an_option_is_refused(image: str) -> None:
    with pytest.raises(ValidationError, match="is not a Docker image reference"):
        _command("host", image=image)


def test_container_names_follow_docker_rules_and_differ_per_start() -> None:
    first, second = container_name("My-Job-2025"), container_name("My-Job-2025")
    assert first.startswith("batchlane-my-job-2025-") and first != second


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"BATCHLANE_DOCKER_GPUS": "none"}, None),
        ({"BATCHLANE_DOCKER_GPUS": "all"}, "all"),
        ({"BATCHLANE_DOCKER_GPUS": '"device=0,1"'}, '"device=0,1"'),
    ],
)
def test_the_gpus_setting_wins(env: dict[str, str], expected: str | None) -> None:
    assert detect_gpus(env) == expected


def test_the_network_setting_defaults_to_a_bridge_network_of_batchlanes_own() -> None:
    assert network_setting({}) == "batchlane"
    assert network_setting({"BATCHLANE_DOCKER_NETWORK": "HOST"}) == "host"
    assert network_setting({"BATCHLANE_DOCKER_NETWORK": "bridge"}) == "bridge"
    with pytest.raises(
        ValidationError, match="BATCHLANE_DOCKER_NETWORK='--net=x' must be host or a Docker network"
    ):
        network_setting({"BATCHLANE_DOCKER_NETWORK": "--net=x"})
