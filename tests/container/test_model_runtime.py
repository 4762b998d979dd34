"""A model whose Image is a real image runs in Docker (docs/containers.md, "Running any SageMaker container
locally"): the real `batchlane models create` / `transform` / `jobs stop|resume` commands and boto3 against `batchlane
control-plane`, with a third-party Flask container (tests/container/fixtures/flask_model) and batchlane's own image;
the environment the container sees, no container left behind, and a missing daemon. Needs a Docker daemon: without
one these tests fail, never skip."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.models import CLI, ECHO_DIR, cli_env, cli_ok, run_cli, transform_request, tree, wait_until
from tests.servers import aws_client, control_plane_server

pytestmark = pytest.mark.container

FIXTURES = Path(__file__).parent / "fixtures"
BASE_IMAGE = os.environ.get("BATCHLANE_TEST_BASE_IMAGE", "local/python:3.11-slim")  # as conftest.py
FLASK_IMAGE = "batchlane-test/flask-model:1"


def docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def job_containers(job: str) -> list[str]:
    """Every container (running or not) labelled with ``job``."""
    return docker("ps", "-aq", "--filter", f"label=batchlane.job={job}").stdout.split()


@pytest.fixture(scope="session")
def flask_image(docker_cli: str) -> str:
    """The Flask container, built from its Dockerfile FROM the local base image (cached after the first build);
    ``docker_cli`` (conftest.py) fails the session without a daemon."""
    built = docker(
        "build", "--network", "host", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "-t", FLASK_IMAGE,
        str(FIXTURES / "flask_model"), timeout=600,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    return FLASK_IMAGE


@pytest.fixture()
def model_archive(tmp_path: Path) -> Path:
    """The Flask model's data as SageMaker takes it: a model.tar.gz holding prefix.txt."""
    folder = tmp_path / "model-src"
    folder.mkdir()
    (folder / "prefix.txt").write_text("flask:", encoding="utf-8")
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder / "prefix.txt", arcname="prefix.txt")
    return archive


def create_model(env: dict[str, str], name: str, image: str, model_data: Path, *model_env: str) -> None:
    args = ["models", "create", name, "--model-data", str(model_data), "--image", image]
    for item in model_env:
        args += ["--env", item]
    cli_ok(run_cli(args, env))


def write_input(folder: Path, lines: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "records.csv").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return folder


def transform_args(model: str, name: str, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "transform", "--model", model, "--name", name, "--input", f"{data}/", "--output", str(out),
        "--content-type", "text/csv", "--split-type", "Line", "-q", *extra,
    ]  # fmt: skip


def describe(env: dict[str, str], name: str) -> dict:
    return json.loads(cli_ok(run_cli(["jobs", "describe", name], env)).stdout)


@pytest.mark.parametrize("network", ["", "host"], ids=["bridge-network", "host-network"])
def test_a_transform_job_runs_a_third_party_container_as_sagemaker_does(
    tmp_path: Path, flask_image: str, model_archive: Path, network: str
) -> None:
    # The runner holds credentials of its own; none of them may reach the model's container.
    env = cli_env(
        tmp_path / "home",
        AWS_ACCESS_KEY_ID="AKIDRUNNER",
        AWS_SECRET_ACCESS_KEY="runner-secret",
        BATCHLANE_SECRET_ACCESS_KEY="control-plane-secret",
        BATCHLANE_DOCKER_NETWORK=network,
    )
    create_model(env, "flask", flask_image, model_archive, "FROM_MODEL=model", "OVERRIDDEN=model")
    lines = ["hello", "world", "env:FROM_MODEL", "env:OVERRIDDEN", "env:SAGEMAKER_BATCH"]
    lines += ["env:SAGEMAKER_MAX_CONCURRENT_TRANSFORMS", "env:SAGEMAKER_BATCH_STRATEGY"]
    lines += ["env:SAGEMAKER_MAX_PAYLOAD_IN_MB", "env:SAGEMAKER_BIND_TO_PORT"]
    lines += ["env:AWS_ACCESS_KEY_ID", "env:AWS_SECRET_ACCESS_KEY", "env:BATCHLANE_SECRET_ACCESS_KEY"]
    lines += ["env:BATCHLANE_HOME"]
    data, out = write_input(tmp_path / "in", lines), tmp_path / "out"
    args = transform_args("flask", "flask-job", data, out, "--env", "OVERRIDDEN=job", "--concurrency", "2")
    cli_ok(run_cli([*args, "--strategy", "MultiRecord", "--max-payload-mb", "1"], env, timeout=300))

    results = tree(out)["records.csv.out"].decode().splitlines()
    assert results[:2] == ["flask:HELLO", "flask:WORLD"]  # model data extracted and mounted at /opt/ml/model
    # The job's Environment over the model's, then SageMaker's batch variables.
    assert results[2:8] == ["model", "job", "true", "2", "MULTI_RECORD", "1"]
    # Bridge: the container listens on 8080 as on SageMaker; host: on the free port it is given.
    assert results[8].isdigit() if network == "host" else results[8] == "<unset>"
    assert results[9:] == ["<unset>"] * 4  # no credentials, nothing of batchlane's own
    assert job_containers("flask-job") == []
    log = cli_ok(run_cli(["jobs", "logs", "flask-job", "--container"], env)).stdout
    assert "Running on" in log or "Serving Flask app" in log  # the container's own output is in the job's log


