"""Monitoring schedules in a real SQLite job store, fired by the real scheduler (``Scheduler.tick``).

Executions run the real ``batchlane monitor run`` as a subprocess, against a baseline the real
``batchlane monitor baseline`` made from the tiny BERT classifier (``tiny_baseline``, once per module). Outcomes are
forced by an explicit threshold, not left to the tiny model's default one: with ``THRESHOLD`` the tiny model scores
``SHIFTED`` as a violation and no text of ``TEXTS`` (tests/monitor/tiny_baseline.py; test_run.py checks the margins).
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from prometheus_client import REGISTRY

from batchlane.errors import AlreadyExists, NotFound, ValidationError
from batchlane.monitor.execution import alert_payload
from batchlane.monitor.schedule_records import Execution, ExecutionStatus, ScheduleStatus, Target
from batchlane.monitor.scheduler import Scheduler
from batchlane.monitor.schedules import ScheduleStore
from tests.monitor.tiny_baseline import SHIFTED, TEXTS, THRESHOLD
from tests.monitor.webhook import webhook_server

T0 = datetime(2026, 12, 6, 21, 0, tzinfo=UTC)
CALM = TEXTS[:12]
DRIFTED = [TEXTS[0], SHIFTED]


@pytest.fixture()
def schedules(tmp_path: Path):
    store = ScheduleStore(tmp_path / "jobs.db")
    yield store
    store.close()


def target(tmp_path: Path, texts: list[str], baseline: Path | None = None, **extra) -> Target:
    """A target over ``texts`` (one a line); ``baseline`` defaults to a folder that is never read."""
    data = tmp_path / "data.txt"
    data.write_text("\n".join(texts) + "\n")
    return Target(
        baseline=str(baseline or tmp_path / "baseline"),
        data=(str(data),),
        output=str(tmp_path / "reports"),
        **extra,
    )


def fire(schedules: ScheduleStore) -> Execution:
    """Run the one due firing to its end with the real ``batchlane monitor run``."""
    [done] = Scheduler(schedules).tick(wait=True)
    return done


def drift_score(schedule: str) -> float | None:
    return REGISTRY.get_sample_value("batchlane_monitor_drift_score", {"schedule": schedule})


def test_create_list_stop_start_delete(schedules: ScheduleStore, tmp_path: Path) -> None:
    made = schedules.create("hourly", "cron(0 * ? * * *)", target(tmp_path, ["x"]), now=T0)
    assert made.status is ScheduleStatus.SCHEDULED
    assert made.next_run_time == T0 + timedelta(hours=1)
    assert made.arn == "arn:aws:sagemaker:us-east-1:000000000000:monitoring-schedule/hourly"
    with pytest.raises(AlreadyExists):
        schedules.create("HOURLY", "NOW", target(tmp_path, ["x"]))
    with pytest.raises(ValidationError, match="MonitoringScheduleName"):
        schedules.create("bad_name", "NOW", target(tmp_path, ["x"]))
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
        first.create("every-5m", "rate(5 minutes)", target(tmp_path, ["x"]), now=T0)
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


def test_no_drift_completes_and_sends_no_alert(
    schedules: ScheduleStore, tmp_path: Path, tiny_baseline: Path
) -> None:
    with webhook_server() as hook:
        schedules.create(
            "calm", "NOW", target(tmp_path, CALM, tiny_baseline, threshold=THRESHOLD, webhook=hook.url)
        )
        done = fire(schedules)
        assert done.status is ExecutionStatus.COMPLETED, done.failure_reason
        assert done.exit_code == 0 and done.alert is None
        assert json.loads(Path(done.violations_uri).read_text()) == {"violations": []}
        assert done.output_uri.startswith(
            str(tmp_path / "reports" / "calm" / f"{done.scheduled_time:%Y/%m/%d/%H}")
        )
        assert hook.bodies == []
    summary = json.loads(Path(done.summary_uri).read_text())
    assert summary["records"] == len(CALM) and summary["drift_detected"] is False
    assert (
        summary["sent_cosine_score"]["threshold"] == THRESHOLD
    )  # the schedule's threshold reached the check
    assert drift_score("calm") == summary["population"]["mmd2"]  # batchlane_monitor_drift_score{schedule}
    assert schedules.get("calm").next_run_time is None  # NOW runs once


def test_drift_is_recorded_and_the_webhook_gets_the_report(
    schedules: ScheduleStore, tmp_path: Path, tiny_baseline: Path
) -> None:
    with webhook_server() as hook:
        schedules.create(
            "drifty", "NOW", target(tmp_path, DRIFTED, tiny_baseline, threshold=THRESHOLD, webhook=hook.url)
        )
        done = fire(schedules)
        assert done.status is ExecutionStatus.COMPLETED_WITH_VIOLATIONS, done.failure_reason
        assert done.exit_code == 4 and done.alert == "webhook: 200"
        [body] = hook.bodies
    assert body["schedule"] == "drifty" and body["execution"] == done.name
    assert body["status"] == "CompletedWithViolations"
    assert body["violationsUri"] == done.violations_uri
    [violation] = body["violations"]
    assert violation["sentence"] == SHIFTED and violation["avg_cosine_score"] < THRESHOLD
    assert violation["constraint_check_type"] == "baseline_drift_check"
    assert violation["monitoring_schedule_name"] == "drifty"  # --schedule-name reached the check
    assert body["report"] == json.loads(Path(done.violations_uri).read_text())
    assert body["summary"] == json.loads(Path(done.summary_uri).read_text())
    assert body["summary"]["records"] == 2 and body["summary"]["drift_detected"] is True
    assert drift_score("drifty") == body["summary"]["population"]["mmd2"] > 0


def test_a_failing_webhook_is_recorded_and_sns_still_gets_the_report(
    schedules: ScheduleStore, tmp_path: Path, tiny_baseline: Path, moto_server: str, monkeypatch
) -> None:
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
    with webhook_server() as hook:
        hook.status = 503
        spec = target(
            tmp_path, DRIFTED, tiny_baseline, threshold=THRESHOLD, webhook=hook.url, sns_topic=topic
        )
        schedules.create("loud", "NOW", spec)
        done = fire(schedules)
    assert done.status is ExecutionStatus.COMPLETED_WITH_VIOLATIONS, done.failure_reason
    webhook, sns_result = done.alert.split("; ")
    assert webhook == "webhook failed: HTTP 503"
    assert len(hook.bodies) == 3  # retried
    assert sns_result.startswith("sns: ")
    [message] = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=5)["Messages"]
    body = json.loads(message["Body"])
    assert body["execution"] == done.name
    assert [v["sentence"] for v in body["violations"]] == [SHIFTED]


@pytest.mark.slow  # a real `batchlane monitor run` subprocess (under a second: it fails before loading torch)
def test_a_failed_check_records_the_commands_error(schedules: ScheduleStore, tmp_path: Path) -> None:
    missing = tmp_path / "no-baseline"
    schedules.create("broken", "NOW", target(tmp_path, CALM, missing))
    done = fire(schedules)
    assert done.status is ExecutionStatus.FAILED and done.exit_code == 1
    assert done.failure_reason == (
        f"error: --baseline {missing}: no embeddings.npy (make one with `batchlane monitor baseline`)"
    )
    assert done.end_time is not None
    assert drift_score("broken") is None  # a failed run sets no drift score


def test_an_execution_past_its_max_runtime_fails(
    schedules: ScheduleStore, tmp_path: Path, tiny_baseline: Path
) -> None:
    # 100,000 texts take the real check far longer than one second, whatever the machine.
    many = [TEXTS[i % len(TEXTS)] for i in range(100_000)]
    schedules.create("slow", "NOW", target(tmp_path, many, tiny_baseline, max_runtime_s=1))
    done = fire(schedules)
    assert done.status is ExecutionStatus.FAILED and done.exit_code is None
    assert "MaxRuntimeInSeconds (1 s)" in done.failure_reason
    assert not Path(done.output_uri, "summary.json").exists()


def test_another_image_needs_a_container_runtime(schedules: ScheduleStore, tmp_path: Path) -> None:
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/nlp-drift:latest"
    schedules.create("byoc", "NOW", target(tmp_path, ["x"], image=image))
    done = fire(schedules)
    assert done.status is ExecutionStatus.FAILED
    assert image in done.failure_reason and "container runtime" in done.failure_reason
    assert done.output_uri is None  # nothing ran


def test_orphaned_executions_of_a_dead_scheduler_are_failed(schedules: ScheduleStore, tmp_path: Path) -> None:
    schedules.create("orphan", "NOW", target(tmp_path, ["x"]))
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
    schedules.create("gone", "NOW", target(tmp_path, ["x"]))
    execution = schedules.claim(schedules.due()[0])
    schedules.update_execution(
        execution.name, ExecutionStatus.COMPLETED_WITH_VIOLATIONS, violations_uri=str(tmp_path / "nope.json")
    )
    payload = alert_payload(schedules.get("gone"), schedules.execution(execution.name))
    assert payload["violations"] is None and payload["report"] is None
