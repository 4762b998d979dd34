"""The model process boundary, attacked through a real `batchlane server --allow-path` (boto3) and the real CLI.

Each test is an attack from the security review (docs/control-plane.md, "Threat model"): a job or model
``Environment`` that loads code from outside the allowed folders (``LD_PRELOAD``, ``PYTHONPATH``,
``SAGEMAKER_SUBMIT_DIRECTORY``), a model whose ``code/inference.py`` is a symlink to a file outside, and user code
reading the control plane's credentials from its environment. The models are tiny ``inference.py`` files: no torch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.models import ECHO_DIR, cli_env, run_cli
from tests.servers import aws_client, clean_env, control_plane_server

KEY, SECRET = "AKIDISOLATION", "control-plane-secret-4d1f"
SERVER_AWS = {
    "AWS_ACCESS_KEY_ID": "AKIDSERVERSOWNAWS",
    "AWS_SECRET_ACCESS_KEY": "server-aws-secret-9c2e",
    "AWS_SESSION_TOKEN": "server-aws-session-7a0b",
}
MODEL_ENV = {"BATCHLANE_DEVICE": "cpu"}  # no GPU probe: torch stays out of the model server's start-up

ENV_DUMP = """
import json, os

def model_fn(model_dir):
    return None

def transform_fn(model, input_data, content_type, accept):
    return json.dumps(dict(os.environ)), "application/json"
"""

# Imported = the attack worked: it writes the file MARKER in the test's root folder.
OUTSIDE_CODE = """
from pathlib import Path

Path({marker!r}).write_text("imported")

def model_fn(model_dir):
    return None

def transform_fn(model, input_data, content_type, accept):
    return "outside code answered", "text/plain"
