"""The control plane's front door, in-process (ASGI): SigV4 verification, Host/Origin checks, body cap, per-key
permissions, local-path policy, and the settings the server refuses to start with. No jobs run here."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from starlette.testclient import TestClient

from batchlane.api import ServerConfig, create_app, load_keys
from batchlane.api.auth import AccessKey
from batchlane.errors import ValidationError

BASE = "http://127.0.0.1:8443"
KEY, SECRET = "AKIDTESTKEY", "test-secret-value"
LIST_JOBS = "SageMaker.ListTransformJobs"


def sign(
    body: bytes,
    *,
    target: str = LIST_JOBS,
    key: str = KEY,
    secret: str = SECRET,
    service: str = "sagemaker",
    region: str = "us-east-1",
    at: dt.datetime | None = None,
    url: str = BASE + "/",
) -> dict[str, str]:
    """Headers of a request signed the way botocore signs it (optionally at another time)."""
    request = AWSRequest(
        "POST", url, data=body, headers={"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"}
    )
    signer = SigV4Auth(Credentials(key, secret), service, region)
    if at is None:
        signer.add_auth(request)
    else:
        with mock.patch("botocore.auth.get_current_datetime", return_value=at):
            signer.add_auth(request)
    return dict(request.headers.items())


def config(tmp_path: Path, **overrides: object) -> ServerConfig:
    values: dict[str, object] = {
        "db": tmp_path / "jobs.db",
        "queue": f"sqlite:///{tmp_path}/queue.db?queue=jobs",
        "keys": (
            AccessKey(KEY, SECRET),
            AccessKey("AKIDREADER", "reader-secret", ("sagemaker:Describe*", "sagemaker:List*")),
        ),
        "workers": 0,
        "queue_worker": False,
    }
    values.update(overrides)
    return ServerConfig(**values)  # type: ignore[arg-type]


@pytest.fixture()
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(config(tmp_path)), base_url=BASE) as test_client:
        yield test_client


def error(response) -> tuple[int, str, str]:
    data = response.json()
    return response.status_code, data["__type"], data["message"]


def test_a_correctly_signed_request_is_served(client: TestClient) -> None:
    response = client.post("/", content=b"{}", headers=sign(b"{}"))
    assert response.status_code == 200, response.text
    assert response.json() == {"TransformJobSummaries": []}
    assert response.headers["content-type"] == "application/x-amz-json-1.1"
    assert response.headers["x-amzn-requestid"]


@pytest.mark.parametrize(
    ("label", "headers", "body", "code"),
    [
        ("unsigned", lambda: {"X-Amz-Target": LIST_JOBS}, b"{}", "MissingAuthenticationToken"),
        ("wrong secret", lambda: sign(b"{}", secret="not-the-secret"), b"{}", "SignatureDoesNotMatch"),
        ("unknown key", lambda: sign(b"{}", key="AKIDSOMEONEELSE"), b"{}", "InvalidClientTokenId"),
        ("tampered body", lambda: sign(b"{}"), b'{"MaxResults": 100}', "SignatureDoesNotMatch"),
        (
            "tampered target",
            lambda: {**sign(b"{}"), "X-Amz-Target": "SageMaker.ListModels"},
            b"{}",
            "SignatureDoesNotMatch",
        ),
        (
            "expired",
            lambda: sign(b"{}", at=dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(minutes=16)),
            b"{}",
            "RequestExpired",
        ),
        (
            "from the future",
            lambda: sign(b"{}", at=dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(minutes=16)),
            b"{}",
            "RequestExpired",
        ),
        ("scoped to sqs", lambda: sign(b"{}", service="sqs"), b"{}", "SignatureDoesNotMatch"),
        ("another region", lambda: sign(b"{}", region="eu-west-1"), b"{}", "SignatureDoesNotMatch"),
        (
            "not SigV4",
            lambda: {"X-Amz-Target": LIST_JOBS, "Authorization": "Basic dXNlcjpwdw=="},
            b"{}",
            "IncompleteSignature",
        ),
    ],
)
def test_requests_without_a_valid_signature_get_403(
    client: TestClient, label: str, headers: Callable[[], dict[str, str]], body: bytes, code: str
) -> None:
    # Headers are signed when the test runs: a date computed at collection drifts by the time a long session gets here.
    status, got, message = error(client.post("/", content=body, headers=headers()))
    assert (status, got) == (403, code), f"{label}: {message}"


def test_a_signature_within_the_15_minute_window_is_accepted(client: TestClient) -> None:
    at = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(minutes=14)
    assert client.post("/", content=b"{}", headers=sign(b"{}", at=at)).status_code == 200


def test_host_header_must_name_this_server(client: TestClient) -> None:
    headers = {**sign(b"{}", url="http://rebound.example:8443/"), "Host": "rebound.example:8443"}
    status, code, message = error(client.post("/", content=b"{}", headers=headers))
    assert (status, code) == (403, "AccessDeniedException") and "rebound.example" in message
    assert client.get("/ping", headers={"Host": "rebound.example"}).status_code == 403
    assert client.get("/ping").json() == {"status": "ok"}


def test_browser_origins_are_refused(client: TestClient) -> None:
    headers = {**sign(b"{}"), "Origin": "http://evil.example"}
    assert error(client.post("/", content=b"{}", headers=headers))[:2] == (403, "AccessDeniedException")


def test_allowed_host_extends_the_loopback_names(tmp_path: Path) -> None:
    app = create_app(config(tmp_path, allowed_hosts=("batchlane.internal",)))
    with TestClient(app, base_url="http://batchlane.internal:8443") as test_client:
        url = "http://batchlane.internal:8443/"
        assert test_client.post("/", content=b"{}", headers=sign(b"{}", url=url)).status_code == 200


def test_oversized_bodies_are_refused_before_auth(tmp_path: Path) -> None:
    with TestClient(create_app(config(tmp_path, max_body_bytes=1024)), base_url=BASE) as test_client:
        body = json.dumps({"NameContains": "x" * 2000}).encode()
        status, code, _ = error(test_client.post("/", content=body, headers=sign(body)))
        assert (status, code) == (413, "RequestEntityTooLarge")


def test_a_key_may_only_call_the_actions_it_is_allowed(client: TestClient) -> None:
    headers = sign(b"{}", key="AKIDREADER", secret="reader-secret")
    assert client.post("/", content=b"{}", headers=headers).status_code == 200
    body = json.dumps({"TransformJobName": "some-job"}).encode()
    headers = sign(body, target="SageMaker.StopTransformJob", key="AKIDREADER", secret="reader-secret")
    status, code, message = error(client.post("/", content=body, headers=headers))
    assert (status, code) == (403, "AccessDeniedException") and "sagemaker:StopTransformJob" in message


def test_unknown_targets_and_bad_json_are_client_errors(client: TestClient) -> None:
    headers = sign(b"{}", target="SageMaker.CreateEndpoint")
    assert error(client.post("/", content=b"{}", headers=headers))[:2] == (400, "UnknownOperationException")
    headers = sign(b"{not json", target=LIST_JOBS)
    assert error(client.post("/", content=b"{not json", headers=headers))[:2] == (
        400,
        "SerializationException",
    )
    assert error(client.post("/", content=b"hello"))[:2] == (400, "MissingAction")


def test_no_auth_serves_unsigned_requests_on_loopback(tmp_path: Path) -> None:
    with TestClient(create_app(config(tmp_path, keys=(), auth=False)), base_url=BASE) as test_client:
        response = test_client.post("/", content=b"{}", headers={"X-Amz-Target": LIST_JOBS})
        assert response.status_code == 200


def test_the_server_refuses_to_start_without_keys_or_with_no_auth_on_a_network(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="needs an access key"):
        config(tmp_path, keys=())
    with pytest.raises(ValidationError, match="only allowed when binding a loopback"):
        config(tmp_path, keys=(), auth=False, host="0.0.0.0")


def test_keys_come_from_flags_env_or_a_credentials_file(tmp_path: Path) -> None:
    assert load_keys(env={}) == ()
    [key] = load_keys(env={"BATCHLANE_ACCESS_KEY_ID": "AKIDENV", "BATCHLANE_SECRET_ACCESS_KEY": "s"})
    assert (key.access_key_id, key.secret_access_key) == ("AKIDENV", "s")
    with pytest.raises(ValidationError, match="together"):
        load_keys(access_key="AKIDONLY", env={})
    path = tmp_path / "credentials"
    path.write_text(
        "[admin]\naws_access_key_id = AKIDADMIN\naws_secret_access_key = one\n\n"
        "[reader]\naws_access_key_id = AKIDREAD\naws_secret_access_key = two\nallow = sagemaker:Describe*, sqs:*\n"
    )
    path.chmod(0o600)
    admin, reader = load_keys(credentials_file=path, env={})
    assert admin.may("sagemaker", "StopTransformJob")
    assert reader.may("sqs", "SendMessage") and reader.may("sagemaker", "DescribeModel")
    assert not reader.may("sagemaker", "CreateTransformJob")


def test_allow_path_restricts_local_paths_in_requests(tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    (allowed / "model").mkdir(parents=True)
    app = create_app(config(tmp_path, allowed_paths=(allowed,)))
    with TestClient(app, base_url=BASE) as test_client:

        def create_model(name: str, url: str) -> object:
            body = json.dumps({"ModelName": name, "PrimaryContainer": {"ModelDataUrl": url}}).encode()
            return test_client.post("/", content=body, headers=sign(body, target="SageMaker.CreateModel"))

        assert create_model("inside", str(allowed / "model")).status_code == 200
        (tmp_path / "outside").mkdir()
        (allowed / "link").symlink_to(tmp_path / "outside")  # resolved before the check
        escaped = create_model("escape", f"{allowed}/link")
        status, code, message = error(escaped)
        assert (status, code) == (400, "ValidationException")
        assert "PrimaryContainer.ModelDataUrl" in message and "--allow-path" in message
        # '..' never gets as far: the URI grammar refuses it, naming the field.
        status, code, message = error(create_model("dots", f"{allowed}/../outside"))
        assert (status, code) == (400, "ValidationException")
        assert "PrimaryContainer.ModelDataUrl" in message and "'..' path segments" in message
