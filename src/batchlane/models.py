"""The model registry: CreateModel / DescribeModel / ListModels / DeleteModel over the job store.

A ``ModelSpec`` says how a transform job gets a model server, in exactly one of three ways:

* ``model_data``: a local model directory, a local ``model.tar.gz``, or a ``file://`` / ``s3://`` URI of either;
  batchlane starts its own ``batchlane serve`` on it. Local paths and ``file://`` URIs are stored as absolute paths
  (so ``./m`` and ``file:///abs/m`` are the same spec). An ``s3://`` URI ending in ``/`` names an uncompressed
  folder (SageMaker's ``ModelDataSource`` with ``CompressionType=None``).
* ``serve_command``: the argument list of a user's own server process (for example ``["docker", "run", "-p",
  "{port}:8080", "my-image", "serve"]``). The engine replaces ``{port}`` in every argument with the port it picked and
  also sets ``SAGEMAKER_BIND_TO_PORT``; a command without ``{port}`` must read that variable (batchlane cannot check
  that, so it is not refused). Decision: only local callers (CLI, library) can create such models;
  ``from_sagemaker`` never produces one, so the control plane cannot be used to run commands (docs/reliability.md).
* ``serve_url``: an ``http(s)://`` URL of a container that is already running (``/ping``, ``/invocations``).

``environment`` follows CreateTransformJob's Environment limits (≤16 entries, key ``[a-zA-Z_][a-zA-Z0-9_]{0,1023}``,
value ≤10240 characters) and refuses variables that change which code loads (``serving.environment``); a job's
Environment wins over the model's (``effective_environment``). ``image`` is kept
for DescribeModel and informational only for local runs.

``ModelRegistry.create`` is idempotent on request: the same name with the same spec returns the existing model when
``exist_ok`` (and is a ``Conflict`` otherwise, like SageMaker's "Cannot create already existing model"); the same name
with a different spec is always a ``Conflict`` naming the fields that differ (docs/reliability.md). Names are unique
case-insensitively (see ``jobs.store``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pydantic
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from batchlane import aws_names, spec_diff
from batchlane.errors import AlreadyExists, Conflict, ValidationError
from batchlane.jobs.store import JobStore, ModelRow, spec_hash
from batchlane.serving import environment as model_env_policy
from batchlane.storage import uri as uri_grammar

MODEL_NAME_PATTERN = aws_names.MODEL_NAME_RE
ENV_KEY_PATTERN = aws_names.ENV_KEY_RE
MAX_ENV_ENTRIES = aws_names.MAX_ENV_ENTRIES
MAX_ENV_VALUE = aws_names.MAX_ENV_VALUE_CHARS
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
EXTRAS_KEY = "Batchlane"

# CreateModel members that do not change how batchlane serves a model; accepted and not stored.
_IGNORED_CREATE_FIELDS = frozenset(
    {"ExecutionRoleArn", "Tags", "VpcConfig", "EnableNetworkIsolation", "InferenceExecutionConfig"}
)
_CONTAINER_FIELDS = frozenset(
    {"ContainerHostname", "Image", "ImageConfig", "Mode", "ModelDataUrl", "ModelDataSource", "Environment"}
)


def check_environment(env: Mapping[str, str], field: str = "Environment") -> dict[str, str]:
    """``env`` as a dict if it meets SageMaker's Environment limits, else ``ValidationError`` naming the entry."""
    if len(env) > MAX_ENV_ENTRIES:
        raise ValidationError(
            f"{field} has {len(env)} entries; at most {MAX_ENV_ENTRIES} are allowed", field=field
        )
    for key, value in env.items():
        if not isinstance(key, str) or not ENV_KEY_PATTERN.fullmatch(key):
            raise ValidationError(
                f"{field} key {key!r} must match [a-zA-Z_][a-zA-Z0-9_]{{0,1023}}", field=field
            )
        if not isinstance(value, str):
            raise ValidationError(f"{field}[{key}] must be a string, got {type(value).__name__}", field=field)
        if len(value) > MAX_ENV_VALUE:
            raise ValidationError(f"{field}[{key}] is longer than {MAX_ENV_VALUE} characters", field=field)
    # Variables that change which code loads (LD_PRELOAD, PYTHONPATH, ...): serving/environment.py.
    model_env_policy.check_environment(env, field)
    return dict(env)