def test_the_control_plane_runs_a_model_image_created_with_boto3(
    tmp_path: Path, flask_image: str, model_archive: Path
) -> None:
    # `batchlane control-plane` as a subprocess; its own key (BATCHLANE_SECRET_ACCESS_KEY) must not reach the model.
    with control_plane_server(tmp_path, "--workers", "1", key="AKIDCP", secret="cp-secret") as url:
        sm = aws_client("sagemaker", url, "AKIDCP", "cp-secret")
        sm.create_model(
            ModelName="flask",
            PrimaryContainer={
                "Image": flask_image,
                "ModelDataUrl": str(model_archive),
                "Environment": {"FROM_MODEL": "model"},
            },
            ExecutionRoleArn="arn:aws:iam::000000000000:role/unused",
        )
        data = write_input(tmp_path / "in", ["boto", "env:FROM_MODEL", "env:BATCHLANE_SECRET_ACCESS_KEY"])
        request = transform_request(
            "cp-job", f"{data}/", f"{tmp_path / 'out'}/", model="flask", content_type="text/csv"
        )
        sm.create_transform_job(**request)
        sm.get_waiter("transform_job_completed_or_stopped").wait(
            TransformJobName="cp-job", WaiterConfig={"Delay": 1, "MaxAttempts": 180}
        )
        described = sm.describe_transform_job(TransformJobName="cp-job")
    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    assert tree(tmp_path / "out") == {"records.csv.out": b"flask:BOTO\nmodel\n<unset>\n"}
    assert job_containers("cp-job") == []


def test_the_queue_worker_runs_a_model_image(tmp_path: Path, flask_image: str, model_archive: Path) -> None:
    env = cli_env(tmp_path / "home")
    create_model(env, "flask", flask_image, model_archive)
    data, out = write_input(tmp_path / "in", ["queued"]), tmp_path / "out"
    send = ["queue", "send", "--input", f"{data}/", "--output", f"{out}/", "--model-name", "flask"]
    cli_ok(
        run_cli(
            [*send, "--job-name", "queued-job", "--content-type", "text/csv", "--split-type", "Line"], env
        )
    )
    cli_ok(run_cli(["worker", "--burst"], env, timeout=300))
    assert describe(env, "queued-job")["TransformJobStatus"] == "Completed"
    assert tree(out) == {"records.csv.out": b"flask:QUEUED\n"}
    assert job_containers("queued-job") == []


def test_a_transform_job_runs_the_batchlane_image(tmp_path: Path, batchlane_image: str) -> None:
    # batchlane's own image (deploy/Dockerfile, built by the session fixture in conftest.py) under a tag that is
    # not "batchlane:local": it runs in Docker like any other image, serving the echo model mounted read-only.
    env = cli_env(tmp_path / "home")
    create_model(env, "echo", batchlane_image, ECHO_DIR, "BATCHLANE_DEVICE=cpu")
    data = write_input(tmp_path / "in", ["0.5,0.7", "hello,world"])
    cli_ok(run_cli(transform_args("echo", "image-job", data, tmp_path / "out"), env, timeout=300))
    assert tree(tmp_path / "out") == {"records.csv.out": b"0.5|0.7\nhello|world\n"}
    assert job_containers("image-job") == []


