"""SageMaker's API as batchlane's errors: a client from the environment, calls whose ``ClientError``s become
``ValidationError``/``Conflict``/``NotFound`` (permanent) or ``SageMakerError`` (may pass), and spec comparison.
Used by the Lambda handler; boto3 is imported only when a client is made."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from batchlane import settings
from batchlane.errors import BatchlaneError, Conflict, NotFound, ValidationError

_ALREADY_EXISTS_HINTS = ("already exist", "must be unique")


class SageMakerError(BatchlaneError):
    """SageMaker refused or could not be reached for a reason that may pass (throttling, limits, network)."""


def sagemaker_client(env: Mapping[str, str] | None = None) -> Any:
    """A boto3 SageMaker client: ``$AWS_ENDPOINT_URL_SAGEMAKER``, else ``$AWS_ENDPOINT_URL``, else AWS."""
    import boto3
    from botocore.config import Config

    env = os.environ if env is None else env
    endpoint = env.get(settings.AWS_ENDPOINT_URL_SAGEMAKER) or env.get(settings.AWS_ENDPOINT_URL) or None
    region = env.get(settings.AWS_REGION) or env.get(settings.AWS_DEFAULT_REGION) or "us-east-1"
    config = Config(connect_timeout=5, read_timeout=30, retries={"mode": "standard", "max_attempts": 3})
    return boto3.session.Session(region_name=region).client("sagemaker", endpoint_url=endpoint, config=config)


def call(client: Any, operation: str, **params: Any) -> dict[str, Any]:
    """Call SageMaker; errors become ValidationError/Conflict/NotFound (permanent) or SageMakerError."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return getattr(client, operation)(**params)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, text = error.get("Code", ""), error.get("Message", "")
        what = f"SageMaker {operation}: {code}: {text}"
        if code == "ResourceInUse" or (
            code == "ValidationException" and any(h in text.lower() for h in _ALREADY_EXISTS_HINTS)
        ):
            raise Conflict(what) from exc
        if code in ("ResourceNotFound", "ResourceNotFoundException"):
            raise NotFound(what) from exc
        if code == "ValidationException":
            raise ValidationError(what) from exc
        raise SageMakerError(what) from exc
    except BotoCoreError as exc:
        raise SageMakerError(f"SageMaker {operation}: {exc}") from exc


def describe(client: Any, operation: str, **params: Any) -> dict[str, Any] | None:
    """A Describe* answer, or None when the resource does not exist (SageMaker says ValidationException)."""
    try:
        return call(client, operation, **params)
    except (ValidationError, NotFound) as exc:
        if "could not find" in str(exc).lower() or isinstance(exc, NotFound):
            return None
        raise
