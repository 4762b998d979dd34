"""``LocalPathPolicy``: which local folders API callers may name as model data, job input and job output.

SageMaker requests name ``s3://`` URIs; batchlane also accepts ``file://`` URIs and absolute paths, so through the
control plane a caller could make the server read or write any folder its user can. With ``--allow-path DIR``
(repeatable) every local path in a request must lie under one of those folders, after resolving symlinks and
``..``; ``s3://`` URIs are not affected. Without it, any local path is accepted (the server's key holders are
trusted with the server user's files; see docs/control-plane.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from batchlane.errors import ValidationError
from batchlane.storage import uri as uri_grammar

# Request members holding URIs, as (dotted path, field name used in errors).
TRANSFORM_URI_FIELDS = (
    ("TransformInput.DataSource.S3DataSource.S3Uri", "TransformInput.DataSource.S3DataSource.S3Uri"),
    ("TransformOutput.S3OutputPath", "TransformOutput.S3OutputPath"),
    ("DataCaptureConfig.DestinationS3Uri", "DataCaptureConfig.DestinationS3Uri"),
)
MODEL_URI_FIELDS = (
    ("PrimaryContainer.ModelDataUrl", "PrimaryContainer.ModelDataUrl"),
    (
        "PrimaryContainer.ModelDataSource.S3DataSource.S3Uri",
        "PrimaryContainer.ModelDataSource.S3DataSource.S3Uri",
    ),
)


def _get(data: Mapping[str, Any], dotted: str) -> Any:
    value: Any = data
    for part in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _local_path(uri: str) -> str | None:
    """The filesystem path a URI names, or None for S3 and for URIs the URI grammar refuses (validation reports
    those with its own reason)."""
    try:
        location = uri_grammar.parse(uri)
    except ValidationError:
        return None
    return location.path if location.scheme == "file" else None


class LocalPathPolicy:
    """``check_*`` raise ``ValidationError`` naming the field when a local path lies outside ``roots``."""

    def __init__(self, roots: Iterable[str | os.PathLike[str]] = ()) -> None:
        self.roots = tuple(Path(os.path.realpath(root)) for root in roots)

    @property
    def restricted(self) -> bool:
        return bool(self.roots)

    def check_uri(self, uri: Any, field: str) -> None:
        if not self.restricted or not isinstance(uri, str):
            return
        local = _local_path(uri)
        if local is None:
            return
        resolved = Path(os.path.realpath(local))
        if not resolved.is_absolute() or not any(
            resolved == root or root in resolved.parents for root in self.roots
        ):
            allowed = ", ".join(str(root) for root in self.roots)
            raise ValidationError(
                f"{field} {uri!r} is outside the folders this server allows (--allow-path: {allowed})",
                field=field,
            )

    def check_request(self, request: Mapping[str, Any], fields: Iterable[tuple[str, str]]) -> None:
        for dotted, name in fields:
            self.check_uri(_get(request, dotted), name)

    def check_model_request(self, request: Mapping[str, Any]) -> None:
        self.check_request(request, MODEL_URI_FIELDS)
        for index, container in enumerate(request.get("Containers") or []):
            if isinstance(container, Mapping):
                for dotted, _ in MODEL_URI_FIELDS:
                    inner = dotted.split(".", 1)[1]
                    self.check_uri(_get(container, inner), f"Containers[{index}].{inner}")

    def check_transform_request(self, request: Mapping[str, Any]) -> None:
        self.check_request(request, TRANSFORM_URI_FIELDS)
