"""The SageMaker engine: transform jobs run by Amazon SageMaker Batch Transform, with batchlane's request rules.

``SageMakerEngine(store, region=..., role=..., staging=..., image=...)`` implements ``engines.base.Engine``
(docs/sagemaker-engine.md). SageMaker keeps the jobs: nothing is recorded in the local job store, which is read only
for the models registered with batchlane.

* ``submit``: the local engine's create-time rules first (``validate_request``, ``validate_options``, output outside
  input), then the model (``sagemaker_model.ensure_model``: created if missing, the same spec is success, another
  a ``Conflict``), local inputs uploaded (``sagemaker_staging``), and ``CreateTransformJob`` with the validated
  request. A job of that name that exists is ``AlreadyExists``, or returned with ``if_same_spec_ok`` when every
  field sent matches.
* ``run`` / ``run_in_foreground`` follow the job (DescribeTransformJob, CloudWatch Logs) until it ends; in the
  foreground the first Ctrl-C sends StopTransformJob, a second leaves the job running.
* ``stop``, ``describe``, ``list_jobs``, ``logs``, ``wait``: StopTransformJob, DescribeTransformJob,
  ListTransformJobs (newest first), CloudWatch Logs, a waiter.
* ``reopen``/``recover``: SageMaker never resumes a job, and recovers its own runners.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from batchlane import spec_diff
from batchlane.engines.sagemaker_aws import AwsSettings, call, client, describe
from batchlane.engines.sagemaker_follow import LogTail, follow
from batchlane.engines.sagemaker_model import ensure_model
from batchlane.engines.sagemaker_staging import stage_input
from batchlane.errors import AlreadyExists, Conflict, NotFound, ValidationError
from batchlane.jobs.outputs import check_output_outside_input
from batchlane.jobs.records import JobRecord
from batchlane.jobs.state import JobStatus
from batchlane.jobs.store import JobStore
from batchlane.transform.context import ProgressCallback
from batchlane.transform.options import JobOptions, validate_options
from batchlane.transform.spec import validate_request

DEFAULT_INSTANCE_TYPE = "ml.m5.large"
_INPUT_URI = "TransformInput.DataSource.S3DataSource.S3Uri"
# Options whose names differ from their flags (the rest: underscores become hyphens).
_OPTION_FLAGS = {"startup_timeout_s": "--startup-timeout", "max_runtime_s": "--max-runtime"}


class SageMakerEngine:
    """Runs transform jobs on SageMaker (module docstring). ``region``/``role``/``staging``/``image``/
    ``instance_type``: as ``AwsSettings.resolve`` (flags over the environment); ``out``: where status changes and
    log lines go while following a job (default: stderr; None: nowhere); ``poll_s``: seconds between DescribeTransformJob calls."""

    name = "sagemaker"

    def __init__(
        self,
        store: JobStore,
        *,
        region: str | None = None,
        role: str | None = None,
        staging: str | None = None,
        image: str | None = None,
        instance_type: str | None = None,
        out: TextIO | None | str = "stderr",
        poll_s: float = 5.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        env = dict(os.environ if env is None else env)
        self.store = store
        self.aws = AwsSettings.resolve(
            region=region, role=role, staging=staging, image=image, instance_type=instance_type, env=env
        )
        if self.aws.region:
            env["AWS_REGION"] = self.aws.region  # the staging uploads' S3 client reads it
        self.env = env
        # Looked up now, not at import: a caller (a test's capture) may have replaced sys.stderr.
        self.out: TextIO | None = sys.stderr if out == "stderr" else out  # type: ignore[assignment]
        self.poll_s = poll_s
        self._api: Any = None
        self._logs: Any = None

    def __repr__(self) -> str:
        return f"SageMakerEngine(region={self.aws.region!r})"

    @property
    def api(self) -> Any:
        """The SageMaker client, made on first use."""
        if self._api is None:
            self._api = client("sagemaker", self.aws)
        return self._api

    @property
    def logs_api(self) -> Any:
        """The CloudWatch Logs client, made on first use."""
        if self._logs is None:
            self._logs = client("logs", self.aws)
        return self._logs

    # -- submit ------------------------------------------------------------------------------------------------
    def submit(
        self,
        request: Mapping[str, Any],
        options: Mapping[str, Any] | JobOptions | None = None,
        *,
        if_same_spec_ok: bool = False,
    ) -> JobRecord:
        """Validate like the local engine, make the model and the inputs reachable, and CreateTransformJob."""
        body = self._for_sagemaker(dict(request))
        parsed = validate_request(body)
        self._check_options(validate_options(options, parsed))
        sent = parsed.to_dict()
        check_output_outside_input(sent)
        output = sent["TransformOutput"]["S3OutputPath"]
        if not output.startswith("s3://"):
            raise ValidationError(
                f"TransformOutput.S3OutputPath: SageMaker writes only to s3://, got {output!r}",
                field="TransformOutput.S3OutputPath",
            )
        name = parsed.TransformJobName
        existing = describe(self.api, "describe_transform_job", TransformJobName=name)
        if existing is not None:
            return self._same_job(existing, sent, if_same_spec_ok)
        ensure_model(self.api, self.store, parsed.ModelName, self.aws, self.env)
        source = sent["TransformInput"]["DataSource"]["S3DataSource"]
        if not source["S3Uri"].startswith("s3://"):
            if source.get("S3DataType") != "S3Prefix":
                raise ValidationError(
                    f"{_INPUT_URI}: a local {source.get('S3DataType')} cannot be uploaded (its entries name other "
                    "objects); upload the files and the manifest to S3 first",
                    field=_INPUT_URI,
                )
            source["S3Uri"] = stage_input(source["S3Uri"], self.aws.staging, self.env)
        try:
            call(self.api, "create_transform_job", **sent)
        except Conflict:  # created meanwhile (SageMaker: ResourceInUse)
            existing = describe(self.api, "describe_transform_job", TransformJobName=name)
            if existing is None:
                raise
            return self._same_job(existing, sent, if_same_spec_ok)
        return self._record(self.describe(name))

    def _for_sagemaker(self, body: dict[str, Any]) -> dict[str, Any]:
        """The request with the local default instance (``local``) replaced by an ``ml.*`` type."""
        resources = dict(body.get("TransformResources") or {"InstanceCount": 1})
        if resources.get("InstanceType", "local") == "local":
            resources["InstanceType"] = self.aws.instance_type or DEFAULT_INSTANCE_TYPE
        elif self.aws.instance_type:
            resources["InstanceType"] = self.aws.instance_type
        if not str(resources["InstanceType"]).startswith("ml."):
            raise ValidationError(
                f"TransformResources.InstanceType: SageMaker needs an ml.* instance type, got "
                f"{resources['InstanceType']!r}",
                field="TransformResources.InstanceType",
            )
        body["TransformResources"] = resources
        return body

    @staticmethod
    def _check_options(options: JobOptions) -> None:
        """batchlane's own options run only where batchlane runs the job: refuse any that is not its default."""
        defaults = JobOptions()
        for field in JobOptions.model_fields:
            if field == "engine" or getattr(options, field) == getattr(defaults, field):
                continue
            flag = _OPTION_FLAGS.get(field, "--" + field.replace("_", "-"))
            raise ValidationError(
                f"{flag} is batchlane's own option and SageMaker does not run it; drop it or use --engine local",
                field=field,
            )

    def _same_job(self, existing: dict[str, Any], sent: dict[str, Any], if_same_spec_ok: bool) -> JobRecord:
        name = sent["TransformJobName"]
        compared = {k: v for k, v in sent.items() if k != "TransformJobName"}
        # A staged local input has another URI than the one asked for; the job's own is what counts.
        source = compared.get("TransformInput", {}).get("DataSource", {}).get("S3DataSource", {})
        if not str(source.get("S3Uri", "s3://")).startswith("s3://"):
            compared = {**compared, "TransformInput": {k: v for k, v in compared["TransformInput"].items()}}
            compared["TransformInput"]["DataSource"] = {
                "S3DataSource": {k: v for k, v in source.items() if k != "S3Uri"}
            }
        changed = spec_diff.differences(existing, compared, keys_only=("Environment",))
        if changed:
            raise Conflict(
                f"transform job {name} already exists in SageMaker with a different spec: {'; '.join(changed)}",
                field="TransformJobName",
            )
        if not if_same_spec_ok:
            raise AlreadyExists(
                f"transform job {name} already exists in SageMaker (it is {existing.get('TransformJobStatus')}):"
                f" `batchlane jobs wait {name} --engine sagemaker` waits for it; choose another name for a new job",
                existing=self._record(existing),
                field="TransformJobName",
            )
        return self._record(existing)

    # -- watching and controlling jobs ---------------------------------------------------------------------------
    def describe(self, name: str) -> dict[str, Any]:
        """DescribeTransformJob's answer; ``NotFound`` if SageMaker has no such job."""
        answer = describe(self.api, "describe_transform_job", TransformJobName=name)
        if answer is None:
            raise NotFound(f"transform job {name} does not exist in SageMaker", field="TransformJobName")
        return {k: v for k, v in answer.items() if k != "ResponseMetadata"}

    def find_job(self, name: str) -> JobRecord | None:
        """The job as SageMaker describes it, or None if there is none (the queue worker's lookup)."""
        answer = describe(self.api, "describe_transform_job", TransformJobName=name)
        return None if answer is None else self._record(answer)

    def list_jobs(
        self, *, status: str | None = None, name_contains: str | None = None, max_results: int = 20
    ) -> list[dict[str, Any]]:
        """ListTransformJobs' summaries, newest first, at most ``max_results`` (1-100)."""
        if not 1 <= max_results <= 100:
            raise ValidationError("--max-results must be between 1 and 100", field="--max-results")
        params: dict[str, Any] = {
            "SortBy": "CreationTime",
            "SortOrder": "Descending",
            "MaxResults": max_results,
        }
        if status:
            params["StatusEquals"] = JobStatus.parse(status, field="--status").value
        if name_contains:
            params["NameContains"] = name_contains
        summaries = call(self.api, "list_transform_jobs", **params).get("TransformJobSummaries", [])
        # SageMaker sorts already; sorting again keeps the promise with services that ignore SortOrder (moto).
        summaries.sort(key=lambda s: s.get("CreationTime") or datetime.min.replace(tzinfo=UTC), reverse=True)
        return summaries[:max_results]

    def stop(self, name: str, *, finish_here: bool = True) -> JobRecord:
        """StopTransformJob (SageMaker ends the job Stopped); returns the job as described after the call."""
        self.describe(name)  # NotFound, named, before a stop of nothing
        call(self.api, "stop_transform_job", TransformJobName=name)
        return self._record(self.describe(name))

    def reopen(self, name: str) -> JobRecord:
        """SageMaker never runs a job twice: ``Conflict`` saying to start a new one."""
        self.describe(name)
        raise Conflict(
            f"SageMaker cannot resume transform job {name}; start a new job (another --name) over the same input",
            field="TransformJobName",
        )

    def recover(
        self, *, detach: bool = False, should_stop: Callable[[], bool] | None = None
    ) -> list[JobRecord]:
        """Nothing to sweep: SageMaker runs and recovers its own jobs."""
        return []

    def start_detached(self, name: str, *, log_file: str | Path | None = None) -> None:
        """Nothing to start: the job runs on SageMaker from ``submit`` on."""
        return None

    def wait(
        self, name: str, *, timeout_s: float | None = None, poll_s: float | None = None
    ) -> dict[str, Any]:
        """DescribeTransformJob's answer once the job ended, or when ``timeout_s`` ran out (still running)."""
        return follow(
            lambda: self.describe(name),
            tail=None,
            out=None,
            poll_s=poll_s or self.poll_s,
            timeout_s=timeout_s,
        )

    def logs(self, name: str, *, follow_job: bool = False) -> None:
        """Print the job's CloudWatch log lines to ``out``; ``follow_job``: and new ones until the job ends."""
        self.describe(name)
        tail = LogTail(self.logs_api, name)
        if not follow_job:
            for line in tail.poll():
                print(line, file=self.out or sys.stdout, flush=True)
            return
        follow(lambda: self.describe(name), tail=tail, out=self.out or sys.stdout, poll_s=self.poll_s)

    # -- running: SageMaker runs it, we follow -------------------------------------------------------------------
    def run(
        self,
        name: str,
        *,
        owner: str | None = None,
        lease_s: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> JobRecord:
        """Follow job ``name`` (status changes and CloudWatch log lines to ``out``) until it ends."""
        return self._record(self._follow(name))

    def _follow(
        self,
        name: str,
        *,
        before_poll: Callable[[], None] | None = None,
        sleep: Callable[[float], Any] | None = None,
    ) -> dict[str, Any]:
        tail = LogTail(self.logs_api, name) if self.out is not None else None
        return follow(
            lambda: self.describe(name),
            tail=tail,
            out=self.out,
            poll_s=self.poll_s,
            before_poll=before_poll,
            sleep=sleep or time.sleep,
        )

    def run_in_foreground(
        self,
        name: str,
        *,
        on_progress: ProgressCallback | None = None,
        on_signal: Callable[[int], None] | None = None,
    ) -> tuple[JobRecord, int | None]:
        """``run`` for a terminal: the first SIGINT/SIGTERM sends StopTransformJob (from the polling loop, not the
        signal handler) and keeps following until the job is Stopped; a second raises ``KeyboardInterrupt`` and
        leaves the job running on SageMaker. This engine prints its own "stopping" line: ``on_signal`` is not
        called (its text is about a local runner's file in flight)."""
        if threading.current_thread() is not threading.main_thread():
            return self.run(name), None
        received: list[int] = []
        wake = threading.Event()
        stop_sent = False

        def handle(signum: int, frame: object) -> None:
            received.append(signum)
            if len(received) > 1:
                raise KeyboardInterrupt
            wake.set()

        def send_stop() -> None:
            nonlocal stop_sent
            if received and not stop_sent:
                stop_sent = True
                wake.clear()
                print(f"stopping {name} (StopTransformJob); Ctrl-C again leaves it running", file=sys.stderr)
                call(self.api, "stop_transform_job", TransformJobName=name)

        previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            answer = self._follow(name, before_poll=send_stop, sleep=wake.wait)
            return self._record(answer), (received[0] if received else None)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _record(self, answer: Mapping[str, Any]) -> JobRecord:
        """A ``JobRecord`` of DescribeTransformJob's answer (not stored: SageMaker keeps the job)."""
        created = answer.get("CreationTime") or datetime.now(UTC)
        request_fields = (
            "ModelName", "TransformInput", "TransformOutput", "TransformResources", "BatchStrategy",
            "MaxPayloadInMB", "MaxConcurrentTransforms", "Environment", "DataProcessing", "ModelClientConfig",
        )  # fmt: skip
        return JobRecord(
            name=str(answer.get("TransformJobName")),
            arn=str(answer.get("TransformJobArn", "")),
            status=JobStatus.parse(str(answer.get("TransformJobStatus")), field="TransformJobStatus"),
            failure_reason=answer.get("FailureReason") or None,
            request={k: answer[k] for k in request_fields if k in answer}
            | {"TransformJobName": answer.get("TransformJobName")},
            options={"job": {"engine": self.name}},
            spec_hash="",
            creation_time=created,
            start_time=answer.get("TransformStartTime"),
            end_time=answer.get("TransformEndTime"),
            last_modified_time=answer.get("LastModifiedTime") or created,
            files_total=0,
            files_done=0,
            files_failed=0,
            records_done=0,
            records_failed=0,
            bytes_total=0,
            bytes_done=0,
            owner=None,
            lease_expires=None,
            attempts=0,
        )
