"""SageMaker-shaped views of a job: ``describe_job`` (DescribeTransformJob) and ``summarize_job`` (ListTransformJobs).

Shapes follow docs/transform.md. Times are aware UTC datetimes, as boto3 returns them; the control plane turns them into
epoch seconds on the wire. Optional fields are left out when unset, never sent as null.

* ``describe_job``: the required fields (TransformJobName, TransformJobArn, TransformJobStatus, ModelName,
  TransformInput, TransformResources, CreationTime), FailureReason when set, TransformStartTime/TransformEndTime
  when known, and the request's own fields echoed (MaxConcurrentTransforms, ModelClientConfig, MaxPayloadInMB,
  BatchStrategy, Environment, TransformOutput, DataCaptureConfig, DataProcessing, ExperimentConfig). Like SageMaker
  it has no LastModifiedTime and does not echo Tags.
* Decision: batchlane's extras live under one extra key, ``"Batchlane"``: ``Progress`` (file, record and byte
  counters), ``Options`` (the job's batchlane options), ``Attempts`` (runner claims), ``Restarts`` (model-server
  restarts after a hung or dead server, docs/transform.md "Recovery") and ``LastModifiedTime``,
  plus ``Warnings`` (``{"Count": n, "First": message}``) when the job has any, e.g. a model that answered another
  number of results than the records it was sent (docs/transform.md).
  botocore ignores members its model does not know, so boto3 clients never see this key; the CLI and raw HTTP do.
* ``summarize_job``: TransformJobName, TransformJobArn, CreationTime, TransformJobStatus, plus LastModifiedTime,
  TransformEndTime and FailureReason when set.
"""

from __future__ import annotations

from typing import Any

from batchlane.jobs.store import JobRecord

EXTRAS_KEY = "Batchlane"

# The request members DescribeTransformJob echoes back, in the response's documented order.
_ECHOED = (
    "MaxConcurrentTransforms",
    "ModelClientConfig",
    "MaxPayloadInMB",
    "BatchStrategy",
    "Environment",
    "TransformInput",
    "TransformOutput",
    "DataCaptureConfig",
    "TransformResources",
    "DataProcessing",
    "ExperimentConfig",
)


def progress(record: JobRecord) -> dict[str, int]:
    """The job's counters under SageMaker-style names."""
    return {
        "FilesTotal": record.files_total,
        "FilesDone": record.files_done,
        "FilesFailed": record.files_failed,
        "RecordsDone": record.records_done,
        "RecordsFailed": record.records_failed,
        "BytesTotal": record.bytes_total,
        "BytesDone": record.bytes_done,
    }


def describe_job(record: JobRecord) -> dict[str, Any]:
    """The DescribeTransformJob response for ``record`` (plus the ``Batchlane`` extras key)."""
    request = record.request
    answer: dict[str, Any] = {
        "TransformJobName": record.name,
        "TransformJobArn": record.arn,
        "TransformJobStatus": record.status.value,
    }
    if record.failure_reason:
        answer["FailureReason"] = record.failure_reason
    answer["ModelName"] = request.get("ModelName", "")
    for field in _ECHOED:
        if request.get(field) is not None:
            answer[field] = request[field]
    answer.setdefault("TransformInput", {})
    answer.setdefault("TransformResources", {})
    answer["CreationTime"] = record.creation_time
    if record.start_time is not None:
        answer["TransformStartTime"] = record.start_time
    if record.end_time is not None:
        answer["TransformEndTime"] = record.end_time
    answer[EXTRAS_KEY] = {
        "Progress": progress(record),
        "Options": record.options,
        "Attempts": record.attempts,
        "Restarts": record.restarts,
        "LastModifiedTime": record.last_modified_time,
    }
    if record.warnings:
        answer[EXTRAS_KEY]["Warnings"] = {"Count": record.warnings, "First": record.first_warning}
    return answer


def summarize_job(record: JobRecord) -> dict[str, Any]:
    """The TransformJobSummary for ``record``, as ListTransformJobs returns it."""
    summary: dict[str, Any] = {
        "TransformJobName": record.name,
        "TransformJobArn": record.arn,
        "CreationTime": record.creation_time,
    }
    if record.end_time is not None:
        summary["TransformEndTime"] = record.end_time
    summary["LastModifiedTime"] = record.last_modified_time
    summary["TransformJobStatus"] = record.status.value
    if record.failure_reason:
        summary["FailureReason"] = record.failure_reason
    return summary
