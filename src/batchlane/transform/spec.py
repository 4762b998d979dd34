"""The ``CreateTransformJob`` request: AWS field names and every create-time rule (batchlane's own ``JobOptions`` are
in ``options``; effective values are resolved in ``params``).

``validate_request(data)`` accepts exactly the dict a user would pass to boto3's ``create_transform_job(**data)``
and raises ``batchlane.errors.ValidationError`` in AWS's wording, naming the field path (PascalCase as in the
request, e.g. ``TransformInput.SplitType``; AWS itself writes ``transformInput.splitType``)::

    1 validation error detected: Value 'Lines' at 'TransformInput.SplitType' failed to satisfy constraint:
    Member must satisfy enum value set: [None, Line, RecordIO, TFRecord]

Rules beyond the API shapes (docs/transform.md), decided here:

* URIs (``S3Uri``, ``S3OutputPath``, ``DestinationS3Uri``, ``JobOptions.consolidate``): ``s3://bucket/key``, the
  documented ``https://`` S3 forms (virtual-hosted ``https://b.s3[.region].amazonaws.com/k`` and path-style
  ``https://s3[.region].amazonaws.com/b/k``; ``canonical_uri`` rewrites them to ``s3://``), ``file:///abs/path``
  and plain local paths. Any other ``http(s)://`` URL or scheme is refused (SSRF, docs/reliability.md), as are
  ``..`` segments (also percent-encoded), NUL and more than 1024 characters (row 7). Bucket names follow AWS's
  rules (``storage.bucket``), so ``s3://A_B/`` fails at create time, not when the job runs.
* ``TransformResources.InstanceType``: any ``ml.<family>.<size>`` name (AWS's enum of ~116 values changes too often
  to pin) or ``local`` / ``local_gpu`` (the SDK's local-mode names) for on-prem runs. Locally it only labels the
  job. ``ModelName`` must be non-empty (the API allows 0 characters, but a model must be named).
* ``S3DataType``: ``S3Prefix`` and ``ManifestFile`` only (``AugmentedManifestFile`` and ``Converse`` are refused).
* DataProcessing: filters are parsed at create time (``jsonpath.parse``), unions of ranges included. Types must be
  ``text/csv``, ``application/json`` or ``application/jsonlines`` where used: ``InputFilter`` needs ContentType;
  ``OutputFilter`` needs Accept; ``JoinSource=Input`` needs both, and of the same family (CSV with CSV, JSON with
  JSON/JSON Lines: joining a CSV row with a JSON result has no defined shape). CSV filters must be index paths
  (a CSV row is an array; ``$.id`` could never match). Per-record processing needs
  ``SplitType=Line`` (a whole ``application/json`` object, ``SplitType=None``, is also one record). CSV joins need
  AssembleWith ``Line``; an unset AssembleWith is accepted because it resolves to Line (see ``resolve``).
* Tags: at most 50, unique keys, none starting with ``aws:`` (reserved).
* ``MaxConcurrentTransforms × MaxPayloadInMB ≤ 100`` is checked when both are in the request; values from
  ``/execution-parameters`` are only range-checked.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Annotated, Any, Literal
from urllib.parse import unquote

import pydantic
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from batchlane import content_types
from batchlane.errors import ValidationError
from batchlane.serving import environment as model_env_policy
from batchlane.storage.base import S3_HTTPS_PATH as _S3_PATH
from batchlane.storage.base import S3_HTTPS_VIRTUAL as _S3_VIRTUAL
from batchlane.storage.bucket import bucket_name_problem
from batchlane.transform import jsonpath
from batchlane.transform.field_errors import to_validation_error

DEFAULT_MAX_CONCURRENT_TRANSFORMS = 1
DEFAULT_MAX_PAYLOAD_MB = 6
DEFAULT_BATCH_STRATEGY = "MultiRecord"
DEFAULT_INVOCATIONS_TIMEOUT_S = 600
DEFAULT_INVOCATIONS_MAX_RETRIES = 3
MAX_PAYLOAD_PRODUCT = 100
MB = 1024 * 1024

DATA_PROCESSING_TYPES = (content_types.CSV, content_types.JSON, content_types.JSONLINES)
INSTANCE_TYPE_PATTERN = r"ml\.[a-z0-9-]+\.[a-z0-9-]+|local|local_gpu"

_TAG_PUNCT = set("_.:/=+-@")


def _fail(message: str) -> PydanticCustomError:
    return PydanticCustomError("aws_constraint", "{message}", {"message": message})


def _text(min_len: int = 0, max_len: int | None = None, pattern: str | None = None) -> AfterValidator:
    compiled = re.compile(pattern) if pattern else None

    def check(value: str) -> str:
        if len(value) < min_len:
            raise _fail(f"Member must have length greater than or equal to {min_len}")
        if max_len is not None and len(value) > max_len:
            raise _fail(f"Member must have length less than or equal to {max_len}")
        if compiled is not None and not compiled.fullmatch(value):
            raise _fail(f"Member must satisfy regular expression pattern: {pattern}")
        return value

    return AfterValidator(check)


def _tag_text(max_len: int, min_len: int) -> AfterValidator:
    def check(value: str) -> str:
        if not min_len <= len(value) <= max_len:
            raise _fail(f"Member must have length between {min_len} and {max_len}")
        for char in value:
            if char not in _TAG_PUNCT and unicodedata.category(char)[0] not in "LZN":
                raise _fail(r"Member must satisfy regular expression pattern: ([\p{L}\p{Z}\p{N}_.:/=+\-@]*)")
        return value

    return AfterValidator(check)


def split_uri(uri: str) -> tuple[str, str, str]:
    """``(scheme, location, key)``: ``("s3", bucket, key)`` or ``("file", "", path)``. https S3 URLs become s3.

    Raises ``ValueError`` with a one-line reason for anything ``validate_request`` refuses.
    """
    if not uri:
        raise ValueError("must not be empty")
    if len(uri) > 1024:
        raise ValueError("must have at most 1024 characters")
    if "\x00" in uri:
        raise ValueError("must not contain NUL characters")
    scheme, sep, rest = uri.partition("://")
    scheme = scheme.lower() if sep else ""
    if scheme == "s3":
        bucket, _, key = rest.partition("/")
        location = ("s3", bucket, key)
    elif scheme == "https":
        match = _S3_VIRTUAL.fullmatch(uri) or _S3_PATH.fullmatch(uri)
        if not match:
            raise ValueError("https URLs must be S3 object URLs (https://BUCKET.s3.REGION.amazonaws.com/KEY)")
        location = ("s3", match["bucket"], unquote(match["key"] or ""))
    elif scheme == "file":
        host, _, path = rest.partition("/")
        if host not in ("", "localhost"):
            raise ValueError("file URIs must not name a host (use file:///absolute/path)")
        location = ("file", "", unquote("/" + path))
    elif sep:
        raise ValueError(f"unsupported scheme {scheme!r}; use s3://, file:// or a local path")
    else:
        location = ("file", "", uri)
    if location[0] == "s3" and (problem := bucket_name_problem(location[1])):
        raise ValueError(problem)
    segments = re.split(r"[/\\]", location[2])
    if any(segment == ".." or unquote(segment) == ".." for segment in segments):
        raise ValueError("must not contain '..' path segments")
    return location


def canonical_uri(uri: str) -> str:
    """The URI the object stores understand: https S3 forms become ``s3://bucket/key``; others are unchanged."""
    scheme, location, key = split_uri(uri)
    if scheme == "s3" and not uri.startswith("s3://"):
        return f"s3://{location}/{key}"
    return uri


