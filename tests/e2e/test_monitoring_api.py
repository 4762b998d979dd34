"""boto3's SageMaker client against a real `batchlane server` process: Create/Describe/List/Stop/Start/Delete
MonitoringSchedule and ListMonitoringExecutions, with the server's own scheduler firing a seconds-level schedule.

The fired schedule names a monitoring image that is not batchlane's (the seed's own container), so each execution is
recorded Failed with the reason that a container runtime is needed: the outcome does not depend on the drift check.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.servers import aws_cli_env, aws_client, clean_env, control_plane_server

KEY, SECRET = "AKIDMONITOR", "monitor-secret"
SEED_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/nlp-data-drift-bert:latest"
pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("monitoring-server")
    with control_plane_server(root, "--workers", "1", key=KEY, secret=SECRET, env=clean_env()) as url:
        yield url


def definition(tmp_path: Path, image: str, **extra) -> dict:
    """A job definition as the SageMaker SDK's ModelMonitor.create_monitoring_schedule sends it."""
    return {
        "BaselineConfig": {"ConstraintsResource": {"S3Uri": f"{tmp_path}/baseline/constraints.json"}},
        "MonitoringInputs": [
            {
                "BatchTransformInput": {
                    "DataCapturedDestinationS3Uri": f"{tmp_path}/captured",
                    "DatasetFormat": {"Json": {"Line": True}},
                    "LocalPath": "/opt/ml/processing/input",
                }
            }
        ],
        "MonitoringOutputConfig": {
            "MonitoringOutputs": [
                {"S3Output": {"S3Uri": f"{tmp_path}/reports", "LocalPath": "/opt/ml/processing/output"}}
            ]
        },
        "MonitoringResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 20}
        },
        "MonitoringAppSpecification": {"ImageUri": image},
        "StoppingCondition": {"MaxRuntimeInSeconds": 1800},
        "Environment": {"THRESHOLD": "0.5"},
        "RoleArn": "arn:aws:iam::000000000000:role/monitor",
        **extra,
    }


def test_boto3_creates_describes_lists_and_runs_schedules(server: str, tmp_path: Path) -> None:
    sm = aws_client("sagemaker", server, KEY, SECRET)
    config = {
        "ScheduleConfig": {"ScheduleExpression": "cron(0 * ? * * *)"},
        "MonitoringJobDefinition": definition(tmp_path, "batchlane:latest"),
    }
    arn = sm.create_monitoring_schedule(MonitoringScheduleName="nlp-drift", MonitoringScheduleConfig=config)[
        "MonitoringScheduleArn"
    ]
    assert arn == "arn:aws:sagemaker:us-east-1:000000000000:monitoring-schedule/nlp-drift"
    described = sm.describe_monitoring_schedule(MonitoringScheduleName="nlp-drift")
    assert described["MonitoringScheduleStatus"] == "Scheduled"
    assert described["MonitoringScheduleConfig"] == config
    assert isinstance(described["CreationTime"], datetime)
    assert "LastMonitoringExecutionSummary" not in described

    sm.create_monitoring_schedule(
        MonitoringScheduleName="seed-container",
        MonitoringScheduleConfig={
            "ScheduleConfig": {"ScheduleExpression": "rate(1 second)"},
            "MonitoringJobDefinition": definition(tmp_path, SEED_IMAGE),
        },
    )
    names = [
        s["MonitoringScheduleName"] for s in sm.list_monitoring_schedules()["MonitoringScheduleSummaries"]
    ]
    assert {"nlp-drift", "seed-container"} <= set(names)
    [only] = sm.list_monitoring_schedules(NameContains="seed")["MonitoringScheduleSummaries"]
    assert only["MonitoringScheduleStatus"] == "Scheduled"

    deadline = time.monotonic() + 60
    executions: list[dict] = []
    while time.monotonic() < deadline and len(executions) < 2:
        executions = sm.list_monitoring_executions(
            MonitoringScheduleName="seed-container", StatusEquals="Failed"
        )["MonitoringExecutionSummaries"]
        time.sleep(0.3)
    assert len(executions) >= 2, executions
    for execution in executions:
        assert SEED_IMAGE in execution["FailureReason"] and "container runtime" in execution["FailureReason"]
        assert execution["ProcessingJobArn"].startswith(
            "arn:aws:sagemaker:us-east-1:000000000000:processing-job/"
        )
        assert isinstance(execution["ScheduledTime"], datetime)
    # What the SDK's ModelMonitor.list_executions() reads for each execution.
    job = sm.describe_processing_job(ProcessingJobName=executions[0]["ProcessingJobArn"].split("/")[-1])
    assert job["ProcessingJobStatus"] == "Failed" and "container runtime" in job["FailureReason"]
    assert job["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"] == f"{tmp_path}/reports"
    assert job["ProcessingInputs"][0]["S3Input"]["S3Uri"] == f"{tmp_path}/captured"
    assert job["AppSpecification"]["ImageUri"] == SEED_IMAGE
    last = sm.describe_monitoring_schedule(MonitoringScheduleName="seed-container")[
        "LastMonitoringExecutionSummary"
    ]
    assert last["MonitoringExecutionStatus"] == "Failed"

    sm.stop_monitoring_schedule(MonitoringScheduleName="seed-container")
    stopped = sm.describe_monitoring_schedule(MonitoringScheduleName="seed-container")
    assert stopped["MonitoringScheduleStatus"] == "Stopped"
    count = len(
        sm.list_monitoring_executions(MonitoringScheduleName="seed-container")["MonitoringExecutionSummaries"]
    )
    time.sleep(2.5)
    after = sm.list_monitoring_executions(MonitoringScheduleName="seed-container")[
        "MonitoringExecutionSummaries"
    ]
    assert len(after) == count  # a stopped schedule fires no more
    sm.start_monitoring_schedule(MonitoringScheduleName="seed-container")
    assert sm.describe_monitoring_schedule(MonitoringScheduleName="seed-container")[
        "MonitoringScheduleStatus"
    ] == ("Scheduled")

    for name in ("nlp-drift", "seed-container"):
        sm.delete_monitoring_schedule(MonitoringScheduleName=name)
    with pytest.raises(ClientError) as info:
        sm.describe_monitoring_schedule(MonitoringScheduleName="nlp-drift")
    assert info.value.response["Error"]["Code"] == "ResourceNotFound"


