"""Test models for transform jobs and the helpers the runner/CLI tests share.

``echo/`` is a model folder whose ``code/inference.py`` answers one result per record without torch (see its
docstring for the content types and the trigger words ``poison``, ``badrequest``, ``flaky``, ``slow``, ``half``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ECHO_DIR = Path(__file__).parent / "echo"
# The echo model needs no GPU probe: BATCHLANE_DEVICE=cpu keeps torch out of the container's start-up.
ECHO_ENV = {"BATCHLANE_DEVICE": "cpu"}
TEMP_SUFFIX = ".batchlane-tmp"

CONSOLE_SCRIPT = Path(sys.executable).with_name("batchlane")
CLI = (
    [str(CONSOLE_SCRIPT)]
    if CONSOLE_SCRIPT.exists()
    else [sys.executable, "-c", "from batchlane.cli.main import main; main()"]
)
# `python -m batchlane`, for tests that run the package as a module.
MODULE_CLI = [sys.executable, "-m", "batchlane"]


def transform_request(
    name: str,
    input_uri: str,
    output_uri: str,
    *,
    model: str = "echo",
    content_type: str | None = "text/plain",
    split_type: str | None = "Line",
    data_type: str = "S3Prefix",
    compression: str | None = None,
    accept: str | None = None,
    assemble_with: str | None = None,
    **top: Any,
) -> dict[str, Any]:
    """A CreateTransformJob request, shaped exactly as boto3's ``create_transform_job(**request)`` takes it."""
    transform_input: dict[str, Any] = {
        "DataSource": {"S3DataSource": {"S3DataType": data_type, "S3Uri": input_uri}}
    }
    for key, value in (
        ("ContentType", content_type),
        ("SplitType", split_type),
        ("CompressionType", compression),
    ):
        if value is not None:
            transform_input[key] = value
    transform_output: dict[str, Any] = {"S3OutputPath": output_uri}
    for key, value in (("Accept", accept), ("AssembleWith", assemble_with)):
        if value is not None:
            transform_output[key] = value
    return {
        "TransformJobName": name,
        "ModelName": model,
        "TransformInput": transform_input,
        "TransformOutput": transform_output,
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        **top,
    }


def register_echo(store: Any, name: str = "echo", **env: str) -> None:
    """Register the echo model in ``store``'s registry (model Environment = ``ECHO_ENV`` + ``env``)."""
    from batchlane.models import ModelRegistry, ModelSpec

    spec = ModelSpec(name=name, model_data=str(ECHO_DIR), environment={**ECHO_ENV, **env})
    ModelRegistry(store).create(spec, exist_ok=True)


def run_job(
    store: Any,
    request: Mapping[str, Any],
    options: Mapping[str, Any] | None = None,
    *,
    invoker: str = "http",
    **runner: Any,
) -> Any:
    """Submit ``request`` to the local engine and run it here to its end (``invoker``: the engine's option, where
    the model runs); returns the final ``JobRecord``."""
    from batchlane.engines import get_engine

    engine = get_engine("local", store, invoker=invoker)
    record = engine.submit(request, {"startup_timeout_s": 60, **(options or {})})
    return engine.run(record.name, **runner)


def run_job_in_process(
    store: Any, request: Mapping[str, Any], options: Mapping[str, Any] | None = None, **runner: Any
) -> Any:
    """:func:`run_job` with the model loaded in this process (``JobRunner(invoker="in_process")``): no `batchlane
    serve`, for tests about the data rather than the model server."""
    return run_job(store, request, options, invoker="in_process", **runner)


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (temp files included) as relative POSIX path → bytes."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def temp_files(folder: Path) -> list[Path]:
    """The object store's temp files (a half-written output) under ``folder``."""
    return [path for path in folder.rglob(f"*{TEMP_SUFFIX}")]


def job_log(store: Any, name: str) -> str:
    """The job's log (what ``batchlane jobs logs NAME`` prints)."""
    return store.log_path(name).read_text(encoding="utf-8")


def echo_calls(log_file: Path) -> list[dict[str, Any]]:
    """The echo model's call log: one dict per ``/invocations`` call, in arrival order."""
    if not log_file.exists():
        return []
    return [json.loads(line) for line in log_file.read_text(encoding="utf-8").splitlines()]


def wait_until(check: Callable[[], Any], timeout: float = 60.0, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; ``TimeoutError`` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout} s")


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment for ``batchlane`` subprocesses: no inherited SAGEMAKER_/BATCHLANE_ settings, one thread."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SAGEMAKER_", "SM_", "BATCHLANE_")) or k == "BATCHLANE_OPENVINO_CACHE"
    }
    env.update(
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
        BATCHLANE_HOME=str(home),
        BATCHLANE_DB=str(home / "jobs.db"),
    )
    env.update(extra)
    return env


def run_cli(
    args: list[str],
    env: Mapping[str, str],
    timeout: float = 120,
    *,
    cwd: Path | None = None,
    command: list[str] = CLI,
) -> subprocess.CompletedProcess[str]:
    """``batchlane ARGS`` (``command``: the console script by default) as a subprocess, its output captured."""
    return subprocess.run(
        [*command, *args], env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def cli_ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """``result``, asserted to have exited 0 (the message shows its output otherwise)."""
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def echo_cli_env(home: Path, *model_env: str) -> dict[str, str]:
    """:func:`cli_env` for ``home`` with the echo model created by `batchlane models create echo` (Environment
    BATCHLANE_DEVICE=cpu and the ``KEY=VALUE`` items of ``model_env``)."""
    env = cli_env(home)
    args = ["models", "create", "echo", "--model-data", str(ECHO_DIR), "--env", "BATCHLANE_DEVICE=cpu"]
    for item in model_env:
        args += ["--env", item]
    created = run_cli(args, env)
    assert created.returncode == 0, created.stderr
    return env


def put_echo_model(s3: Any, bucket: str) -> str:
    """Upload the echo model's code to ``s3://bucket/models/echo/`` (a boto3 S3 client); returns that prefix."""
    s3.put_object(
        Bucket=bucket, Key="models/echo/code/inference.py", Body=(ECHO_DIR / "code/inference.py").read_bytes()
    )
    return f"s3://{bucket}/models/echo/"


def write_files(folder: Path, files: Mapping[str, str]) -> str:
    """Write ``files`` (relative path → text) under ``folder``; returns the folder as a prefix URI (``folder/``)."""
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return f"{folder}/"