def _check_uri(value: str) -> str:
    try:
        split_uri(value)
    except ValueError as exc:
        raise _fail(f"Member must be an s3:// or file:// URI or a local path: {exc}") from None
    return value


def _check_filter(value: str) -> str:
    try:
        jsonpath.parse(value)
    except ValidationError as exc:
        raise _fail(str(exc)) from None
    return value


Uri = Annotated[str, AfterValidator(_check_uri)]
KmsKey = Annotated[str, _text(0, 2048, r"[a-zA-Z0-9:/_-]*")]
ExperimentEntityName = Annotated[str, _text(1, 120, r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,119}")]
JsonPathExpr = Annotated[str, AfterValidator(_check_filter)]


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ModelClientConfig(_Shape):
    InvocationsTimeoutInSeconds: int | None = Field(None, ge=1, le=3600)
    InvocationsMaxRetries: int | None = Field(None, ge=0, le=3)


class TransformS3DataSource(_Shape):
    S3DataType: Literal["ManifestFile", "S3Prefix", "AugmentedManifestFile", "Converse"]
    S3Uri: Uri

    @model_validator(mode="after")
    def _transform_types(self) -> TransformS3DataSource:
        if self.S3DataType in ("AugmentedManifestFile", "Converse"):
            raise _rule(
                f"{self.S3DataType} is not supported by transform jobs; use S3Prefix or ManifestFile",
                "S3DataType",
                self.S3DataType,
            )
        return self


class TransformDataSource(_Shape):
    S3DataSource: TransformS3DataSource


class TransformInput(_Shape):
    DataSource: TransformDataSource
    ContentType: Annotated[str, _text(0, 256)] | None = None
    CompressionType: Literal["None", "Gzip"] | None = None
    SplitType: Literal["None", "Line", "RecordIO", "TFRecord"] | None = None


class TransformOutput(_Shape):
    S3OutputPath: Uri
    Accept: Annotated[str, _text(0, 256)] | None = None
    AssembleWith: Literal["None", "Line"] | None = None
    KmsKeyId: KmsKey | None = None


class TransformResources(_Shape):
    InstanceType: Annotated[str, _text(1, 64, INSTANCE_TYPE_PATTERN)]
    InstanceCount: int = Field(ge=1)
    VolumeKmsKeyId: KmsKey | None = None
    TransformAmiVersion: Annotated[str, _text(1, 63, r"[a-zA-Z0-9]+(-[a-zA-Z0-9]+)*")] | None = None


class BatchDataCaptureConfig(_Shape):
    DestinationS3Uri: Uri
    KmsKeyId: KmsKey | None = None
    GenerateInferenceId: bool | None = None


class DataProcessing(_Shape):
    InputFilter: JsonPathExpr | None = None
    OutputFilter: JsonPathExpr | None = None
    JoinSource: Literal["Input", "None"] | None = None


class Tag(_Shape):
    Key: Annotated[str, _tag_text(128, 1)]
    Value: Annotated[str, _tag_text(256, 0)]


class ExperimentConfig(_Shape):
    ExperimentName: ExperimentEntityName | None = None
    TrialName: ExperimentEntityName | None = None
    TrialComponentDisplayName: ExperimentEntityName | None = None
    RunName: ExperimentEntityName | None = None


def _check_environment(env: dict[str, str]) -> dict[str, str]:
    for key, value in env.items():
        if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]{0,1023}", key):
            raise _rule(
                "Member key must satisfy regular expression pattern: [a-zA-Z_][a-zA-Z0-9_]{0,1023}", key, key
            )
        if len(value) > 10240:
            raise _rule("Member must have length less than or equal to 10240", key, value)
    refused = model_env_policy.find_refusal(env)
    if refused is not None:
        raise _rule(refused.constraint, refused.key, refused.value)
    return env