def test_a_container_that_dies_at_start_fails_the_job_with_its_log(
    tmp_path: Path, flask_image: str, model_archive: Path
) -> None:
    env = cli_env(tmp_path / "home")
    create_model(env, "broken", flask_image, model_archive, "FAIL_AT_START=no weights in the model folder")
    data = write_input(tmp_path / "in", ["a"])
    result = run_cli(transform_args("broken", "broken-job", data, tmp_path / "out"), env, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    reason = describe(env, "broken-job")["FailureReason"]
    assert "model container exited with code" in reason and "before becoming healthy" in reason
    assert (
        "RuntimeError: no weights in the model folder" in reason
    )  # the tail of the container's log says why
    assert job_containers("broken-job") == []


def test_an_image_that_holds_its_model_needs_no_model_data(tmp_path: Path, flask_image: str) -> None:
    env = cli_env(tmp_path / "home")
    cli_ok(run_cli(["models", "create", "baked", "--image", flask_image], env))
    data = write_input(tmp_path / "in", ["a"])
    cli_ok(run_cli(transform_args("baked", "baked-job", data, tmp_path / "out"), env, timeout=300))
    assert tree(tmp_path / "out") == {"records.csv.out": b"baked:A\n"}


def test_a_container_that_crashes_mid_job_is_replaced_by_a_new_one(
    tmp_path: Path, flask_image: str, model_archive: Path
) -> None:
    env = cli_env(tmp_path / "home")
    create_model(env, "flask", flask_image, model_archive)
    data = tmp_path / "in"
    data.mkdir()
    (data / "a.csv").write_text("exit:3\n", encoding="utf-8")
    (data / "b.csv").write_text("ok\n", encoding="utf-8")
    result = run_cli(transform_args("flask", "crash-job", data, tmp_path / "out"), env, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    # Only the file that hit the crash fails; the next one is answered by a new container.
    assert tree(tmp_path / "out") == {"b.csv.out": b"flask:OK\n"}
    assert "a.csv" in describe(env, "crash-job")["FailureReason"]
    assert (
        "restarting the model server"
        in cli_ok(run_cli(["jobs", "logs", "crash-job", "--container"], env)).stdout
    )
    assert job_containers("crash-job") == []


def test_without_a_docker_daemon_the_job_fails_saying_how_to_start_one(
    tmp_path: Path, model_archive: Path
) -> None:
    env = cli_env(tmp_path / "home", DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock")
    create_model(env, "flask", FLASK_IMAGE, model_archive)
    data = write_input(tmp_path / "in", ["a"])
    result = run_cli(transform_args("flask", "no-daemon", data, tmp_path / "out"), env)
    assert result.returncode == 1
    reason = describe(env, "no-daemon")["FailureReason"]
    assert f"no Docker daemon at unix://{tmp_path}/no-docker.sock" in reason
    assert "sudo systemctl start docker" in reason and "\n" not in reason
    assert "no Docker daemon" in result.stdout + result.stderr


def test_jobs_stop_stops_and_removes_the_container(
    tmp_path: Path, flask_image: str, model_archive: Path
) -> None:
    env = cli_env(tmp_path / "home")
    create_model(env, "flask", flask_image, model_archive)
    data = write_input(tmp_path / "in", ["sleep:60"])
    cli_ok(run_cli([*transform_args("flask", "stopped-job", data, tmp_path / "out"), "--detach"], env))
    wait_until(lambda: "[sagemaker logs]" in _job_log(env, "stopped-job"), timeout=120, interval=0.2)
    assert len(job_containers("stopped-job")) == 1
    cli_ok(run_cli(["jobs", "stop", "stopped-job"], env))
    assert (
        run_cli(["jobs", "wait", "stopped-job", "--poll", "0.2"], env, timeout=120).returncode == 3
    )  # Stopped
    assert describe(env, "stopped-job")["TransformJobStatus"] == "Stopped"
    wait_until(lambda: job_containers("stopped-job") == [], timeout=30, interval=0.2)


def test_a_killed_runner_leaves_no_container_and_resume_sweeps_orphans(
    tmp_path: Path, flask_image: str, model_archive: Path
) -> None:
    env = cli_env(tmp_path / "home")
    create_model(env, "flask", flask_image, model_archive)
    data = write_input(tmp_path / "in", ["sleep:5", "after"])
    runner = subprocess.Popen(
        [*CLI, *transform_args("flask", "killed-job", data, tmp_path / "out")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: job_containers("killed-job"), timeout=120, interval=0.2)
        # Healthy, and the first request (5 s long) is in flight.
        wait_until(lambda: "[sagemaker logs]" in _job_log(env, "killed-job"), timeout=60, interval=0.1)
    finally:
        runner.send_signal(signal.SIGKILL)
        runner.wait(timeout=30)
    # The attached docker client dies with its runner and forwards SIGTERM: the container stops and is removed.
    wait_until(lambda: job_containers("killed-job") == [], timeout=60, interval=0.2)

    # A container a dead runner of the job left behind (as after a host crash) is removed before the job resumes.
    orphan = docker(
        "run", "-d", "--network", "host", "--label", "batchlane.job=killed-job", "--label", "batchlane.runner=dead",
        BASE_IMAGE, "sleep", "300",
    )  # fmt: skip
    assert orphan.returncode == 0, orphan.stderr
    cli_ok(run_cli(["jobs", "resume", "killed-job", "-q"], env, timeout=300))
    assert describe(env, "killed-job")["TransformJobStatus"] == "Completed"
    assert tree(tmp_path / "out")["records.csv.out"] == b"slept\nflask:AFTER\n"
    assert job_containers("killed-job") == []


def _job_log(env: dict[str, str], job: str) -> str:
    """The job's log so far (read directly: `jobs logs` as a subprocess is too slow to poll)."""
    path = Path(env["BATCHLANE_HOME"]) / "logs" / f"{job}.log"
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
