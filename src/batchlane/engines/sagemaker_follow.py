"""Watching a SageMaker transform job from here: its status (DescribeTransformJob, polled; each change printed once)
and its container logs (CloudWatch Logs group ``/aws/sagemaker/TransformJobs``, streams ``<job>/...``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TextIO

from batchlane.engines.sagemaker_aws import call
from batchlane.errors import NotFound

LOG_GROUP = "/aws/sagemaker/TransformJobs"
TERMINAL = frozenset({"Completed", "Failed", "Stopped"})


class LogTail:
    """The new lines of a job's log streams since the last ``poll`` (every stream whose name starts ``<job>/``,
    each read from its head once, then from where the previous poll stopped)."""

    def __init__(self, logs: Any, job: str) -> None:
        self.logs = logs
        self.job = job
        self._tokens: dict[str, str | None] = {}

    def _streams(self) -> list[str]:
        names: list[str] = []
        params: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamNamePrefix": f"{self.job}/"}
        while True:
            try:
                page = call(self.logs, "describe_log_streams", **params)
            except NotFound:  # no job has logged in this account and region yet
                return names
            names += [s["logStreamName"] for s in page.get("logStreams", [])]
            if not page.get("nextToken"):
                return names
            params["nextToken"] = page["nextToken"]

    def poll(self) -> list[str]:
        """The lines written since the last poll, oldest first, each ``[<stream>] <message>`` when the job has
        several streams (one per instance plus SageMaker's data log)."""
        events: list[tuple[int, str, str]] = []
        streams = self._streams()
        for stream in streams:
            params: dict[str, Any] = {
                "logGroupName": LOG_GROUP,
                "logStreamName": stream,
                "startFromHead": True,
            }
            token = self._tokens.get(stream)
            if token:
                params["nextToken"] = token
            while True:
                page = call(self.logs, "get_log_events", **params)
                batch = page.get("events", [])
                events += [(e.get("timestamp", 0), stream, e.get("message", "")) for e in batch]
                following = page.get("nextForwardToken")
                self._tokens[stream] = following
                if not batch or not following or following == params.get("nextToken"):
                    break
                params["nextToken"] = following
        events.sort(key=lambda event: event[0])
        tag = len(streams) > 1
        return [
            f"[{stream.removeprefix(self.job + '/')}] {message.rstrip()}" if tag else message.rstrip()
            for _, stream, message in events
        ]


def follow(
    describe: Callable[[], dict[str, Any]],
    *,
    tail: LogTail | None,
    out: TextIO | None,
    poll_s: float = 5.0,
    timeout_s: float | None = None,
    before_poll: Callable[[], None] | None = None,
    sleep: Callable[[float], Any] = time.sleep,
) -> dict[str, Any]:
    """Poll ``describe()`` until the job ends (or ``timeout_s`` passes); print each status change (``NAME: Status``)
    and, with a ``tail``, each new log line to ``out`` (None: print nothing). ``before_poll()`` runs before each
    describe; ``sleep(seconds)`` waits between polls (an ``Event.wait`` lets a signal cut it short). Returns the
    last DescribeTransformJob answer."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last_status = None
    while True:
        if before_poll is not None:
            before_poll()
        answer = describe()
        status = answer.get("TransformJobStatus")
        if status != last_status and out is not None:
            print(f"{answer.get('TransformJobName')}: {status}", file=out, flush=True)
            last_status = status
        if tail is not None and out is not None:
            for line in tail.poll():
                print(line, file=out, flush=True)
        if status in TERMINAL:
            return answer
        if deadline is not None and time.monotonic() >= deadline:
            return answer
        sleep(poll_s if deadline is None else max(0.0, min(poll_s, deadline - time.monotonic())))
