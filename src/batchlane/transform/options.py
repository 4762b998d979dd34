"""batchlane's own job options (``JobOptions``), which are not part of the AWS request, and their validation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator

from batchlane import content_types
from batchlane.errors import ValidationError
from batchlane.transform.field_errors import show_value, to_validation_error
from batchlane.transform.spec import CreateTransformJobRequest, Uri


class JobOptions(BaseModel):
    """batchlane's own options (not part of the AWS request). See docs/transform.md.

    * ``csv_header`` (docs/transform.md): ``"none"`` = the reference (a header is just the first record); ``"skip"`` =
      line 1 of each file is not sent, and is written first to the output when JoinSource=Input (see
      ``DataProcessor.output_header``); ``"repeat"`` = line 1 is prepended to every mini-batch payload and is not a
      record. Needs ContentType text/csv and SplitType=Line.
    * ``on_record_error``: ``"fail"`` = the reference (a bad record fails its file); ``"error-row"`` = an error row
      takes the record's place (``assemble.error_row``); ``"skip"`` = the record is left out and counted.
    * ``consolidate``: a JSON Lines file (URI or path) that also receives every result tagged with its input key and
      record index (``assemble.consolidated_line``).
    * ``startup_timeout_s``: how long the model container has to answer ``/ping`` with 200.
    * ``max_error_ratio``: with error-row/skip, fail the file once more than this share of its records failed.
    * ``output_layout``: reserved; only ``"mirror"`` (docs/transform.md key mapping) exists.
    * ``source_headers`` (docs/transform.md): send every ``/invocations`` request with headers naming its input object
      and its first record (``invoke.SOURCE_HEADERS``), so the container can tell what it is processing. Off by
      default: SageMaker sends no such headers.
    * ``record_count``: ``"lenient"`` = as SageMaker, a response is written as returned even when it holds another
      number of results than the records sent; a checkable mismatch is a warning (job log, ``Batchlane.Warnings``
      in describe). ``"strict"`` = such a mismatch fails the file. A join, an OutputFilter, error rows and
      ``consolidate`` always need one result per record (``DataProcessor.count_required_by``).
    * ``max_restarts``: how many times one run of the job may restart its model server after an invocation timed
      out or the server died or stopped answering ``/ping`` (``transform.supervisor``); one more fault fails the job.
      0 = never restart: such a fault fails the job at once.
    * ``max_runtime_s``: a deadline for one run of the job (SageMaker's ``StoppingCondition.MaxRuntimeInSeconds``
      idea); past it the job ends Stopped with the reason ``MaxRuntimeExceeded``, its committed files kept.
    * ``part_size``: the byte budget of one part (docs/parts.md): a larger uncompressed Line/RecordIO/TFRecord
      object is cut into parts at mini-batch boundaries, each checkpointed on its own. None = ``BATCHLANE_PART_SIZE``,
      else 64 MiB.
    * ``engine``: where the job runs (docs/engines.md); ``jobs resume`` runs it on the same engine.
    * ``address``, ``replicas``, ``gpus_per_replica`` (engine ``ray``, docs/ray.md): the Ray cluster (None = a
      local Ray started for the job, ``auto``, or ``ray://host:port``), the replica pool size (default
      InstanceCount × replicas per instance) and the GPUs each replica gets (default 1 for a GPU instance type).
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    csv_header: Literal["none", "skip", "repeat"] = "none"
    on_record_error: Literal["fail", "error-row", "skip"] = "fail"
    consolidate: Uri | None = None
    startup_timeout_s: float = Field(120.0, gt=0, le=86400)
    max_error_ratio: float | None = Field(None, ge=0, le=1)
    output_layout: Literal["mirror"] = "mirror"
    source_headers: bool = False
    record_count: Literal["lenient", "strict"] = "lenient"
    max_restarts: int = Field(3, ge=0, le=100)
    max_runtime_s: int | None = Field(None, ge=1)
    part_size: int | None = Field(None, ge=1)
    engine: str = "local"
    address: str | None = None
    replicas: int | None = Field(None, ge=1, le=4096)
    gpus_per_replica: float | None = Field(None, ge=0, le=64)

    # Fields added after jobs were first stored: they are stored only when set, so a job created before they existed
    # keeps its spec hash, and re-submitting it with ``if_same_spec_ok`` still finds the same spec.
    _STORED_WHEN_SET: ClassVar[frozenset[str]] = frozenset(
        {"part_size", "engine", "address", "replicas", "gpus_per_replica"}
    )

    def stored(self) -> dict[str, Any]:
        """The options as the job store keeps them (JSON; the later fields only when they differ from the default)."""
        data = self.model_dump(mode="json")
        for name in self._STORED_WHEN_SET:
            if data.get(name) == type(self).model_fields[name].default:
                data.pop(name)
        return data

    @field_validator("engine")
    @classmethod
    def _engine(cls, value: str) -> str:
        from batchlane.engines.base import ENGINE_NAMES  # engines import this module

        if value not in ENGINE_NAMES:
            raise ValueError(f"engine must be one of {', '.join(ENGINE_NAMES)}")
        return value


def validate_options(
    data: Mapping[str, Any] | JobOptions | None = None, request: CreateTransformJobRequest | None = None
) -> JobOptions:
    """Validate ``JobOptions`` (``None`` = all defaults) and, given the request, their cross-checks: a csv_header
    mode needs ContentType text/csv and SplitType=Line; max_error_ratio needs on_record_error error-row or skip."""
    try:
        options = data if isinstance(data, JobOptions) else JobOptions.model_validate(dict(data or {}))
    except pydantic.ValidationError as exc:
        raise to_validation_error(exc, JobOptions) from None
    problem: tuple[str, Any, str] | None = None
    if request is not None and options.csv_header != "none":
        tin = request.TransformInput
        if content_types.normalize(tin.ContentType) != content_types.CSV or tin.SplitType != "Line":
            problem = ("csv_header", options.csv_header, "needs ContentType text/csv and SplitType=Line")
    if options.max_error_ratio is not None and options.on_record_error == "fail":
        problem = ("max_error_ratio", options.max_error_ratio, "needs on_record_error error-row or skip")
    if problem:
        name, value, text = problem
        raise ValidationError(
            f"1 validation error detected: Value {show_value(value)} at '{name}' failed to satisfy constraint: {text}",
            field=name,
        )
    return options