def _rule(message: str, path: str, value: Any) -> PydanticCustomError:
    """A cross-field rule violation naming ``path`` (relative to the model that raises it)."""
    return PydanticCustomError("aws_rule", "{message}", {"message": message, "field": path, "value": value})


class CreateTransformJobRequest(_Shape):
    """The request, field for field as in the API (attribute names are the AWS names). Unset optional fields stay
    ``None`` so ``to_dict`` returns what was sent; use ``resolve`` for effective values."""

    TransformJobName: Annotated[str, _text(1, 63, r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")]
    ModelName: Annotated[str, _text(1, 63, r"[a-zA-Z0-9]([\-a-zA-Z0-9]*[a-zA-Z0-9])?")]
    MaxConcurrentTransforms: int | None = Field(None, ge=0)
    ModelClientConfig: Annotated[ModelClientConfig | None, Field(default=None)]
    MaxPayloadInMB: int | None = Field(None, ge=0, le=100)
    BatchStrategy: Literal["MultiRecord", "SingleRecord"] | None = None
    Environment: (
        Annotated[dict[str, str], Field(max_length=16), AfterValidator(_check_environment)] | None
    ) = None
    TransformInput: TransformInput
    TransformOutput: TransformOutput
    DataCaptureConfig: BatchDataCaptureConfig | None = None
    TransformResources: TransformResources
    DataProcessing: Annotated[DataProcessing | None, Field(default=None)]
    Tags: Annotated[list[Tag], Field(max_length=50)] | None = None
    ExperimentConfig: Annotated[ExperimentConfig | None, Field(default=None)]

    @model_validator(mode="after")
    def _cross_field_rules(self) -> CreateTransformJobRequest:
        mct, payload = self.MaxConcurrentTransforms, self.MaxPayloadInMB
        if mct is not None and payload is not None and mct * payload > MAX_PAYLOAD_PRODUCT:
            raise _rule(
                f"MaxConcurrentTransforms x MaxPayloadInMB must be <= {MAX_PAYLOAD_PRODUCT} "
                f"(got {mct} x {payload} = {mct * payload})",
                "MaxPayloadInMB",
                payload,
            )
        keys = [tag.Key for tag in self.Tags or ()]
        for i, key in enumerate(keys):
            if key.lower().startswith("aws:"):
                raise _rule("tag keys starting with 'aws:' are reserved", f"Tags[{i}].Key", key)
            if key in keys[:i]:
                raise _rule("tag keys must be unique", f"Tags[{i}].Key", key)
        _check_data_processing(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        """The request as sent (unset and ``None`` fields left out): for storage and DescribeTransformJob."""
        return self.model_dump(exclude_unset=True, exclude_none=True)


def _check_data_processing(request: CreateTransformJobRequest) -> None:
    dp = request.DataProcessing or DataProcessing()
    filters_input = not jsonpath.parse(dp.InputFilter or "$").is_identity
    filters_output = not jsonpath.parse(dp.OutputFilter or "$").is_identity
    join = dp.JoinSource == "Input"
    if not (filters_input or filters_output or join):
        return
    tin, tout = request.TransformInput, request.TransformOutput
    content_type = content_types.normalize(tin.ContentType)
    accept = content_types.normalize(tout.Accept)
    allowed = ", ".join(DATA_PROCESSING_TYPES)
    reason = "JoinSource=Input" if join else "InputFilter" if filters_input else "OutputFilter"
    if (filters_input or join) and content_type not in DATA_PROCESSING_TYPES:
        raise _rule(f"{reason} needs ContentType {allowed}", "TransformInput.ContentType", tin.ContentType)
    if (filters_output or join) and accept not in DATA_PROCESSING_TYPES:
        reason = "JoinSource=Input" if join else "OutputFilter"
        raise _rule(f"{reason} needs Accept {allowed}", "TransformOutput.Accept", tout.Accept)
    if join and (content_type == content_types.CSV) != (accept == content_types.CSV):
        raise _rule(
            "JoinSource=Input needs Accept of the same family as ContentType (CSV with CSV, JSON with "
            "JSON or JSON Lines)",
            "TransformOutput.Accept",
            tout.Accept,
        )
    record_type = content_type if (filters_input or join) else accept
    split = tin.SplitType or "None"
    if split != "Line" and not (split == "None" and record_type == content_types.JSON):
        raise _rule(
            f"DataProcessing processes records one by one: {record_type} needs SplitType=Line",
            "TransformInput.SplitType",
            tin.SplitType,
        )
    for name, expr, media, used in (
        ("InputFilter", dp.InputFilter, content_type, filters_input),
        ("OutputFilter", dp.OutputFilter, accept, filters_output),
    ):
        if used and media == content_types.CSV and jsonpath.parse(expr or "$").uses_names:
            raise _rule(
                "text/csv records are arrays of fields: use index paths such as $[0], $[1:] or $[0,-1]",
                f"DataProcessing.{name}",
                expr,
            )
    if join and content_type == content_types.CSV and tout.AssembleWith == "None":
        raise _rule(
            "JoinSource=Input with text/csv needs AssembleWith=Line",
            "TransformOutput.AssembleWith",
            tout.AssembleWith,
        )


def validate_request(data: Mapping[str, Any] | CreateTransformJobRequest) -> CreateTransformJobRequest:
    """Validate the boto3-shaped request dict; ``ValidationError`` (AWS wording, every problem, ``field`` = the first
    field path) on any violation of the shapes or the rules in this module's docstring."""
    if isinstance(data, CreateTransformJobRequest):
        return data
    try:
        return CreateTransformJobRequest.model_validate(dict(data) if isinstance(data, Mapping) else data)
    except pydantic.ValidationError as exc:
        raise to_validation_error(exc, CreateTransformJobRequest) from None
