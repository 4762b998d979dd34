"""The SageMaker actions of the control plane (``X-Amz-Target: SageMaker.<Action>``, AWS JSON 1.1).

Models: ``CreateModel``, ``DescribeModel``, ``ListModels``, ``DeleteModel`` over ``batchlane.models``. Transform
jobs: ``CreateTransformJob`` (the engine's ``submit``, then the server's executor runs it),
``DescribeTransformJob``, ``ListTransformJobs`` (NextToken/MaxResults paging, filters, sorting) and
``StopTransformJob`` over the job store. Request and response shapes are SageMaker's (docs/control-plane.md).

Errors follow what SageMaker clients see, not only what the API model declares (all HTTP 400):

* invalid fields → ``ValidationException`` naming the field;
* an unknown job, model, or a job's unknown model → ``ValidationException`` ("Could not find transform job '<arn>'."),
  which is what the service answers and what botocore's ``TransformJobCompletedOrStopped`` waiter expects;
  ``StopTransformJob`` on an unknown job → ``ResourceNotFound`` (its declared error);
* a job name in use → ``ResourceInUse``; a model name in use → ``ValidationException`` ("Cannot create already
  existing model …"), as SageMaker answers;
* anything unexpected → ``InternalFailure`` (HTTP 500) with a short message; the traceback goes to the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from batchlane.api.paths import LocalPathPolicy
from batchlane.api.protocol import AwsError, parse_timestamp
from batchlane.errors import AlreadyExists, BatchlaneError, Conflict, NotFound, ValidationError
from batchlane.jobs.describe import describe_job, summarize_job
from batchlane.jobs.state import JobStatus, check_job_name
from batchlane.jobs.store import JobStore

log = logging.getLogger(__name__)

SERVICE = "sagemaker"
TARGET_PREFIX = "SageMaker"

_LIST_JOB_FIELDS = {
    "CreationTimeAfter",
    "CreationTimeBefore",
    "LastModifiedTimeAfter",
    "LastModifiedTimeBefore",
    "NameContains",
    "StatusEquals",
    "SortBy",
    "SortOrder",
    "NextToken",
    "MaxResults",
}
_LIST_MODEL_FIELDS = {
    "CreationTimeAfter",
    "CreationTimeBefore",
    "NameContains",
    "SortBy",
    "SortOrder",
    "NextToken",
    "MaxResults",
}


def _unknown_fields(params: Mapping[str, Any], allowed: set[str], action: str) -> None:
    extra = sorted(set(params) - allowed)
    if extra:
        raise ValidationError(f"{action} does not accept the field {extra[0]!r}", field=extra[0])


def _string(params: Mapping[str, Any], field: str, *, required: bool = True) -> str | None:
    value = params.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ValidationError(
            f"1 validation error detected: Value {value!r} at '{field}' failed to satisfy constraint: "
            "Member must be a non-empty string",
            field=field,
        )
    return value


def _int(params: Mapping[str, Any], field: str, default: int) -> int:
    value = params.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(
            f"1 validation error detected: Value {value!r} at '{field}' failed to satisfy constraint: "
            "Member must be an integer",
            field=field,
        )
    return value


def _time(params: Mapping[str, Any], field: str) -> Any:
    return None if params.get(field) is None else parse_timestamp(params[field], field)


class SageMakerApi:
    """Dispatches SageMaker actions to the store; ``on_job_ready(name)`` hands jobs to run to the executor."""

    def __init__(
        self,
        store: JobStore,
        *,
        on_job_ready: Callable[[str], Any] | None = None,
        paths: LocalPathPolicy | None = None,
    ) -> None:
        self.store = store
        self.on_job_ready = on_job_ready or (lambda name: None)
        self.paths = paths or LocalPathPolicy()
        self.actions: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "CreateModel": self.create_model,
            "DescribeModel": self.describe_model,
            "ListModels": self.list_models,
            "DeleteModel": self.delete_model,
            "CreateTransformJob": self.create_transform_job,
            "DescribeTransformJob": self.describe_transform_job,
            "ListTransformJobs": self.list_transform_jobs,
            "StopTransformJob": self.stop_transform_job,
        }

    def handle(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        """Run ``action``; any failure comes out as an ``AwsError`` in SageMaker's shape."""
        handler = self.actions.get(action)
        if handler is None:
            raise AwsError(
                "UnknownOperationException",
                f"batchlane serves SageMaker {', '.join(sorted(self.actions))}; not {action!r}",
            )
        try:
            return handler(params)
        except AwsError:
            raise
        except NotFound as exc:
            code = "ResourceNotFound" if action == "StopTransformJob" else "ValidationException"
            raise AwsError(code, exc.message) from None
        except (AlreadyExists, Conflict) as exc:
            code = "ValidationException" if action == "CreateModel" else "ResourceInUse"
            raise AwsError(code, exc.message) from None
        except BatchlaneError as exc:
            if exc.status >= 500:
                log.exception("SageMaker.%s failed", action)
                raise AwsError(exc.code, exc.message, status=500, sender=False) from None
            raise AwsError("ValidationException", exc.message) from None
        except Exception:
            log.exception("SageMaker.%s failed", action)
            raise AwsError(
                "InternalFailure", "An internal error occurred; see the server log", status=500, sender=False
            ) from None

    # -- models ------------------------------------------------------------------------------------------------
    def create_model(self, params: dict[str, Any]) -> dict[str, Any]:
        from batchlane.models import ModelRegistry, from_sagemaker

        self.paths.check_model_request(params)
        spec = from_sagemaker(params)
        try:
            model = ModelRegistry(self.store).create(spec)
        except Conflict as exc:
            if isinstance(exc, AlreadyExists):
                raise
            # Same name, another spec: SageMaker says "already existing"; add what differs.
            arn = self.store.model_arn(spec.name)
            raise AlreadyExists(f'Cannot create already existing model "{arn}". ({exc.message})') from None
        return {"ModelArn": model.arn}

    def describe_model(self, params: dict[str, Any]) -> dict[str, Any]:
        from batchlane.models import ModelRegistry

        _unknown_fields(params, {"ModelName"}, "DescribeModel")
        return ModelRegistry(self.store).describe(_string(params, "ModelName"))  # type: ignore[arg-type]

    def list_models(self, params: dict[str, Any]) -> dict[str, Any]:
        from batchlane.models import ModelRegistry

        _unknown_fields(params, _LIST_MODEL_FIELDS, "ListModels")
        models, token = ModelRegistry(self.store).list(
            name_contains=_string(params, "NameContains", required=False),
            creation_time_after=_time(params, "CreationTimeAfter"),
            creation_time_before=_time(params, "CreationTimeBefore"),
            sort_by=_string(params, "SortBy", required=False) or "CreationTime",
            sort_order=_string(params, "SortOrder", required=False) or "Descending",
            max_results=_int(params, "MaxResults", 10),
            next_token=_string(params, "NextToken", required=False),
        )
        answer: dict[str, Any] = {"Models": [model.summary() for model in models]}
        if token:
            answer["NextToken"] = token
        return answer

    def delete_model(self, params: dict[str, Any]) -> dict[str, Any]:
        from batchlane.models import ModelRegistry

        _unknown_fields(params, {"ModelName"}, "DeleteModel")
        ModelRegistry(self.store).delete(_string(params, "ModelName"))  # type: ignore[arg-type]
        return {}

    # -- transform jobs ----------------------------------------------------------------------------------------
    def create_transform_job(self, params: dict[str, Any]) -> dict[str, Any]:
        from batchlane.engines import get_engine

        self.paths.check_transform_request(params)
        record = get_engine("local", self.store).submit(params)
        self.on_job_ready(record.name)
        return {"TransformJobArn": record.arn}

    def describe_transform_job(self, params: dict[str, Any]) -> dict[str, Any]:
        _unknown_fields(params, {"TransformJobName"}, "DescribeTransformJob")
        return describe_job(self.store.get_job(_string(params, "TransformJobName")))  # type: ignore[arg-type]

    def list_transform_jobs(self, params: dict[str, Any]) -> dict[str, Any]:
        _unknown_fields(params, _LIST_JOB_FIELDS, "ListTransformJobs")
        records, token = self.store.list_jobs(
            status_equals=_string(params, "StatusEquals", required=False),
            name_contains=_string(params, "NameContains", required=False),
            creation_time_after=_time(params, "CreationTimeAfter"),
            creation_time_before=_time(params, "CreationTimeBefore"),
            last_modified_time_after=_time(params, "LastModifiedTimeAfter"),
            last_modified_time_before=_time(params, "LastModifiedTimeBefore"),
            sort_by=_string(params, "SortBy", required=False) or "CreationTime",
            sort_order=_string(params, "SortOrder", required=False) or "Descending",
            max_results=_int(params, "MaxResults", 10),
            next_token=_string(params, "NextToken", required=False),
        )
        answer: dict[str, Any] = {"TransformJobSummaries": [summarize_job(record) for record in records]}
        if token:
            answer["NextToken"] = token
        return answer

    def stop_transform_job(self, params: dict[str, Any]) -> dict[str, Any]:
        _unknown_fields(params, {"TransformJobName"}, "StopTransformJob")
        name = check_job_name(_string(params, "TransformJobName"))  # type: ignore[arg-type]
        from batchlane.engines import get_engine

        record = get_engine("local", self.store).stop(name, finish_here=False)
        if record.status is JobStatus.STOPPING:
            self.on_job_ready(
                record.name
            )  # a queued job is finished (Stopped) at once by the worker that takes it
        return {}
