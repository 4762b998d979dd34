"""Effective transform parameters: the request's values, then the container's ``/execution-parameters``, then the
defaults (docs/transform.md), plus the model container's environment. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from batchlane import content_types
from batchlane.aws_names import AssembleWith, BatchStrategy, CompressionType, JoinSource, SplitType
from batchlane.defaults import (
    DEFAULT_BATCH_STRATEGY,
    DEFAULT_INVOCATIONS_MAX_RETRIES,
    DEFAULT_INVOCATIONS_TIMEOUT_S,
    DEFAULT_MAX_CONCURRENT_TRANSFORMS,
    DEFAULT_MAX_PAYLOAD_MB,
    MAX_PAYLOAD_MB,
    MB,
)
from batchlane.errors import ValidationError
from batchlane.transform.spec import CreateTransformJobRequest, DataProcessing, ModelClientConfig


@dataclass(frozen=True)
class EffectiveParams:
    """Every value the runner needs, defaults applied. ``sources`` says where the three execution parameters came
    from (``"request"``, ``"container"`` or ``"default"``). ``accept`` is None when the request sets none (no header
    is sent); ``result_type`` is the declared output type (Accept, else ContentType): what a response is parsed as when
    it declares no Content-Type of its own, and the format of joins and error rows. The AWS enums are ``StrEnum``
    members (equal to their API strings), checked once here and trusted downstream."""

    max_concurrent_transforms: int
    max_payload_mb: int
    batch_strategy: BatchStrategy
    invocations_timeout_s: int
    invocations_max_retries: int
    split_type: SplitType
    compression_type: CompressionType
    content_type: str | None
    accept: str | None
    assemble_with: AssembleWith
    input_filter: str
    output_filter: str
    join_source: JoinSource
    sources: Mapping[str, str] = field(default_factory=dict)

    @property
    def max_payload_bytes(self) -> int | None:
        """The payload limit in bytes (MiB × 2**20); None for MaxPayloadInMB=0 (unlimited, chunked)."""
        return self.max_payload_mb * MB or None

    @property
    def result_type(self) -> str:
        return content_types.normalize(self.accept or self.content_type)

    def log_line(self) -> str:
        """The platform's ``[sagemaker logs]`` line: ``MaxConcurrentTransforms=1, MaxPayloadInMB=6, ...``."""
        return (
            f"MaxConcurrentTransforms={self.max_concurrent_transforms}, MaxPayloadInMB={self.max_payload_mb}, "
            f"BatchStrategy={self.batch_strategy.variable}"
        )


def normalize_batch_strategy(value: Any) -> BatchStrategy:
    """``MultiRecord``/``MULTI_RECORD``/``multi_record`` → ``BatchStrategy.MULTI_RECORD`` (same for Single);
    ``ValueError`` else."""
    if isinstance(value, str):
        folded = value.replace("_", "").replace("-", "").lower()
        if folded == "multirecord":
            return BatchStrategy.MULTI_RECORD
        if folded == "singlerecord":
            return BatchStrategy.SINGLE_RECORD
    raise ValueError(f"BatchStrategy must be MultiRecord or SingleRecord, got {value!r}")


