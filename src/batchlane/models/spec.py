"""``ModelSpec``: what a registered model is, and the Environment rules it follows.

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
Environment wins over the model's (``effective_environment``).

``image`` is ``PrimaryContainer.Image``. A model with a real image runs that image in Docker, as
SageMaker does (``container_image``; docs/containers.md); such a model may have no ``model_data`` when the image holds its model,
as SageMaker allows. Decision: no image, and the names ``local`` and
``batchlane:local`` (what the docs have always told SageMaker SDK users to record), mean batchlane's built-in server
(``BUILTIN_IMAGES``): ``batchlane serve`` runs as a subprocess, with no Docker needed. Any other name is a real image,
including batchlane's own image under another tag.

The registry that stores specs is ``models.registry``; CreateModel requests become specs in ``models.sagemaker``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pydantic
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from batchlane import aws_names
from batchlane.errors import ValidationError
from batchlane.jobs.store import spec_hash
from batchlane.serving import environment as model_env_policy
from batchlane.storage import uri as uri_grammar

MODEL_NAME_PATTERN = aws_names.MODEL_NAME_RE
ENV_KEY_PATTERN = aws_names.ENV_KEY_RE
MAX_ENV_ENTRIES = aws_names.MAX_ENV_ENTRIES
MAX_ENV_VALUE = aws_names.MAX_ENV_VALUE_CHARS
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
EXTRAS_KEY = "Batchlane"
BUILTIN_IMAGES = frozenset({"local", "batchlane:local"})
"""Image names that mean batchlane's built-in server rather than an image to run (module docstring)."""


def is_real_image(image: str | None) -> bool:
    """Whether ``image`` names an image to run, rather than batchlane's built-in server (``BUILTIN_IMAGES``)."""
    return bool(image and image.strip()) and image.strip().lower() not in BUILTIN_IMAGES  # type: ignore[union-attr]


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
        if not given and is_real_image(self.image):
            return self  # the image holds its model, as SageMaker allows (no ModelDataUrl)
        if len(given) != 1:
            found = ", ".join(given) if given else "none"
            raise ValueError(
                f"give exactly one of model_data (a model folder, model.tar.gz or s3:// URI), serve_command (your own "
                f"server process) or serve_url (a running server), or a container image holding its model; got {found}"
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

    @property
    def container_image(self) -> str | None:
        """The image to run in Docker for this model (its ``image`` is a real one; with or without ``model_data``),
        or None when batchlane serves it itself, runs its ``serve_command`` or uses its ``serve_url``."""
        if self.serve_command is not None or self.serve_url is not None or not is_real_image(self.image):
            return None
        return self.image

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