"""
MARKER = "outside-code-ran"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("isolation")
    (root / "allowed").mkdir()
    outside = root / "outside"
    (outside / "code").mkdir(parents=True)
    (outside / "code" / "inference.py").write_text(OUTSIDE_CODE.format(marker=str(root / MARKER)))
    (outside / "evil.py").write_text(OUTSIDE_CODE.format(marker=str(root / MARKER)))
    return root


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[str]:
    env = clean_env(AWS_EC2_METADATA_DISABLED="true", **SERVER_AWS)
    args = ["--workers", "1", "--no-worker", "--lease-seconds", "3", "--allow-path", str(root / "allowed")]
    with control_plane_server(root, *args, key=KEY, secret=SECRET, env=env) as url:
        yield url


@pytest.fixture(scope="module")
def sm(server: str):
    return aws_client("sagemaker", server, KEY, SECRET)


def model_folder(root: Path, name: str, code: str | None = None) -> Path:
    folder = root / "allowed" / name
    (folder / "code").mkdir(parents=True)
    if code is not None:
        (folder / "code" / "inference.py").write_text(code)
    return folder


def create_model(sm, name: str, folder: Path, **env: str) -> None:
    sm.create_model(
        ModelName=name,
        PrimaryContainer={"ModelDataUrl": str(folder), "Environment": {**MODEL_ENV, **env}},
        ExecutionRoleArn="arn:aws:iam::000000000000:role/unused",
    )


def job_request(root: Path, name: str, model: str, **env: str) -> dict:
    source = root / "allowed" / f"{name}-in"
    source.mkdir()
    (source / "request.txt").write_text("hello\n")
    request = {
        "TransformJobName": name,
        "ModelName": model,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"{source}/"}},
            "ContentType": "text/plain",
        },
        "TransformOutput": {"S3OutputPath": f"{root / 'allowed' / name}-out/"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }
    if env:
        request["Environment"] = env
    return request


def finished(sm, name: str, timeout_s: float = 90) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        described = sm.describe_transform_job(TransformJobName=name)
        if described["TransformJobStatus"] in ("Completed", "Failed", "Stopped"):
            return described
        time.sleep(0.2)
    raise TimeoutError(f"job {name} did not finish within {timeout_s}s")


def refused(call) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    error = caught.value.response["Error"]
    assert error["Code"] == "ValidationException", error
    return error["Message"]


LOADER_ATTACKS = [
    ("LD_PRELOAD", lambda root: str(root / "outside" / "evil.so")),
    ("PYTHONPATH", lambda root: str(root / "outside")),
    ("SAGEMAKER_SUBMIT_DIRECTORY", lambda root: str(root / "outside" / "code")),
    ("SAGEMAKER_SUBMIT_DIRECTORY", lambda root: f"file://{root / 'outside' / 'code'}"),
]
LOADER_IDS = ["ld-preload", "pythonpath", "submit-directory", "submit-directory-file-uri"]


@pytest.mark.parametrize(("key", "value"), LOADER_ATTACKS, ids=LOADER_IDS)
def test_create_model_refuses_an_environment_that_loads_code_from_elsewhere(
    sm, root: Path, key: str, value
) -> None:
    folder = root / "allowed" / f"plain-{key.lower()}-{len(value(root))}"
    (folder / "code").mkdir(parents=True)

    message = refused(
        lambda: create_model(sm, f"m-{folder.name}".replace("_", "-"), folder, **{key: value(root)})
    )

    assert f"'PrimaryContainer.Environment.{key}'" in message
    assert not (root / MARKER).exists()


@pytest.mark.parametrize(("key", "value"), LOADER_ATTACKS, ids=LOADER_IDS)
def test_create_transform_job_refuses_an_environment_that_loads_code_from_elsewhere(
    sm, root: Path, key: str, value
) -> None:
    if not sm.list_models(NameContains="env-dump")["Models"]:
        create_model(sm, "env-dump", model_folder(root, "env-dump", ENV_DUMP))
    name = f"job-{key.lower().replace('_', '-')}-{len(value(root))}"

    message = refused(
        lambda: sm.create_transform_job(**job_request(root, name, "env-dump", **{key: value(root)}))
    )

    assert f"'Environment.{key}'" in message
    assert not sm.list_transform_jobs(NameContains=name)["TransformJobSummaries"]
    assert not (root / MARKER).exists()


def test_a_model_whose_inference_py_links_outside_fails_and_the_outside_code_never_runs(
    sm, root: Path
) -> None:
    folder = model_folder(root, "linked")
    (folder / "code" / "inference.py").symlink_to(root / "outside" / "evil.py")
    create_model(sm, "linked", folder)  # the folder itself is inside --allow-path
    sm.create_transform_job(**job_request(root, "linked-job", "linked"))

    described = finished(sm, "linked-job")

    assert not (root / MARKER).exists()
    assert described["TransformJobStatus"] == "Failed"
    assert "inference.py" in described["FailureReason"] and "is outside" in described["FailureReason"]


def test_model_code_sees_the_jobs_environment_but_not_the_servers_credentials(sm, root: Path) -> None:
    create_model(sm, "env-dump-2", model_folder(root, "env-dump-2", ENV_DUMP), MODEL_VAR="from-the-model")
    request = job_request(root, "env-job", "env-dump-2", JOB_VAR="from-the-job", PYTHONUNBUFFERED="1")
    sm.create_transform_job(**request, MaxPayloadInMB=2, BatchStrategy="SingleRecord")

    described = finished(sm, "env-job")

    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    output = (root / "allowed" / "env-job-out" / "request.txt.out").read_text()
    seen = json.loads(output)
    assert seen["JOB_VAR"] == "from-the-job" and seen["MODEL_VAR"] == "from-the-model"
    assert seen["PYTHONUNBUFFERED"] == "1"
    assert seen["SAGEMAKER_BATCH"] == "true" and seen["SAGEMAKER_MAX_PAYLOAD_IN_MB"] == "2"
    assert seen["SAGEMAKER_BATCH_STRATEGY"] == "SINGLE_RECORD"
    for name in ("BATCHLANE_SECRET_ACCESS_KEY", "BATCHLANE_ACCESS_KEY_ID", *SERVER_AWS):
        assert name not in seen
    for secret in (SECRET, *SERVER_AWS.values()):
        assert secret not in output


@pytest.mark.parametrize(
    ("key", "value"),
    [("LD_PRELOAD", "/tmp/evil.so"), ("PYTHONPATH", "/tmp"), ("SAGEMAKER_PROGRAM", "../../evil.py")],
    ids=["ld-preload", "pythonpath", "program-path"],
)
def test_the_cli_refuses_the_same_variables_with_one_line_naming_them(
    tmp_path: Path, key: str, value: str
) -> None:
    env = cli_env(tmp_path / "home")
    created = run_cli(
        ["models", "create", "echo", "--model-data", str(ECHO_DIR), "--env", f"{key}={value}"], env
    )
    assert created.returncode != 0
    assert len(created.stderr.strip().splitlines()) == 1 and key in created.stderr, created.stderr

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("x\n")
    ran = run_cli(
        ["transform", "--model-dir", str(ECHO_DIR), "--input", f"{tmp_path}/in/", "--output", f"{tmp_path}/out/",
         "--env", "BATCHLANE_DEVICE=cpu", "--env", f"{key}={value}", "-q"],
        env,
    )  # fmt: skip
    assert ran.returncode == 2, ran.stdout + ran.stderr
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and f"'Environment.{key}'" in lines[0], ran.stderr
    assert not (tmp_path / "out").exists()
