"""The AWS side of the SageMaker engine: where it runs (``AwsSettings``: region, role, staging prefix, image, from
flags or the environment), its boto3 clients, and ``call``, which turns every botocore error into one line naming the
call and what to do.

Endpoints follow boto3's own variables (``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_SAGEMAKER``, ``…_S3``, ``…_LOGS``),
so the real CLI can be pointed at moto's server. boto3 is imported only when a client is made.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from batchlane import settings
from batchlane.aws.sagemaker_api import SageMakerError
from batchlane.errors import AuthError, BatchlaneError, Conflict, NotFound, ValidationError

# What to do about an error code, appended to its one-line message.
_HINTS = {
    "AccessDenied": "the credentials in use may not make this call: grant it to them "
    '(docs/sagemaker-engine.md, "IAM")',
    "ResourceLimitExceeded": "an account quota is used up: wait for running jobs to end, choose another "
    "--instance-type, or ask AWS Service Quotas for more",
    "Throttling": "AWS is throttling this account's calls: retry in a minute",
    "ValidationException": "fix the field it names and run the command again",
}
_THROTTLING = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"}
)
_NOT_FOUND = frozenset({"ResourceNotFound", "ResourceNotFoundException"})
_ALREADY_EXISTS_HINTS = ("already exist", "must be unique")


@dataclass(frozen=True)
class AwsSettings:
    """Where SageMaker jobs run. Each field: the flag's value, else its environment variable, else None.

    ``region``: ``--region``, ``AWS_REGION``, ``AWS_DEFAULT_REGION``. ``role``: CreateModel's ExecutionRoleArn,
    ``--role``, ``BATCHLANE_SAGEMAKER_ROLE``, ``BATCHLANE_EXECUTION_ROLE_ARN``. ``staging``: the ``s3://`` prefix
    local models and inputs are uploaded under, ``--upload-to``, ``BATCHLANE_SAGEMAKER_STAGING``. ``image``: the
    inference image of a model batchlane creates, ``--image``, ``BATCHLANE_SAGEMAKER_IMAGE``, else the model's own.
    ``instance_type``: for a request that leaves it ``local``, ``--instance-type``, else ``ml.m5.large``.
    """

    region: str | None = None
    role: str | None = None
    staging: str | None = None
    image: str | None = None
    instance_type: str | None = None

    @classmethod
    def resolve(
        cls,
        *,
        region: str | None = None,
        role: str | None = None,
        staging: str | None = None,
        image: str | None = None,
        instance_type: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> AwsSettings:
        env = os.environ if env is None else env

        def first(value: str | None, *names: str) -> str | None:
            return value or next((env[n].strip() for n in names if env.get(n, "").strip()), None)

        return cls(
            region=first(region, settings.AWS_REGION, settings.AWS_DEFAULT_REGION),
            role=first(role, settings.BATCHLANE_SAGEMAKER_ROLE, settings.BATCHLANE_EXECUTION_ROLE_ARN),
            staging=first(staging, settings.BATCHLANE_SAGEMAKER_STAGING),
            image=first(image, settings.BATCHLANE_SAGEMAKER_IMAGE),
            instance_type=instance_type,
        )


def client(service: str, aws: AwsSettings) -> Any:
    """A boto3 client for ``service`` in ``aws.region`` (boto3 reads the endpoint variables itself)."""
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=10, read_timeout=60, retries={"mode": "standard", "max_attempts": 5})
    session = boto3.session.Session(region_name=aws.region or "us-east-1")
    return session.client(service, config=config)


def call(api: Any, operation: str, **params: Any) -> dict[str, Any]:
    """``api.<operation>(**params)``; a botocore error becomes one batchlane error whose message names the call
    (``SageMaker CreateTransformJob: <code>: <AWS's message> (<what to do>)``):

    ValidationException → ``ValidationError`` (an "already exists" one → ``Conflict``), ResourceNotFound →
    ``NotFound``, AccessDenied and missing credentials → ``AuthError``, throttling, ResourceLimitExceeded, 5xx and
    network errors → ``SageMakerError`` (they may pass)."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        NoCredentialsError,
        ParamValidationError,
    )

    service = api.meta.service_model.service_id if hasattr(api, "meta") else "AWS"
    action = api.meta.method_to_api_mapping.get(operation, operation) if hasattr(api, "meta") else operation
    what = f"{service} {action}"
    try:
        return getattr(api, operation)(**params)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, text = str(error.get("Code", "")), str(error.get("Message", "")).strip()
        raise _mapped(what, code, text) from exc
    except ParamValidationError as exc:
        raise ValidationError(f"{what}: {' '.join(str(exc).split())}") from exc
    except NoCredentialsError as exc:
        raise AuthError(
            f"{what}: no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        ) from exc
    except BotoCoreError as exc:
        raise SageMakerError(f"{what}: {exc} (check the network and the region; retry)") from exc


def _mapped(what: str, code: str, text: str) -> BatchlaneError:
    message = f"{what}: {code}: {text}" if text else f"{what}: {code}"
    if code.startswith("AccessDenied") or code in ("UnrecognizedClientException", "ExpiredTokenException"):
        return AuthError(f"{message} ({_HINTS['AccessDenied']})")
    if code == "ResourceLimitExceeded":
        return SageMakerError(f"{message} ({_HINTS['ResourceLimitExceeded']})")
    if code in _THROTTLING:
        return SageMakerError(f"{message} ({_HINTS['Throttling']})")
    if code == "ResourceInUse" or (
        code == "ValidationException" and any(h in text.lower() for h in _ALREADY_EXISTS_HINTS)
    ):
        return Conflict(message)
    if code in _NOT_FOUND:
        return NotFound(message)
    if code == "ValidationException":
        return ValidationError(f"{message} ({_HINTS['ValidationException']})")
    return SageMakerError(message)


def describe(api: Any, operation: str, **params: Any) -> dict[str, Any] | None:
    """A Describe* answer, or None when the resource does not exist (SageMaker answers ValidationException
    "Could not find ...")."""
    try:
        return call(api, operation, **params)
    except NotFound:
        return None
    except ValidationError as exc:
        if "could not find" in str(exc).lower():
            return None
        raise
