"""One monitoring execution: run ``batchlane monitor run`` for a schedule's target as a subprocess, record the
outcome, and alert on violations (docs/monitoring-schedules.md, "Executions").

The drift check meets the scheduler only at its command line::

    python -m batchlane monitor run --baseline B --data D [--data D2 ...] --output OUT [--threshold T]
        --schedule-name NAME [--endpoint-name ENDPOINT]

exit 0 → ``Completed``, exit 4 (drift) → ``CompletedWithViolations`` (then the alerts), anything else →
``Failed`` with the command's last stderr line as the reason. Reports go to
``<output>/<schedule>/<yyyy>/<mm>/<dd>/<hh>/<MMSS>/`` (SageMaker's hourly layout, plus the minute and second so
that schedules firing more than once an hour keep each report).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from batchlane.monitor.alerts import send_alerts
from batchlane.monitor.schedule_records import Execution, ExecutionStatus, Schedule, Target
from batchlane.monitor.schedules import ScheduleStore

log = logging.getLogger(__name__)

EXIT_NO_DRIFT = 0
EXIT_DRIFT = 4
VIOLATIONS_FILE = "constraint_violations.json"
SUMMARY_FILE = "summary.json"
RUN_COMMAND: tuple[str, ...] = (sys.executable, "-m", "batchlane", "monitor", "run")
CONTAINER_NEEDED = (
    "ImageUri {image!r} is not a batchlane image: running another monitoring container needs a container runtime, "
    "which this batchlane does not have (use an image named batchlane, e.g. 'batchlane:latest', to run "
    "batchlane's own drift check)"
)


def is_batchlane_image(image: str) -> bool:
    """Whether ``image`` means batchlane's own drift check: empty (a CLI schedule), or an image whose repository
    name (last path segment, without tag or digest) is ``batchlane`` or starts with ``batchlane-``/``batchlane_``,
    e.g. ``batchlane``, ``batchlane-monitor:1.2``, ``123456789012.dkr.ecr.us-east-1.amazonaws.com/batchlane:latest``."""
    if not image:
        return True
    repository = image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0].lower()
    return repository == "batchlane" or repository.startswith(("batchlane-", "batchlane_"))


def report_prefix(target: Target, schedule: str, execution: Execution) -> str:
    when = execution.scheduled_time
    return f"{target.output.rstrip('/')}/{schedule}/{when:%Y/%m/%d/%H/%M%S}"


def command_for(
    target: Target,
    output: str,
    base: Sequence[str] = RUN_COMMAND,
    *,
    schedule: str | None = None,
    endpoint: str | None = None,
) -> list[str]:
    """The ``monitor run`` command line for ``target`` writing to ``output``; ``schedule`` and ``endpoint`` are
    written into the report."""
    # `monitor run` takes the baseline as a folder: a file:// URI becomes its path.
    baseline = target.baseline
    if baseline.lower().startswith("file://"):
        from urllib.parse import unquote, urlsplit

        baseline = unquote(urlsplit(baseline).path)
    command = [*base, "--baseline", baseline]
    for uri in target.data:
        command += ["--data", uri]
    command += ["--output", output]
    if target.threshold is not None:
        command += ["--threshold", repr(target.threshold)]
    if schedule:
        command += ["--schedule-name", schedule]
    if endpoint:
        command += ["--endpoint-name", endpoint]
    return command


def run_execution(
    store: ScheduleStore,
    schedule: Schedule,
    execution: Execution,
    *,
    command: Sequence[str] = RUN_COMMAND,
    env: Mapping[str, str] | None = None,
    stop: threading.Event | None = None,
) -> Execution:
    """Run ``execution`` (already claimed, ``Pending``) to its end and return its final record."""
    target = schedule.target
    if not is_batchlane_image(target.image):
        store.update_execution(
            execution.name, ExecutionStatus.FAILED, failure_reason=CONTAINER_NEEDED.format(image=target.image)
        )
        return store.execution(execution.name)
    output = report_prefix(target, schedule.name, execution)
    store.update_execution(execution.name, ExecutionStatus.IN_PROGRESS, output_uri=output)
    argv = command_for(target, output, command, schedule=schedule.name, endpoint=schedule.endpoint)
    log.info("monitoring schedule %s: execution %s runs %s", schedule.name, execution.name, " ".join(argv))
    try:
        code, stderr_tail = _run(
            argv, {**(os.environ if env is None else env), **target.environment}, target.max_runtime_s, stop
        )
    except OSError as exc:
        store.update_execution(
            execution.name, ExecutionStatus.FAILED, failure_reason=f"cannot start {argv[0]}: {exc}"
        )
        return store.execution(execution.name)
    uris = {"violations_uri": f"{output}/{VIOLATIONS_FILE}", "summary_uri": f"{output}/{SUMMARY_FILE}"}
    if code in (EXIT_NO_DRIFT, EXIT_DRIFT):
        _publish_drift_score(schedule.name, uris["summary_uri"])
    if code == EXIT_NO_DRIFT:
        store.update_execution(execution.name, ExecutionStatus.COMPLETED, exit_code=code, **uris)
    elif code == EXIT_DRIFT:
        store.update_execution(
            execution.name, ExecutionStatus.COMPLETED_WITH_VIOLATIONS, exit_code=code, **uris
        )
        done = store.execution(execution.name)
        alert = send_alerts(alert_payload(schedule, done), webhook=target.webhook, sns_topic=target.sns_topic)
        if alert:
            store.update_execution(execution.name, ExecutionStatus.COMPLETED_WITH_VIOLATIONS, alert=alert)
    elif code is None:  # ended by us: stopped or out of time
        store.update_execution(execution.name, ExecutionStatus.FAILED, failure_reason=stderr_tail)
    else:
        reason = stderr_tail or f"batchlane monitor run exited with status {code}"
        store.update_execution(execution.name, ExecutionStatus.FAILED, exit_code=code, failure_reason=reason)
    return store.execution(execution.name)


def _run(
    argv: list[str], env: Mapping[str, str], timeout_s: float, stop: threading.Event | None
) -> tuple[int | None, str]:
    """Run ``argv``; its exit code and last stderr line. A timeout or ``stop`` ends it: code None and why."""
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            argv, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
        )
        deadline = time.monotonic() + timeout_s
        why = ""
        while process.poll() is None:
            if stop is not None and stop.is_set():
                why = "the scheduler stopped while this execution ran"
            elif time.monotonic() > deadline:
                why = f"the execution ran longer than MaxRuntimeInSeconds ({timeout_s:g} s)"
            if why:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                return None, why
            time.sleep(0.1)
        err.seek(0)
        lines = [line.strip() for line in err.read().decode("utf-8", "replace").splitlines() if line.strip()]
    return process.returncode, lines[-1] if lines else ""


def _publish_drift_score(schedule: str, summary_uri: str) -> None:
    """``batchlane_monitor_drift_score{schedule}`` (docs/metrics.md): the run's squared MMD to the baseline."""
    summary = _read_json(summary_uri)
    score = ((summary or {}).get("population") or {}).get("mmd2")
    if isinstance(score, int | float):
        from batchlane import metrics

        metrics.set_drift_score(schedule, float(score))


def _read_json(uri: str | None) -> Any:
    if not uri:
        return None
    from batchlane.storage.base import open_store

    try:
        store, key = open_store(uri)
        return json.loads(store.read_bytes(key))
    except Exception as exc:  # a missing or unreadable report must not lose the alert itself
        log.warning("cannot read the report %s: %s", uri, exc)
        return None


def alert_payload(schedule: Schedule, execution: Execution) -> dict[str, Any]:
    """What an alert carries: the schedule, the execution, the report URIs, and the reports themselves
    (``constraint_violations.json`` as ``report`` and its ``violations`` list, ``summary.json`` as ``summary``)."""
    report = _read_json(execution.violations_uri)
    return {
        "schedule": schedule.name,
        "scheduleArn": schedule.arn,
        "execution": execution.name,
        "executionArn": execution.arn,
        "status": execution.status.value,
        "scheduledTime": execution.scheduled_time.isoformat(),
        "outputUri": execution.output_uri,
        "violationsUri": execution.violations_uri,
        "summaryUri": execution.summary_uri,
        "violations": report.get("violations") if isinstance(report, dict) else None,
        "report": report,
        "summary": _read_json(execution.summary_uri),
    }
