"""Monitoring schedules in a real SQLite job store, fired by the real scheduler (``Scheduler.tick``).

Executions run a real subprocess: ``tests/monitor/monitor_run_stub.py`` speaks ``batchlane monitor run``'s
documented contract (exit 0 / 4 / 1, the two report files), so these tests exercise the scheduler before the real
drift check is merged. ``test_the_real_monitor_run_names_a_missing_baseline`` uses the real command.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from batchlane.errors import AlreadyExists, NotFound, ValidationError
from batchlane.monitor.execution import alert_payload
from batchlane.monitor.schedule_records import ExecutionStatus, ScheduleStatus, Target
from batchlane.monitor.scheduler import Scheduler
from batchlane.monitor.schedules import ScheduleStore
from tests.monitor.webhook import webhook_server

STUB = (sys.executable, str(Path(__file__).resolve().parents[2] / "monitor" / "monitor_run_stub.py"))
T0 = datetime(2026, 12, 6, 21, 0, tzinfo=UTC)


@pytest.fixture()
def schedules(tmp_path: Path):
    store = ScheduleStore(tmp_path / "jobs.db")
    yield store
    store.close()


def target(tmp_path: Path, text: str, **extra) -> Target:
    baseline = tmp_path / "baseline"
    baseline.mkdir(exist_ok=True)
    data = tmp_path / "data.txt"
    data.write_text(text)
    return Target(baseline=str(baseline), data=(str(data),), output=str(tmp_path / "reports"), **extra)


def test_create_list_stop_start_delete(schedules: ScheduleStore, tmp_path: Path) -> None:
    made = schedules.create("hourly", "cron(0 * ? * * *)", target(tmp_path, "x\n"), now=T0)
    assert made.status is ScheduleStatus.SCHEDULED
    assert made.next_run_time == T0 + timedelta(hours=1)
    assert made.arn == "arn:aws:sagemaker:us-east-1:000000000000:monitoring-schedule/hourly"
    with pytest.raises(AlreadyExists):
        schedules.create("HOURLY", "NOW", target(tmp_path, "x\n"))
    with pytest.raises(ValidationError, match="MonitoringScheduleName"):
        schedules.create("bad_name", "NOW", target(tmp_path, "x\n"))
    assert [s.name for s in schedules.list()[0]] == ["hourly"]
    assert schedules.set_status("hourly", ScheduleStatus.STOPPED).status is ScheduleStatus.STOPPED
    assert schedules.due(T0 + timedelta(days=1)) == []
    restarted = schedules.set_status("hourly", ScheduleStatus.SCHEDULED, now=T0 + timedelta(minutes=150))
    assert restarted.next_run_time == T0 + timedelta(hours=3)  # from the restart, no backfill
    schedules.delete("hourly")
    with pytest.raises(NotFound, match="hourly"):
        schedules.get("hourly")


def test_a_firing_is_claimed_once_and_missed_firings_are_skipped(tmp_path: Path) -> None:
    first = ScheduleStore(tmp_path / "jobs.db")
    second = ScheduleStore(tmp_path / "jobs.db")  # a worker and a server on one file
    try:
        first.create("every-5m", "rate(5 minutes)", target(tmp_path, "x\n"), now=T0)
        late = T0 + timedelta(minutes=17)
        [due] = second.due(late)
        assert first.claim(due, now=late) is not None
        assert second.claim(due, now=late) is None
        assert first.get("every-5m").next_run_time == T0 + timedelta(minutes=20)
        [execution] = first.executions("every-5m")[0]
        assert execution.status is ExecutionStatus.PENDING
        assert execution.scheduled_time == T0 + timedelta(minutes=5)
    finally:
        first.close()
        second.close()


def test_no_drift_completes_and_sends_no_alert(schedules: ScheduleStore, tmp_path: Path) -> None:
    with webhook_server() as hook:
        schedules.create("calm", "NOW", target(tmp_path, "card charged twice\n", webhook=hook.url))
        [done] = Scheduler(schedules, command=STUB).tick(wait=True)
        assert done.status is ExecutionStatus.COMPLETED, done.failure_reason
        assert done.exit_code == 0 and done.alert is None
        assert json.loads(Path(done.violations_uri).read_text()) == {"violations": []}
        assert done.output_uri.startswith(
            str(tmp_path / "reports" / "calm" / f"{done.scheduled_time:%Y/%m/%d/%H}")
        )
        assert hook.bodies == []
    assert schedules.get("calm").next_run_time is None  # NOW runs once


def test_drift_is_recorded_and_the_webhook_gets_the_report(schedules: ScheduleStore, tmp_path: Path) -> None:
    with webhook_server() as hook:
        schedules.create(
            "drifty", "NOW", target(tmp_path, "fine\nDRIFT: thanks for driving me home\n", webhook=hook.url)
        )
        [done] = Scheduler(schedules, command=STUB).tick(wait=True)
        assert done.status is ExecutionStatus.COMPLETED_WITH_VIOLATIONS
        assert done.alert == "webhook: 200"
        [body] = hook.bodies
    assert body["schedule"] == "drifty" and body["execution"] == done.name
    assert body["status"] == "CompletedWithViolations"
    assert body["violationsUri"] == done.violations_uri
    assert [v["sentence"] for v in body["violations"]] == ["DRIFT: thanks for driving me home"]
    assert body["violations"][0]["constraint_check_type"] == "baseline_drift_check"
    assert body["violations"][0]["monitoring_schedule_name"] == "drifty"  # --schedule-name reached the check
    assert body["summary"] == {"records": 2, "drift": True}


def test_a_failing_webhook_is_recorded_without_failing_the_execution(
    schedules: ScheduleStore, tmp_path: Path
) -> None:
    with webhook_server() as hook:
        hook.status = 503
        schedules.create("loud", "NOW", target(tmp_path, "DRIFT\n", webhook=hook.url))
        [done] = Scheduler(schedules, command=STUB).tick(wait=True)
    assert done.status is ExecutionStatus.COMPLETED_WITH_VIOLATIONS
    assert done.alert == "webhook failed: HTTP 503"
    assert len(hook.bodies) == 3  # retried


def test_a_failed_check_records_the_commands_error(schedules: ScheduleStore, tmp_path: Path) -> None:
    spec = target(tmp_path, "x\n")
    schedules.create("broken", "NOW", Target(**{**spec.__dict__, "baseline": str(tmp_path / "missing")}))
    [done] = Scheduler(schedules, command=STUB).tick(wait=True)
    assert done.status is ExecutionStatus.FAILED and done.exit_code == 1
    assert done.failure_reason == f"error: --baseline {tmp_path / 'missing'}: no such folder"
    assert done.end_time is not None


def test_an_execution_past_its_max_runtime_fails(schedules: ScheduleStore, tmp_path: Path) -> None:
    schedules.create("slow", "NOW", target(tmp_path, "x\n", max_runtime_s=1))
    sleeper = (sys.executable, "-c", "import time; time.sleep(30)")
    [done] = Scheduler(schedules, command=sleeper).tick(wait=True)
    assert done.status is ExecutionStatus.FAILED
    assert "MaxRuntimeInSeconds (1 s)" in done.failure_reason


def test_another_image_needs_a_container_runtime(schedules: ScheduleStore, tmp_path: Path) -> None:
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/nlp-drift:latest"
    schedules.create("byoc", "NOW", target(tmp_path, "x\n", image=image))
    [done] = Scheduler(schedules, command=STUB).tick(wait=True)
    assert done.status is ExecutionStatus.FAILED
    assert image in done.failure_reason and "container runtime" in done.failure_reason


def test_sns_gets_the_report(schedules: ScheduleStore, tmp_path: Path, moto_server: str, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SNS", moto_server)
    sns = boto3.client("sns", endpoint_url=moto_server, region_name="us-east-1")
    sqs = boto3.client("sqs", endpoint_url=moto_server, region_name="us-east-1")
    topic = sns.create_topic(Name="drift-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="drift-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"}
    )
    schedules.create("sns", "NOW", target(tmp_path, "DRIFT here\n", sns_topic=topic))
    [done] = Scheduler(schedules, command=STUB).tick(wait=True)
    assert done.alert.startswith("sns: ")
    [message] = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=5)["Messages"]
    body = json.loads(message["Body"])
    assert body["execution"] == done.name
    assert body["violations"][0]["sentence"] == "DRIFT here"


def test_orphaned_executions_of_a_dead_scheduler_are_failed(schedules: ScheduleStore, tmp_path: Path) -> None:
    import subprocess

    schedules.create("orphan", "NOW", target(tmp_path, "x\n"))
    [due] = schedules.due()
    execution = schedules.claim(due)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    with schedules._write() as conn:  # as if a scheduler process that has since exited had claimed it
        conn.execute(
            "UPDATE monitoring_executions SET owner = ? WHERE name = ?",
            (f"{execution.owner.rsplit(':', 1)[0]}:{dead.stdout.strip()}", execution.name),
        )
    assert schedules.fail_orphans() == [execution.name]
    assert (
        schedules.execution(execution.name).failure_reason == "the scheduler running this execution stopped"
    )


def test_alert_payload_survives_a_missing_report(schedules: ScheduleStore, tmp_path: Path) -> None:
    schedules.create("gone", "NOW", target(tmp_path, "x\n"))
    execution = schedules.claim(schedules.due()[0])
    schedules.update_execution(
        execution.name, ExecutionStatus.COMPLETED_WITH_VIOLATIONS, violations_uri=str(tmp_path / "nope.json")
    )
    payload = alert_payload(schedules.get("gone"), schedules.execution(execution.name))
    assert payload["violations"] is None and payload["report"] is None


@pytest.mark.slow
def test_the_real_monitor_run_names_a_missing_baseline(schedules: ScheduleStore, tmp_path: Path) -> None:
    """Needs `batchlane monitor run` (issue 15's drift check): its one-line error becomes the failure reason."""
    spec = target(tmp_path, "card charged twice\n")
    missing = str(tmp_path / "no-baseline")
    schedules.create("real", "NOW", Target(**{**spec.__dict__, "baseline": missing}))
    [done] = Scheduler(schedules).tick(wait=True)
    assert done.status is ExecutionStatus.FAILED and done.exit_code not in (0, 4), done.failure_reason
    assert missing in done.failure_reason