def test_create_errors_name_the_field(server: str, tmp_path: Path) -> None:
    sm = aws_client("sagemaker", server, KEY, SECRET)
    no_data = definition(
        tmp_path, "batchlane", MonitoringInputs=[{"EndpointInput": {"EndpointName": "ep", "LocalPath": "/x"}}]
    )
    with pytest.raises(ClientError) as info:
        sm.create_monitoring_schedule(
            MonitoringScheduleName="no-data",
            MonitoringScheduleConfig={
                "ScheduleConfig": {"ScheduleExpression": "NOW"},
                "MonitoringJobDefinition": no_data,
            },
        )
    assert info.value.response["Error"]["Code"] == "ValidationException"
    assert "MonitoringInputs: no data to check" in info.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as info:
        sm.create_monitoring_schedule(
            MonitoringScheduleName="bad-cron",
            MonitoringScheduleConfig={
                "ScheduleConfig": {"ScheduleExpression": "cron(0 * * *)"},
                "MonitoringJobDefinition": definition(tmp_path, "batchlane"),
            },
        )
    assert "cron(...) takes 6 fields" in info.value.response["Error"]["Message"]
    config = {
        "ScheduleConfig": {"ScheduleExpression": "NOW"},
        "MonitoringJobDefinition": definition(tmp_path, SEED_IMAGE),
    }
    sm.create_monitoring_schedule(MonitoringScheduleName="twice", MonitoringScheduleConfig=config)
    with pytest.raises(ClientError) as info:
        sm.create_monitoring_schedule(MonitoringScheduleName="twice", MonitoringScheduleConfig=config)
    assert info.value.response["Error"]["Code"] == "ResourceInUse"
    assert (
        sm.list_monitoring_executions(MonitoringScheduleName="never-made")["MonitoringExecutionSummaries"]
        == []
    )


SDK_SCRIPT = """
import os, sys, time
import boto3, sagemaker
from sagemaker.model_monitor import CronExpressionGenerator, ModelMonitor, MonitoringOutput

os.environ["AWS_ENDPOINT_URL_SAGEMAKER"] = sys.argv[1]
session = sagemaker.Session(boto_session=boto3.Session(region_name="us-east-1"))
# The seed's calls, with its own drift container's image.
monitor = ModelMonitor(
    role="arn:aws:iam::000000000000:role/monitor", image_uri=sys.argv[2], instance_count=1,
    instance_type="ml.m5.xlarge", env={"THRESHOLD": "0.5"}, sagemaker_session=session,
)
monitor.create_monitoring_schedule(
    endpoint_input="nlp-endpoint",
    output=MonitoringOutput(source="/opt/ml/processing/output", destination="s3://reports-bucket/drift"),
    schedule_cron_expression=CronExpressionGenerator.hourly(),
    monitor_schedule_name="sdk-drift",
)
print(monitor.describe_schedule()["MonitoringScheduleStatus"])
print(monitor.list_executions())
monitor.stop_monitoring_schedule()
print(monitor.describe_schedule()["MonitoringScheduleStatus"])
monitor.delete_monitoring_schedule()
"""


def test_the_sdk_model_monitor_works_unchanged(server: str, tmp_path: Path) -> None:
    env = {**aws_cli_env(tmp_path, KEY, SECRET), "HOME": str(tmp_path), "SAGEMAKER_SUPPRESS_V2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-c", SDK_SCRIPT, server, SEED_IMAGE],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    printed = [line for line in done.stdout.splitlines() if not line.startswith("sagemaker.config INFO")]
    assert printed == ["Scheduled", "[]", "Stopped"]
    sm = aws_client("sagemaker", server, KEY, SECRET)
    with pytest.raises(ClientError):
        sm.describe_monitoring_schedule(MonitoringScheduleName="sdk-drift")