def parse_execution_parameters(data: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate a container's ``GET /execution-parameters`` answer; unknown keys are ignored.

    Returns the known keys that are set, normalised: ``MaxConcurrentTransforms`` (≥1; 0 counts as unset),
    ``MaxPayloadInMB`` (0–100), ``BatchStrategy`` (either spelling). Invalid values raise ``ValidationError`` naming
    the key, so a job fails at start with a clear reason instead of guessing.
    """
    out: dict[str, Any] = {}
    for key, low, high in (("MaxConcurrentTransforms", 0, None), ("MaxPayloadInMB", 0, MAX_PAYLOAD_MB)):
        raw = (data or {}).get(key)
        if raw is None:
            continue
        if isinstance(raw, str) and raw.strip().isdigit():
            raw = int(raw)
        if (
            isinstance(raw, bool)
            or not isinstance(raw, int)
            or raw < low
            or (high is not None and raw > high)
        ):
            limit = f"{low}..{high}" if high is not None else f">= {low}"
            raise ValidationError(
                f"/execution-parameters {key} must be an integer {limit}, got {raw!r}",
                field=f"execution-parameters.{key}",
            )
        if key != "MaxConcurrentTransforms" or raw > 0:
            out[key] = raw
    if (data or {}).get("BatchStrategy") is not None:
        try:
            out["BatchStrategy"] = normalize_batch_strategy(data["BatchStrategy"])  # type: ignore[index]
        except ValueError as exc:
            raise ValidationError(
                f"/execution-parameters {exc}", field="execution-parameters.BatchStrategy"
            ) from None
    return out


def resolve(
    request: CreateTransformJobRequest, execution_parameters: Mapping[str, Any] | None = None
) -> EffectiveParams:
    """Effective values: request, then the container's ``/execution-parameters`` (raw JSON object, either
    BatchStrategy spelling), then the defaults MCT=1, MaxPayloadInMB=6, MultiRecord, timeout 600 s, 3 retries.

    ``MaxConcurrentTransforms=0`` in the request counts as unset (API doc); ``MaxPayloadInMB=0`` means unlimited.
    AssembleWith, when unset, is ``Line`` for SplitType=Line and ``None`` otherwise (docs/transform.md; the reference
    default is None). Filters default to ``$``, JoinSource to ``None``.
    """
    container = parse_execution_parameters(execution_parameters)
    sources: dict[str, str] = {}

    def pick(name: str, requested: Any, default: Any) -> Any:
        for source, value in (
            ("request", requested),
            ("container", container.get(name)),
            ("default", default),
        ):
            if value is not None:
                sources[name] = source
                return value
        raise AssertionError(name)  # unreachable: the default is never None

    mct = pick(
        "MaxConcurrentTransforms", request.MaxConcurrentTransforms or None, DEFAULT_MAX_CONCURRENT_TRANSFORMS
    )
    payload = pick("MaxPayloadInMB", request.MaxPayloadInMB, DEFAULT_MAX_PAYLOAD_MB)
    strategy = pick("BatchStrategy", request.BatchStrategy, DEFAULT_BATCH_STRATEGY)
    client = request.ModelClientConfig or ModelClientConfig()
    tin, tout = request.TransformInput, request.TransformOutput
    dp = request.DataProcessing or DataProcessing()
    split = SplitType(tin.SplitType or SplitType.NONE)
    return EffectiveParams(
        max_concurrent_transforms=mct,
        max_payload_mb=payload,
        batch_strategy=BatchStrategy(strategy),
        invocations_timeout_s=client.InvocationsTimeoutInSeconds or DEFAULT_INVOCATIONS_TIMEOUT_S,
        invocations_max_retries=(
            DEFAULT_INVOCATIONS_MAX_RETRIES
            if client.InvocationsMaxRetries is None
            else client.InvocationsMaxRetries
        ),
        split_type=split,
        compression_type=CompressionType(tin.CompressionType or CompressionType.NONE),
        content_type=tin.ContentType,
        accept=tout.Accept,
        assemble_with=AssembleWith(
            tout.AssembleWith or (AssembleWith.LINE if split is SplitType.LINE else AssembleWith.NONE)
        ),
        input_filter=dp.InputFilter or "$",
        output_filter=dp.OutputFilter or "$",
        join_source=JoinSource(dp.JoinSource or JoinSource.NONE),
        sources=sources,
    )


def container_environment(
    request: CreateTransformJobRequest, model_environment: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The model container's environment (docs/transform.md): the model's, then the job's ``Environment`` over it, then
    ``SAGEMAKER_BATCH=true`` and, only for values set in the request, ``SAGEMAKER_MAX_PAYLOAD_IN_MB``,
    ``SAGEMAKER_BATCH_STRATEGY`` (``SINGLE_RECORD``/``MULTI_RECORD``) and ``SAGEMAKER_MAX_CONCURRENT_TRANSFORMS``."""
    env = {**(model_environment or {}), **(request.Environment or {}), "SAGEMAKER_BATCH": "true"}
    if request.MaxPayloadInMB is not None:
        env["SAGEMAKER_MAX_PAYLOAD_IN_MB"] = str(request.MaxPayloadInMB)
    if request.BatchStrategy is not None:
        env["SAGEMAKER_BATCH_STRATEGY"] = BatchStrategy(request.BatchStrategy).variable
    if request.MaxConcurrentTransforms:
        env["SAGEMAKER_MAX_CONCURRENT_TRANSFORMS"] = str(request.MaxConcurrentTransforms)
    return env
