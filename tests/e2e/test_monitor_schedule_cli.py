"""`batchlane monitor schedule|schedules|executions|stop|start|delete` and a real `batchlane worker --metrics-port`
process that fires a seconds-level schedule (rate(1 second)) more than once, and a NOW schedule whose drift score
its `/metrics` then reports.

The worker runs the real `batchlane monitor run`. The seconds-level schedule's baseline folder does not exist, so
each of its runs ends Failed with the command's own error line, fast; the NOW schedule checks texts against a real
baseline of the tiny BERT classifier (tests/monitor/tiny_baseline.py) and completes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batchlane.cli.main import main
from batchlane.monitor.schedules import ScheduleStore
from batchlane.testing import free_port, stop_process, wait_for_http
from tests.e2e.metrics_support import scrape, value
from tests.monitor.tiny_baseline import TEXTS, THRESHOLD, build_tiny_baseline
from tests.servers import clean_env

pytestmark = [pytest.mark.slow]


def cli(*args: str) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "batchlane", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    return done.returncode, done.stdout, done.stderr


def test_schedule_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "jobs.db")
    base = ["--db", db]

    def run(*args: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as info:
            main(list(args))
        out = capsys.readouterr()
        return int(info.value.code or 0), out.out, out.err

    code, out, err = run(
        "monitor", "schedule", "hourly", "--cron", "cron(0 * ? * * *)", "--baseline", "base",
        "--data", "captured/", "--data", "s3://bucket/more/", "--output", "reports",
        "--webhook", "http://127.0.0.1:9/hook", *base,
    )  # fmt: skip
    assert code == 0, err
    assert out.startswith("hourly: Scheduled (cron(0 * ? * * *)); next run ")
    code, out, _ = run("monitor", "schedules", "--json", *base)
    [row] = [json.loads(line) for line in out.splitlines()]
    assert row["status"] == "Scheduled" and row["webhook"] == "http://127.0.0.1:9/hook"
    assert row["data"] == [str(Path("captured").absolute()), "s3://bucket/more/"]  # local paths made absolute
    assert run("monitor", "stop", "hourly", *base)[1] == "hourly: Stopped\n"
    assert run("monitor", "start", "hourly", *base)[1] == "hourly: Scheduled\n"
    assert run("monitor", "executions", "hourly", *base)[:2] == (0, "")

    code, _, err = run("monitor", "schedule", "hourly", "--cron", "NOW", "--baseline", "b", "--data", "d",
                       "--output", "o", *base)  # fmt: skip
    assert code == 1 and "already exists" in err
    code, _, err = run("monitor", "schedule", "x", "--cron", "cron(0 * * *)", "--baseline", "b", "--data", "d",
                       "--output", "o", *base)  # fmt: skip
    assert code == 2 and err.startswith("error: ScheduleExpression 'cron(0 * * *)': cron(...) takes 6 fields")
    code, _, err = run("monitor", "schedule", "x", "--cron", "NOW", "--baseline", "b", "--data", "d",
                       "--output", "o", "--sns-topic", "my-topic", *base)  # fmt: skip
    assert code == 2 and "--sns-topic 'my-topic' is not an SNS topic ARN" in err

    assert run("monitor", "delete", "hourly", *base)[1] == "hourly: deleted\n"
    code, _, err = run("monitor", "executions", "hourly", *base)
    assert code == 1 and err.strip() == (
        "error: Monitoring Schedule 'arn:aws:sagemaker:us-east-1:000000000000:monitoring-schedule/hourly' "
        "does not exist."
    )


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("schedule", "schedules", "executions", "stop", "start", "delete"):
        with pytest.raises(SystemExit) as info:
            main(["monitor", command, "--help"])
        assert info.value.code == 0 and "Usage: batchlane monitor" in capsys.readouterr().out, command


def test_a_worker_fires_a_seconds_level_schedule_repeatedly_and_reports_drift_scores(
    tmp_path: Path, tiny_bert_dir: Path
) -> None:
    db = str(tmp_path / "jobs.db")
    data = tmp_path / "captured.jsonl"
    data.write_text("".join(json.dumps({"text": text}) + "\n" for text in TEXTS[:12]))
    missing = tmp_path / "no-baseline"
    code, _, err = cli(
        "monitor", "schedule", "every-second", "--cron", "rate(1 second)", "--baseline", str(missing),
        "--data", str(data), "--output", str(tmp_path / "reports"), "--db", db,
    )  # fmt: skip
    assert code == 0, err
    baseline = build_tiny_baseline(tiny_bert_dir, tmp_path)
    code, _, err = cli(
        "monitor", "schedule", "nightly", "--cron", "NOW", "--baseline", str(baseline), "--data", str(data),
        "--output", str(tmp_path / "reports"), "--threshold", str(THRESHOLD), "--db", db,
    )  # fmt: skip
    assert code == 0, err
    port = free_port()
    log = open(tmp_path / "worker.log", "w")  # noqa: SIM115 - closed below
    worker = subprocess.Popen(
        [sys.executable, "-m", "batchlane", "worker", "--db", db, "--queue",
         f"sqlite:///{tmp_path}/queue.db?queue=jobs", "--wait", "1", "--metrics-port", str(port)],
        env=clean_env(BATCHLANE_HOME=str(tmp_path / "home")), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for_http(f"http://127.0.0.1:{port}/metrics", timeout=60)
        deadline = time.monotonic() + 120
        store = ScheduleStore(db)
        while time.monotonic() < deadline:
            done = [e for e in store.executions("every-second")[0] if e.exit_code is not None]
            nightly = store.executions("nightly")[0]
            if len(done) >= 2 and nightly and nightly[0].end_time is not None:
                break
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            time.sleep(0.2)
        store.close()
        samples = scrape(f"http://127.0.0.1:{port}/metrics")
    finally:
        stop_process(worker)
        log.close()
    code, out, err = cli("monitor", "executions", "every-second", "--json", "--db", db)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    # Runs that ended by themselves; one still running when the worker stopped is Failed "the scheduler stopped".
    done = [row for row in rows if row["exit_code"] is not None]
    assert len(done) >= 2, rows
    assert all(row["status"] == "Failed" for row in rows), rows
    scheduled = sorted(row["scheduled"] for row in done)
    assert len(set(scheduled)) == len(scheduled)  # each firing once
    for row in done:
        assert row["failure_reason"] and row["failure_reason"].startswith("error: "), row
        assert row["started"] and row["ended"]
        assert row["output"].startswith(str(tmp_path / "reports" / "every-second"))
    assert ("batchlane_monitor_drift_score", (("schedule", "every-second"),)) not in samples  # failed runs

    code, out, err = cli("monitor", "executions", "nightly", "--json", "--db", db)
    [nightly] = [json.loads(line) for line in out.splitlines()]
    assert nightly["status"] == "Completed" and nightly["exit_code"] == 0, nightly
    summary = json.loads(Path(nightly["summary"]).read_text())
    assert summary["records"] == 12 and summary["monitoring_schedule_name"] == "nightly"
    # The worker's /metrics: batchlane_monitor_drift_score{schedule="nightly"} is the run's squared MMD.
    assert (
        value(samples, "batchlane_monitor_drift_score", schedule="nightly") == summary["population"]["mmd2"]
    )
    assert worker.returncode == 0, (tmp_path / "worker.log").read_text()
