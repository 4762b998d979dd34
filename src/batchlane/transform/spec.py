"""The ``CreateTransformJob`` request: AWS field names and every create-time rule (batchlane's own ``JobOptions`` are
in ``options``; effective values are resolved in ``params``).

``validate_request(data)`` accepts exactly the dict a user would pass to boto3's ``create_transform_job(**data)``
and raises ``batchlane.errors.ValidationError`` in AWS's wording, naming the field path (PascalCase as in the
request, e.g. ``TransformInput.SplitType``; AWS itself writes ``transformInput.splitType``)::

    1 validation error detected: Value 'Lines' at 'TransformInput.SplitType' failed to satisfy constraint:
    Member must satisfy enum value set: [None, Line, RecordIO, TFRecord]

Rules beyond the API shapes (docs/transform.md), decided here:

* URIs (``S3Uri``, ``S3OutputPath``, ``DestinationS3Uri``, ``JobOptions.consolidate``) follow the one URI grammar,
  ``storage.uri`` (docs/names-and-uris.md): ``s3://``, the ``https://`` S3 forms (``canonical_uri`` rewrites them to
  ``s3://``), ``file:///abs/path`` and absolute paths; relative paths, other URLs and schemes, ``..`` segments,
  control characters and more than 1024 characters are refused, as are invalid bucket names, at create time.
* ``TransformJobName``, ``ModelName``, ``TransformResources.InstanceType`` and ``Environment`` follow
  ``aws_names`` (docs/names-and-uris.md). ``ModelName`` must be non-empty (the API allows 0 characters, but a model
  must be named).
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

import pydantic
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from batchlane import aws_names, content_types
from batchlane.aws_names import (
    AssembleWithName,
    BatchStrategyName,
    CompressionTypeName,
    JoinSourceName,
    SplitTypeName,
)
from batchlane.defaults import MAX_PAYLOAD_MB, MAX_PAYLOAD_PRODUCT
from batchlane.errors import ValidationError
from batchlane.serving import environment as model_env_policy
from batchlane.storage import uri as uri_grammar
from batchlane.storage.uri import canonical_uri as canonical_uri
from batchlane.transform import jsonpath
from batchlane.transform.field_errors import to_validation_error

DATA_PROCESSING_TYPES = (content_types.CSV, content_types.JSON, content_types.JSONLINES)

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


def _check_uri(value: str) -> str:
    if why := uri_grammar.problem(value):
        raise _fail(f"Member must be an s3:// or file:// URI or an absolute path: {why}")
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
    CompressionType: CompressionTypeName | None = None
    SplitType: SplitTypeName | None = None


class TransformOutput(_Shape):
    S3OutputPath: Uri
    Accept: Annotated[str, _text(0, 256)] | None = None
    AssembleWith: AssembleWithName | None = None
    KmsKeyId: KmsKey | None = None


class TransformResources(_Shape):
    InstanceType: Annotated[str, _text(1, aws_names.MAX_INSTANCE_TYPE_CHARS, aws_names.INSTANCE_TYPE_PATTERN)]
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
    JoinSource: JoinSourceName | None = None


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
        if not aws_names.ENV_KEY_RE.fullmatch(key):
            raise _rule(
                f"Member key must satisfy regular expression pattern: {aws_names.ENV_KEY_PATTERN}", key, key
            )
        if len(value) > aws_names.MAX_ENV_VALUE_CHARS:
            raise _rule(
                f"Member must have length less than or equal to {aws_names.MAX_ENV_VALUE_CHARS}", key, value
            )
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

    TransformJobName: Annotated[str, _text(1, 63, aws_names.JOB_NAME_PATTERN)]
    ModelName: Annotated[str, _text(1, aws_names.MAX_MODEL_NAME_CHARS, aws_names.MODEL_NAME_PATTERN)]
    MaxConcurrentTransforms: int | None = Field(None, ge=0)
    ModelClientConfig: Annotated[ModelClientConfig | None, Field(default=None)]
    MaxPayloadInMB: int | None = Field(None, ge=0, le=MAX_PAYLOAD_MB)
    BatchStrategy: BatchStrategyName | None = None
    Environment: (
        Annotated[
            dict[str, str], Field(max_length=aws_names.MAX_ENV_ENTRIES), AfterValidator(_check_environment)
        ]
        | None
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
