"""The SageMaker *MonitoringSchedule* actions of the control plane (AWS JSON 1.1, ``X-Amz-Target: SageMaker.<A>``).

``CreateMonitoringSchedule``, ``DescribeMonitoringSchedule``, ``ListMonitoringSchedules``,
``ListMonitoringExecutions``, ``StopMonitoringSchedule``, ``StartMonitoringSchedule`` and
``DeleteMonitoringSchedule`` (not ``UpdateMonitoringSchedule``: delete and create again), and
``DescribeProcessingJob`` for the executions' processing jobs (what the SDK's ``ModelMonitor.list_executions()``
reads to find each execution's reports). Schedules live in the job store's file (``monitor.schedules``) and fire
in the server's scheduler thread (and in any ``batchlane worker`` on the same file). How a job definition maps onto
``batchlane monitor run`` is ``monitor.job_definition``'s (docs/monitoring-schedules.md, "The control plane").

Errors: an unknown schedule → ``ResourceNotFound``; a name in use → ``ResourceInUse``; bad fields →
``ValidationException`` naming the field.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from batchlane.api.paths import LocalPathPolicy
from batchlane.api.protocol import AwsError, parse_timestamp
from batchlane.errors import AlreadyExists, BatchlaneError, Conflict, NotFound, ValidationError
from batchlane.monitor.schedule_records import Execution, ExecutionStatus, Schedule, ScheduleStatus
from batchlane.monitor.schedules import ScheduleStore

log = logging.getLogger(__name__)

MONITORING_TYPE = "DataQuality"
_LIST_SCHEDULE_FIELDS = {
    "EndpointName", "SortBy", "SortOrder", "NextToken", "MaxResults", "NameContains", "CreationTimeBefore",
    "CreationTimeAfter", "LastModifiedTimeBefore", "LastModifiedTimeAfter", "StatusEquals",
    "MonitoringJobDefinitionName", "MonitoringTypeEquals",
}  # fmt: skip
_LIST_EXECUTION_FIELDS = {
    "MonitoringScheduleName", "EndpointName", "SortBy", "SortOrder", "NextToken", "MaxResults",
    "ScheduledTimeBefore", "ScheduledTimeAfter", "CreationTimeBefore", "CreationTimeAfter",
    "LastModifiedTimeBefore", "LastModifiedTimeAfter", "StatusEquals", "MonitoringJobDefinitionName",
    "MonitoringTypeEquals",
}  # fmt: skip


def _only(params: Mapping[str, Any], allowed: set[str], action: str) -> None:
    extra = sorted(set(params) - allowed)
    if extra:
        raise ValidationError(f"{action} does not accept the field {extra[0]!r}", field=extra[0])


def _name(params: Mapping[str, Any]) -> str:
    value = params.get("MonitoringScheduleName")
    if not isinstance(value, str) or not value:
        raise ValidationError(
            f"1 validation error detected: Value {value!r} at 'MonitoringScheduleName' failed to satisfy "
            "constraint: Member must be a non-empty string",
            field="MonitoringScheduleName",
        )
    return value


def _time(params: Mapping[str, Any], field: str) -> Any:
    return None if params.get(field) is None else parse_timestamp(params[field], field)


def _int(params: Mapping[str, Any], field: str, default: int) -> int:
    value = params.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{field} must be an integer", field=field)
    return value


class MonitoringApi:
    """Dispatches the monitoring actions to a ``ScheduleStore``; ``env`` is the server's environment."""

    def __init__(
        self, store: ScheduleStore, env: Mapping[str, str], paths: LocalPathPolicy | None = None
    ) -> None:
        self.store = store
        self.env = env
        self.paths = paths or LocalPathPolicy()
        self.actions: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "CreateMonitoringSchedule": self.create,
            "DescribeMonitoringSchedule": self.describe,
            "ListMonitoringSchedules": self.list_schedules,
            "ListMonitoringExecutions": self.list_executions,
            "StopMonitoringSchedule": self.stop,
            "StartMonitoringSchedule": self.start,
            "DeleteMonitoringSchedule": self.delete,
            "DescribeProcessingJob": self.describe_processing_job,
        }

    def handle(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        """Run ``action`` (one of ``self.actions``); failures come out as ``AwsError`` in SageMaker's shape."""
        try:
            return self.actions[action](params)
        except AwsError:
            raise
        except NotFound as exc:
            raise AwsError("ResourceNotFound", exc.message) from None
        except (AlreadyExists, Conflict) as exc:
            raise AwsError("ResourceInUse", exc.message) from None
        except BatchlaneError as exc:
            if exc.status >= 500:
                log.exception("SageMaker.%s failed", action)
                raise AwsError(exc.code, exc.message, status=500, sender=False) from None
            raise AwsError("ValidationException", exc.message) from None

    def create(self, params: dict[str, Any]) -> dict[str, Any]:
        from batchlane.monitor.job_definition import target_from_config

        _only(
            params, {"MonitoringScheduleName", "MonitoringScheduleConfig", "Tags"}, "CreateMonitoringSchedule"
        )
        name = _name(params)
        config = params.get("MonitoringScheduleConfig")
        if not isinstance(config, dict):
            raise ValidationError("MonitoringScheduleConfig is required", field="MonitoringScheduleConfig")
        schedule_config = config.get("ScheduleConfig")
        if not isinstance(schedule_config, dict) or not schedule_config.get("ScheduleExpression"):
            raise ValidationError(
                "MonitoringScheduleConfig.ScheduleConfig.ScheduleExpression is required",
                field="ScheduleExpression",
            )
        target, endpoint = target_from_config(config, self.env)
        # The server reads the data and baseline and writes the reports: local paths obey --allow-path.
        self.paths.check_uri(target.baseline, "BaselineConfig")
        for uri in target.data:
            self.paths.check_uri(uri, "MonitoringInputs")
        self.paths.check_uri(target.output, "MonitoringOutputConfig")
        schedule = self.store.create(
            name, schedule_config["ScheduleExpression"], target, config=config, endpoint=endpoint
        )
        return {"MonitoringScheduleArn": schedule.arn}

    def describe(self, params: dict[str, Any]) -> dict[str, Any]:
        _only(params, {"MonitoringScheduleName"}, "DescribeMonitoringSchedule")
        schedule = self.store.get(_name(params))
        answer = {
            "MonitoringScheduleArn": schedule.arn,
            "MonitoringScheduleName": schedule.name,
            "MonitoringScheduleStatus": schedule.status.value,
            "MonitoringType": schedule.config.get("MonitoringType") or MONITORING_TYPE,
            "CreationTime": schedule.creation_time,
            "LastModifiedTime": schedule.last_modified_time,
            "MonitoringScheduleConfig": schedule.config,
        }
        if schedule.failure_reason:
            answer["FailureReason"] = schedule.failure_reason
        if schedule.endpoint:
            answer["EndpointName"] = schedule.endpoint
        last = self.store.last_execution(schedule.name)
        if last is not None:
            answer["LastMonitoringExecutionSummary"] = self._execution_summary(schedule, last)
        return answer

    def _schedule_summary(self, schedule: Schedule) -> dict[str, Any]:
        summary = {
            "MonitoringScheduleName": schedule.name,
            "MonitoringScheduleArn": schedule.arn,
            "CreationTime": schedule.creation_time,
            "LastModifiedTime": schedule.last_modified_time,
            "MonitoringScheduleStatus": schedule.status.value,
            "MonitoringType": schedule.config.get("MonitoringType") or MONITORING_TYPE,
        }
        if schedule.endpoint:
            summary["EndpointName"] = schedule.endpoint
        return summary

    def _execution_summary(self, schedule: Schedule | None, execution: Execution) -> dict[str, Any]:
        summary = {
            "MonitoringScheduleName": execution.schedule,
            "ScheduledTime": execution.scheduled_time,
            "CreationTime": execution.creation_time,
            "LastModifiedTime": execution.last_modified_time,
            "MonitoringExecutionStatus": execution.status.value,
            "ProcessingJobArn": execution.arn,
            "MonitoringType": MONITORING_TYPE,
        }
        if execution.failure_reason:
            summary["FailureReason"] = execution.failure_reason
        if schedule is not None and schedule.endpoint:
            summary["EndpointName"] = schedule.endpoint
        return summary

    def list_schedules(self, params: dict[str, Any]) -> dict[str, Any]:
        _only(params, _LIST_SCHEDULE_FIELDS, "ListMonitoringSchedules")
        status = params.get("StatusEquals")
        if status is not None and status not in {s.value for s in ScheduleStatus} | {"Pending"}:
            raise ValidationError(f"StatusEquals {status!r} is not a schedule status", field="StatusEquals")
        schedules, token = self.store.list(
            name_contains=params.get("NameContains"),
            status=status,
            endpoint=params.get("EndpointName"),
            creation_after=_time(params, "CreationTimeAfter"),
            creation_before=_time(params, "CreationTimeBefore"),
            modified_after=_time(params, "LastModifiedTimeAfter"),
            modified_before=_time(params, "LastModifiedTimeBefore"),
            sort_by=params.get("SortBy"),
            sort_order=params.get("SortOrder"),
            max_results=_int(params, "MaxResults", 10),
            next_token=params.get("NextToken"),
        )
        answer: dict[str, Any] = {
            "MonitoringScheduleSummaries": [self._schedule_summary(s) for s in schedules]
        }
        if token:
            answer["NextToken"] = token
        return answer

    def list_executions(self, params: dict[str, Any]) -> dict[str, Any]:
        _only(params, _LIST_EXECUTION_FIELDS, "ListMonitoringExecutions")
        name = params.get("MonitoringScheduleName")
        schedule = None
        if name is not None:
            try:
                schedule = self.store.get(_name(params))
            except NotFound:
                return {"MonitoringExecutionSummaries": []}  # what SageMaker answers for an unknown schedule
        executions, token = self.store.executions(
            None if schedule is None else schedule.name,
            status=params.get("StatusEquals"),
            scheduled_after=_time(params, "ScheduledTimeAfter"),
            scheduled_before=_time(params, "ScheduledTimeBefore"),
            creation_after=_time(params, "CreationTimeAfter"),
            creation_before=_time(params, "CreationTimeBefore"),
            sort_by=params.get("SortBy"),
            sort_order=params.get("SortOrder"),
            max_results=_int(params, "MaxResults", 10),
            next_token=params.get("NextToken"),
        )
        answer: dict[str, Any] = {
            "MonitoringExecutionSummaries": [self._execution_summary(schedule, e) for e in executions]
        }
        if token:
            answer["NextToken"] = token
        return answer

    def stop(self, params: dict[str, Any]) -> dict[str, Any]:
        _only(params, {"MonitoringScheduleName"}, "StopMonitoringSchedule")
        self.store.set_status(_name(params), ScheduleStatus.STOPPED)
        return {}

    def start(self, params: dict[str, Any]) -> dict[str, Any]:
        _only(params, {"MonitoringScheduleName"}, "StartMonitoringSchedule")
        self.store.set_status(_name(params), ScheduleStatus.SCHEDULED)
        return {}

    def delete(self, params: dict[str, Any]) -> dict[str, Any]:
        _only(params, {"MonitoringScheduleName"}, "DeleteMonitoringSchedule")
        self.store.delete(_name(params))
        return {}

    def describe_processing_job(self, params: dict[str, Any]) -> dict[str, Any]:
        """A monitoring execution as the processing job SageMaker would have run for it."""
        _only(params, {"ProcessingJobName"}, "DescribeProcessingJob")
        name = params.get("ProcessingJobName")
        if not isinstance(name, str) or not name:
            raise ValidationError("ProcessingJobName is required", field="ProcessingJobName")
        try:
            execution = self.store.execution(name)
        except NotFound:
            raise NotFound(
                f"Could not find processing job '{self.store.execution_arn(name)}' (batchlane runs processing jobs "
                "only for monitoring schedules).",
                field="ProcessingJobName",
            ) from None
        schedule = self.store.get(execution.schedule)
        target = schedule.target
        definition = schedule.config.get("MonitoringJobDefinition") or {}
        status = {
            ExecutionStatus.PENDING: "InProgress",
            ExecutionStatus.IN_PROGRESS: "InProgress",
            ExecutionStatus.COMPLETED: "Completed",
            ExecutionStatus.COMPLETED_WITH_VIOLATIONS: "Completed",
            ExecutionStatus.FAILED: "Failed",
        }[execution.status]
        answer: dict[str, Any] = {
            "ProcessingJobName": execution.name,
            "ProcessingJobArn": execution.arn,
            "ProcessingJobStatus": status,
            "ProcessingInputs": [
                {
                    "InputName": f"input_{i + 1}",
                    "S3Input": {
                        "S3Uri": uri,
                        "LocalPath": "/opt/ml/processing/input",
                        "S3DataType": "S3Prefix",
                        "S3InputMode": "File",
                        "S3DataDistributionType": "FullyReplicated",
                    },
                }
                for i, uri in enumerate(target.data)
            ],
            "ProcessingOutputConfig": {
                "Outputs": [
                    {
                        "OutputName": "result",
                        "S3Output": {
                            "S3Uri": execution.output_uri or target.output,
                            "LocalPath": "/opt/ml/processing/output",
                            "S3UploadMode": "EndOfJob",
                        },
                    }
                ]
            },
            "ProcessingResources": definition.get("MonitoringResources")
            or {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "local", "VolumeSizeInGB": 1}},
            "StoppingCondition": {"MaxRuntimeInSeconds": target.max_runtime_s},
            "AppSpecification": {"ImageUri": target.image or "batchlane:latest"},
            "Environment": target.environment,
            "RoleArn": definition.get("RoleArn") or f"arn:aws:iam::{self.store.account}:role/batchlane",
            "MonitoringScheduleArn": schedule.arn,
            "CreationTime": execution.creation_time,
            "LastModifiedTime": execution.last_modified_time,
        }
        if execution.start_time:
            answer["ProcessingStartTime"] = execution.start_time
        if execution.end_time:
            answer["ProcessingEndTime"] = execution.end_time
        if execution.status is ExecutionStatus.COMPLETED_WITH_VIOLATIONS:
            answer["ExitMessage"] = "CompletedWithViolations: the drift check found violations"
        if execution.failure_reason:
            answer["FailureReason"] = execution.failure_reason
            answer["ExitMessage"] = execution.failure_reason
        return answer
