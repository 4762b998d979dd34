"""Control planes for tests and the AWS clients that talk to them: a real `batchlane control-plane` subprocess, the
in-process server (uvicorn on a daemon thread), and boto3 clients, the `aws` CLI and hand-signed requests, all
signed with a test key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode
from xml.etree import ElementTree

import httpx

from batchlane.api import ServerConfig, background_server
from batchlane.api.auth import AccessKey
from batchlane.testing import running_server

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

REGION = "us-east-1"
AWS = str(Path(sys.executable).with_name("aws"))
# Settings a test's processes must not inherit from the shell that runs the tests.
INHERITED = ("BATCHLANE_", "AWS_", "SAGEMAKER_")
# Kept: the session's converted-model cache (tests/conftest.py), content-keyed and shared by every test.
SHARED_CACHES = frozenset({"BATCHLANE_OPENVINO_CACHE"})


def clean_env(**values: str) -> dict[str, str]:
    """``os.environ`` without BATCHLANE_*, AWS_* and SAGEMAKER_* variables, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(INHERITED) or k in SHARED_CACHES}
    env.update(values)
    return env


@contextmanager
def control_plane_server(
    root: Path,
    *args: str,
    key: str,
    secret: str,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> Iterator[str]:
    """`batchlane control-plane ARGS` as a subprocess on a free port, logging to ``root``/server.log; yields its URL.

    ``env`` is the process environment (default: :func:`clean_env`); on top of it BATCHLANE_HOME is ``home``
    (default ``root``/home) and the server's one access key is ``key``/``secret``.
    """
    values = {
        **(clean_env() if env is None else env),
        "BATCHLANE_HOME": str(root / "home" if home is None else home),
        "BATCHLANE_ACCESS_KEY_ID": key,
        "BATCHLANE_SECRET_ACCESS_KEY": secret,
    }
    with running_server(["control-plane", *args], env=values, log=root / "server.log") as url:
        yield url


@contextmanager
def api_server(root: Path, *keys: AccessKey, queue: str = "jobs", **options: Any) -> Iterator[str]:
    """The control plane in this process on a free port, its job store and SQLite queue file ``queue`` in ``root``;
    yields its URL. ``options`` are further :class:`ServerConfig` fields (workers, lease_s, queue_worker...)."""
    config = ServerConfig(
        db=root / "jobs.db",
        queue=f"sqlite:///{root}/queue.db?queue={queue}",
        port=0,
        keys=keys,
        **options,
    )
    with background_server(config) as url:
        yield url


def aws_client(service: str, url: str, key: str, secret: str, *, retries: int | None = 1, **config: Any):
    """A boto3 client for ``service`` at ``url`` signed with ``key``/``secret``; ``retries`` is botocore's
    ``max_attempts`` (None: botocore's default), ``config`` further :class:`botocore.config.Config` options."""
    import boto3
    from botocore.config import Config

    if retries is not None:
        config["retries"] = {"max_attempts": retries}
    return boto3.client(
        service,
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(**config) if config else None,
    )


def aws_cli_env(root: Path, key: str, secret: str) -> dict[str, str]:
    """The environment for the `aws` CLI (or the SageMaker SDK) as ``key``: no config or credentials file, no EC2
    metadata look-up, region us-east-1."""
    return clean_env(
        AWS_ACCESS_KEY_ID=key,
        AWS_SECRET_ACCESS_KEY=secret,
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=str(root / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(root / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
    )


def aws_cli(url: str, root: Path, key: str, secret: str, *args: str) -> dict:
    """``aws --endpoint-url URL --output json ARGS`` with :func:`aws_cli_env`; asserts it exits 0 and returns its
    JSON answer ({} when it prints nothing)."""
    done = subprocess.run(
        [AWS, "--endpoint-url", url, "--output", "json", *args],
        env=aws_cli_env(root, key, secret),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"aws {' '.join(args)}: {done.stderr}"
    return json.loads(done.stdout) if done.stdout.strip() else {}


def signed_post(
    url: str, body: bytes, headers: Mapping[str, str], service: str, key: str, secret: str, timeout: float = 5
) -> httpx.Response:
    """POST ``body`` to ``url`` signed with SigV4 for ``service`` as botocore signs it."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest("POST", url, data=body, headers=dict(headers))
    SigV4Auth(Credentials(key, secret), service, REGION).add_auth(request)
    return httpx.post(url, content=body, headers=dict(request.headers.items()), timeout=timeout)


def sqs_query(
    server: str, key: str, secret: str, params: Mapping[str, str], path: str = "/"
) -> ElementTree.Element:
    """A signed SQS query-protocol call (how older SDKs speak to SQS); the parsed XML answer, asserted 200, or 400
    for an ErrorResponse."""
    body = urlencode({**params, "Version": "2012-11-05"}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    answer = signed_post(server + path, body, headers, "sqs", key, secret)
    root = ElementTree.fromstring(answer.content)
    assert answer.status_code == (400 if root.tag.endswith("ErrorResponse") else 200), answer.text
    return root


@contextmanager
def loaded_model_server(model_dir: Path, timeout: float = 60) -> Iterator[TestClient]:
    """`batchlane serve`'s app for ``model_dir`` (no settings from the environment) in a TestClient, yielded once
    /ping answers 200, i.e. once the model is loaded."""
    from fastapi.testclient import TestClient

    from batchlane.serving.app import create_app
    from batchlane.settings import ServeSettings

    with TestClient(create_app(ServeSettings.from_env({}, model_dir=model_dir))) as client:
        deadline = time.monotonic() + timeout
        while client.get("/ping").status_code != 200:
            assert time.monotonic() < deadline, "model did not load"
            time.sleep(0.02)
        yield client