def effective_environment(
    model_env: Mapping[str, str] | None, job_env: Mapping[str, str] | None
) -> dict[str, str]:
    """The container environment for a job: the model's Environment overlaid by the job's (job wins)."""
    return {**(model_env or {}), **(job_env or {})}


class ModelSpec(BaseModel):
    """A registered model; exactly one of ``model_data``, ``serve_command`` and ``serve_url`` (module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    model_data: str | None = None
    environment: dict[str, str] = {}
    image: str | None = None
    serve_command: list[str] | None = None
    serve_url: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if len(value) > 63 or not MODEL_NAME_PATTERN.fullmatch(value):
            raise ValueError(
                "ModelName must be 1-63 letters, digits and hyphens, starting and ending with a letter or digit"
            )
        return value

    @field_validator("model_data")
    @classmethod
    def _model_data(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            # A local caller's plain path resolves against its own working folder (``base``); the URI grammar
            # refuses '..' and the rest, as in transform URIs.
            parsed = uri_grammar.split(value, field="model_data", base=os.getcwd())
        except ValidationError as exc:
            raise ValueError(str(exc.message).removeprefix("model_data: ")) from None
        if parsed.scheme == "s3":
            if not parsed.key:
                raise ValueError("an s3:// model_data URI must name an object or a prefix, not just a bucket")
            return value
        return os.path.join(parsed.location, parsed.key) if parsed.key else parsed.location

    @field_validator("environment")
    @classmethod
    def _environment(cls, value: dict[str, str]) -> dict[str, str]:
        try:
            return check_environment(value, field="environment")
        except ValidationError as exc:
            raise ValueError(exc.message) from None

    @field_validator("image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        if value is not None and not 1 <= len(value) <= 255:
            raise ValueError("image must be 1-255 characters")
        return value

    @field_validator("serve_command")
    @classmethod
    def _serve_command(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value or not value[0].strip():
            raise ValueError(
                "serve_command must be a non-empty argument list whose first item is the program"
            )
        if any("\x00" in arg for arg in value):
            raise ValueError("serve_command arguments must not contain NUL characters")
        return value

    @field_validator("serve_url")
    @classmethod
    def _serve_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or len(value) > 2048:
            raise ValueError(
                "serve_url must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:8080"
            )
        return value.rstrip("/")

    @model_validator(mode="after")
    def _exactly_one_source(self) -> ModelSpec:
        given = [f for f in ("model_data", "serve_command", "serve_url") if getattr(self, f) is not None]
        if len(given) != 1:
            found = ", ".join(given) if given else "none"
            raise ValueError(
                f"give exactly one of model_data (a model folder, model.tar.gz or s3:// URI), serve_command (your own "
                f"server process) or serve_url (a running server); got {found}"
            )
        return self

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> ModelSpec:
        """Validate ``data``; errors become one ``ValidationError`` naming the field."""
        try:
            return cls.model_validate(dict(data))
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or None
            message = str(first["msg"]).removeprefix("Value error, ")
            where = f"model spec field {field!r}: " if field else "model spec: "
            raise ValidationError(where + message, field=field) from None

    @property
    def is_local_data(self) -> bool:
        """Whether ``model_data`` is a local path (not ``s3://``)."""
        return self.model_data is not None and not self.model_data.startswith("s3://")

    @property
    def model_data_url(self) -> str | None:
        """``model_data`` as a URI: ``s3://...`` as given, local paths as ``file://`` URIs."""
        if self.model_data is None:
            return None
        return self.model_data if not self.is_local_data else Path(self.model_data).as_uri()

    def check_local_paths(self) -> None:
        """``ValidationError`` unless a local ``model_data`` exists and is a folder or a ``.tar.gz``/``.tgz`` file."""
        if not self.is_local_data:
            return
        path = Path(self.model_data)  # type: ignore[arg-type]
        if path.is_dir():
            return
        if not path.exists():
            raise ValidationError(f"model_data {path} does not exist", field="model_data")
        if not path.is_file() or not path.name.endswith(ARCHIVE_SUFFIXES):
            raise ValidationError(
                f"model_data {path} must be a model folder or a model.tar.gz archive", field="model_data"
            )

    def fingerprint(self) -> str:
        """The spec hash used to tell "same model again" from "different model, same name"."""
        return spec_hash(self.model_dump(mode="json", exclude={"name"}))


def check_model_data_url(value: Any, field: str) -> str:
    """``ModelDataUrl`` as CreateModel takes it, checked at create time; ``ValidationError`` naming ``field``.

    AWS takes an ``s3://`` URI or an ``https://`` S3 URL (returned here as ``s3://``; the bucket must follow AWS's
    naming rules); batchlane also takes a ``file://`` URI or an absolute local path. A relative path is refused,
    since it would resolve against the server's working folder, and so is any ``..`` segment.
    """
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string", field=field)
    return uri_grammar.canonical_uri(value, field=field)


def from_sagemaker(request: Mapping[str, Any]) -> ModelSpec:
    """A ``ModelSpec`` from a boto3 ``CreateModel`` request (``PrimaryContainer`` or a single ``Containers[0]``).

    ``ExecutionRoleArn``, ``Tags``, ``VpcConfig``, ``EnableNetworkIsolation`` and ``InferenceExecutionConfig`` are
    accepted and ignored; inference pipelines (several containers), multi-model containers and model packages are
    refused, as is a container without model data (batchlane serves the model itself). Besides SageMaker's
    ``s3://``, ``ModelDataUrl`` may be a ``file://`` URI or a local path (a batchlane extension for local use); a
    server taking requests from other users should restrict those to folders it allows.
    """
    unknown = sorted(set(request) - _IGNORED_CREATE_FIELDS - {"ModelName", "PrimaryContainer", "Containers"})
    if unknown:
        raise ValidationError(f"unknown CreateModel field {unknown[0]!r}", field=unknown[0])
    name = request.get("ModelName")
    if not isinstance(name, str):
        raise ValidationError("ModelName is required", field="ModelName")
    primary, containers = request.get("PrimaryContainer"), request.get("Containers")
    if primary is not None and containers is not None:
        raise ValidationError("give PrimaryContainer or Containers, not both", field="Containers")
    field = "PrimaryContainer"
    if containers is not None:
        if not isinstance(containers, list) or len(containers) != 1:
            raise ValidationError(
                "Containers must hold exactly one container; inference pipelines are not supported",
                field="Containers",
            )
        primary, field = containers[0], "Containers[0]"
    if not isinstance(primary, Mapping):
        raise ValidationError("PrimaryContainer is required", field="PrimaryContainer")
    unknown = sorted(set(primary) - _CONTAINER_FIELDS)
    if unknown:
        raise ValidationError(
            f"{field}.{unknown[0]} is not supported by batchlane", field=f"{field}.{unknown[0]}"
        )
    if primary.get("Mode", "SingleModel") != "SingleModel":
        raise ValidationError(f"{field}.Mode must be SingleModel", field=f"{field}.Mode")
    model_data = primary.get("ModelDataUrl")
    source = primary.get("ModelDataSource")
    if source is not None:
        if model_data is not None:
            raise ValidationError(
                f"give {field}.ModelDataUrl or ModelDataSource, not both", field=f"{field}.ModelDataSource"
            )
        s3 = source.get("S3DataSource") if isinstance(source, Mapping) else None
        if not isinstance(s3, Mapping) or not isinstance(s3.get("S3Uri"), str):
            raise ValidationError(
                f"{field}.ModelDataSource.S3DataSource.S3Uri is required", field=f"{field}.ModelDataSource"
            )
        model_data = s3["S3Uri"]
        if s3.get("CompressionType", "None") == "None" and not model_data.endswith("/"):
            model_data += "/"
    if not model_data:
        raise ValidationError(
            f"{field}.ModelDataUrl is required: batchlane serves the model itself from its model data",
            field=f"{field}.ModelDataUrl",
        )
    url_field = (
        f"{field}.ModelDataSource.S3DataSource.S3Uri" if source is not None else f"{field}.ModelDataUrl"
    )
    model_data = check_model_data_url(model_data, url_field)
    environment = primary.get("Environment") or {}
    if not isinstance(environment, Mapping):
        raise ValidationError(f"{field}.Environment must be a map", field=f"{field}.Environment")
    check_environment(environment, field=f"{field}.Environment")
    data = {
        "name": name,
        "model_data": model_data,
        "environment": dict(environment),
        "image": primary.get("Image"),
    }
    try:
        return ModelSpec.parse(data)
    except ValidationError as exc:
        # Name the field as the caller spelled it in the CreateModel request.
        aws = {"name": "ModelName", "model_data": f"{field}.ModelDataUrl", "image": f"{field}.Image"}
        spec_field = (exc.field or "").split(".")[0]
        if spec_field not in aws:
            raise
        message = exc.message.replace(f"model spec field {exc.field!r}", aws[spec_field])
        raise ValidationError(message, field=aws[spec_field]) from None


@dataclass(frozen=True)
class RegisteredModel:
    """A model in the registry."""

    name: str
    arn: str
    spec: ModelSpec
    creation_time: datetime

    @classmethod
    def _from_row(cls, row: ModelRow) -> RegisteredModel:
        return cls(row.name, row.arn, ModelSpec.parse({**row.spec, "name": row.name}), row.creation_time)

    def summary(self) -> dict[str, Any]:
        """The ModelSummary ListModels returns."""
        return {"ModelName": self.name, "ModelArn": self.arn, "CreationTime": self.creation_time}

    def describe(self) -> dict[str, Any]:
        """The DescribeModel response; ``serve_command``/``serve_url`` appear under the ``Batchlane`` key."""
        container: dict[str, Any] = {}
        if self.spec.image:
            container["Image"] = self.spec.image
        if self.spec.model_data_url:
            container["ModelDataUrl"] = self.spec.model_data_url
        container["Environment"] = dict(self.spec.environment)
        answer: dict[str, Any] = {
            "ModelName": self.name,
            "PrimaryContainer": container,
            "CreationTime": self.creation_time,
            "ModelArn": self.arn,
        }
        extras = {}
        if self.spec.serve_command is not None:
            extras["ServeCommand"] = list(self.spec.serve_command)
        if self.spec.serve_url is not None:
            extras["ServeUrl"] = self.spec.serve_url
        if extras:
            answer[EXTRAS_KEY] = extras
        return answer


def _differences(old: ModelSpec, new: ModelSpec) -> list[str]:
    fields = ("model_data", "image", "serve_command", "serve_url", "environment")
    # Environment by key names only: values may be long or sensitive.
    return spec_diff.differences(
        {f: getattr(old, f) for f in fields}, {f: getattr(new, f) for f in fields}, keys_only={"environment"}
    )


class ModelRegistry:
    """CreateModel/DescribeModel/ListModels/DeleteModel over a ``JobStore``."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def create(self, spec: ModelSpec, *, exist_ok: bool = False, check_paths: bool = True) -> RegisteredModel:
        """Register ``spec``. Same name and spec: the existing model if ``exist_ok``, else ``AlreadyExists``; same
        name, other spec: ``Conflict`` naming the differences. ``check_paths`` checks local model data exists."""
        if check_paths:
            spec.check_local_paths()
        data = spec.model_dump(mode="json", exclude={"name"})
        try:
            return RegisteredModel._from_row(self.store.create_model(spec.name, data, spec.fingerprint()))
        except AlreadyExists as exc:
            existing = RegisteredModel._from_row(exc.existing)  # type: ignore[arg-type]
            differences = _differences(existing.spec, spec)
            if differences:
                raise Conflict(
                    f"model {existing.name} already exists with a different spec: {'; '.join(differences)}",
                    field="ModelName",
                ) from None
            if exist_ok:
                return existing
            raise

    def get(self, name: str) -> RegisteredModel:
        """The model; ``NotFound`` if there is none."""
        return RegisteredModel._from_row(self.store.get_model(name))

    def describe(self, name: str) -> dict[str, Any]:
        """The DescribeModel response for ``name``."""
        return self.get(name).describe()

    def list(
        self,
        *,
        name_contains: str | None = None,
        creation_time_after: datetime | None = None,
        creation_time_before: datetime | None = None,
        sort_by: str = "CreationTime",
        sort_order: str = "Descending",
        max_results: int = 10,
        next_token: str | None = None,
    ) -> tuple[list[RegisteredModel], str | None]:
        """One page of models with ListModels' filters and defaults; the token is None on the last page."""
        rows, token = self.store.list_models(
            name_contains=name_contains,
            creation_time_after=creation_time_after,
            creation_time_before=creation_time_before,
            sort_by=sort_by,
            sort_order=sort_order,
            max_results=max_results,
            next_token=next_token,
        )
        return [RegisteredModel._from_row(row) for row in rows], token

    def delete(self, name: str) -> None:
        """Delete the model; ``NotFound`` if there is none."""
        self.store.delete_model(name)
