"""``batchlane jobs … --engine sagemaker``, AWS errors as one line, and the queue worker on SageMaker: the real CLI
against moto's server through a recording proxy.

moto has no StopTransformJob, so the proxy answers it as SageMaker does (an empty 200): the test shows the call
batchlane makes, not a job that stops. moto's transform jobs are Completed at once and run no inference.
"""

from __future__ import annotations

import contextlib
import json
import time

import pytest

from tests.integration.engines.conftest import IMAGE, ROLE, SageMakerSetup, unique


def _model(sm: SageMakerSetup) -> str:
    name = unique("model")
    sm.boto("sagemaker").create_model(
        ModelName=name,
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": f"s3://{sm.bucket}/m/model.tar.gz"},
        ExecutionRoleArn=ROLE,
    )
    return name


def _job(sm: SageMakerSetup, model: str, name: str) -> None:
    sm.boto("sagemaker").create_transform_job(
        TransformJobName=name,
        ModelName=model,
        TransformInput={
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{sm.bucket}/i/"}}
        },
        TransformOutput={"S3OutputPath": f"s3://{sm.bucket}/o/"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
    )


def test_list_is_newest_first_with_max_results_and_filters(sm: SageMakerSetup) -> None:
    model, tag = _model(sm), unique("listed")
    names = [f"{tag}-{i}" for i in range(3)]
    for name in names:
        _job(sm, model, name)
        time.sleep(0.01)  # distinct creation times
    sm.proxy.clear()
    code, out, err = sm.cli("jobs", "list", "--engine", "sagemaker", "--name-contains", tag, "--json")
    assert code == 0, err
    listed = [s["TransformJobName"] for s in json.loads(out)["TransformJobSummaries"]]
    assert listed == names[::-1]
    assert sm.proxy.bodies("ListTransformJobs") == [
        {"SortBy": "CreationTime", "SortOrder": "Descending", "MaxResults": 20, "NameContains": tag}
    ]

    sm.proxy.clear()
    code, out, err = sm.cli(
        "jobs", "list", "--engine", "sagemaker", "--list-jobs", "--max-results", "2", "--status", "Completed"
    )
    assert code == 0, err
    (call,) = sm.proxy.bodies("ListTransformJobs")
    assert call["MaxResults"] == 2 and call["StatusEquals"] == "Completed"
    assert call["SortOrder"] == "Descending"
    assert len([line for line in out.splitlines() if "Completed" in line]) == 2

    code, _, err = sm.cli("jobs", "list", "--engine", "sagemaker", "--max-results", "0")
    assert code == 2 and "--max-results must be between 1 and 100" in err


def test_describe_and_stop_map_to_sagemaker(sm: SageMakerSetup) -> None:
    model, name = _model(sm), unique("stop-me")
    _job(sm, model, name)
    code, out, err = sm.cli("jobs", "describe", name, "--engine", "sagemaker")
    assert code == 0, err
    described = json.loads(out)
    assert described["TransformJobName"] == name and described["TransformJobStatus"] == "Completed"
    assert described["ModelName"] == model

    sm.proxy.answer["StopTransformJob"] = (200, {})
    sm.proxy.clear()
    code, out, err = sm.cli("jobs", "stop", name, "--engine", "sagemaker")
    assert code == 0, err
    assert sm.proxy.bodies("StopTransformJob") == [{"TransformJobName": name}]
    assert out.strip() == f"{name}: Completed"  # moto's job had ended already

    sm.proxy.clear()
    code, _, err = sm.cli("jobs", "stop", unique("no-such-job"), "--engine", "sagemaker")
    assert code == 1 and "does not exist in SageMaker" in err
    assert sm.proxy.bodies("StopTransformJob") == []


def test_logs_print_the_jobs_cloudwatch_streams_only(sm: SageMakerSetup) -> None:
    model, name, other = _model(sm), unique("logged"), unique("other")
    _job(sm, model, name)
    logs = sm.boto("logs")
    group = "/aws/sagemaker/TransformJobs"
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_group(logGroupName=group)
    now = int(time.time() * 1000)
    for stream, message, at in (
        (f"{name}/i-0abc-1700000000", "model loaded", now),
        (f"{name}/i-0abc-1700000000/data-log", "s3://b/i/a.txt: ClientError: 400", now + 1),
        (f"{other}/i-0def-1700000000", "someone else's line", now),
    ):
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
        logs.put_log_events(
            logGroupName=group, logStreamName=stream, logEvents=[{"timestamp": at, "message": message}]
        )
    code, out, err = sm.cli("jobs", "logs", name, "--engine", "sagemaker")
    assert code == 0, err
    assert out.splitlines() == [
        "[i-0abc-1700000000] model loaded",
        "[i-0abc-1700000000/data-log] s3://b/i/a.txt: ClientError: 400",
    ]
    assert {b["logStreamNamePrefix"] for b in sm.proxy.bodies("DescribeLogStreams")} == {f"{name}/"}
    # --follow: the status, then the lines, until the job ended (moto's has).
    code, out, err = sm.cli("jobs", "logs", name, "--engine", "sagemaker", "--follow")
    assert code == 0, err
    assert out.splitlines() == [
        f"{name}: Completed",
        "[i-0abc-1700000000] model loaded",
        "[i-0abc-1700000000/data-log] s3://b/i/a.txt: ClientError: 400",
    ]


@pytest.mark.parametrize(
    ("code", "message", "exit_code", "expected"),
    [
        ("AccessDeniedException", "User is not authorized to perform: sagemaker:CreateTransformJob", 1,
         "the credentials in use may not make this call"),
        ("ResourceLimitExceeded", "The account-level service limit 'ml.m5.large for transform job usage' is 0", 1,
         "wait for running jobs to end, choose another --instance-type"),
        ("ValidationException", "Could not assume role arn:aws:iam::123456789012:role/nope", 2,
         "fix the field it names"),
    ],
)  # fmt: skip
def test_aws_errors_become_one_line_naming_the_call_and_what_to_do(
    sm: SageMakerSetup, code: str, message: str, exit_code: int, expected: str
) -> None:
    model = _model(sm)
    sm.proxy.answer["CreateTransformJob"] = (400, {"__type": code, "message": message})
    result, out, err = sm.cli(
        "transform", "--engine", "sagemaker", "--model", model, "--name", unique("refused"),
        "--input", f"s3://{sm.bucket}/i/", "--output", f"s3://{sm.bucket}/o/",
    )  # fmt: skip
    assert result == exit_code
    (line,) = err.strip().splitlines()
    assert line.startswith(f"error: SageMaker CreateTransformJob: {code}: {message}") and expected in line


def test_a_role_that_is_not_an_arn_is_refused_before_the_call(sm: SageMakerSetup, tmp_path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"1")
    code, _, err = sm.cli(
        "transform", "--engine", "sagemaker", "--model-dir", str(folder), "--role", "nope", "--image", IMAGE,
        "--upload-to", sm.staging, "--input", f"s3://{sm.bucket}/i/", "--output", f"s3://{sm.bucket}/o/",
    )  # fmt: skip
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line.startswith("error: SageMaker CreateModel:") and "ExecutionRoleArn" in line
    assert sm.proxy.bodies("CreateModel") == []


def test_the_queue_worker_starts_jobs_on_sagemaker(
    sm: SageMakerSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's own path (``prepare_launch``), then the engine: the default model created in SageMaker from
    --model/--model-data, staged; one CreateTransformJob with the message's fields and the seed's defaults."""
    folder = sm.tmp / "worker-model"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"w")
    monkeypatch.setenv("BATCHLANE_SAGEMAKER_ROLE", ROLE)
    monkeypatch.setenv("BATCHLANE_SAGEMAKER_IMAGE", IMAGE)
    monkeypatch.setenv("BATCHLANE_SAGEMAKER_STAGING", sm.staging)
    sm.boto("s3").put_object(Bucket=sm.bucket, Key="q/in/a.txt", Body=b"hello\n")
    queue = f"sqlite:///{sm.tmp / 'queue.db'}"
    message = {
        "input_path": f"s3://{sm.bucket}/q/in/",
        "output_path": f"s3://{sm.bucket}/q/out/",
        "job_name": unique("queued"),
    }
    code, _, err = sm.cli(
        "queue", "send", "--queue", queue, "--input", message["input_path"], "--output", message["output_path"],
        "--instance-type", "ml.m5.xlarge", "--job-name", message["job_name"],
    )  # fmt: skip
    assert code == 0, err
    # A local job whose runner is gone: the local engine's to resume, never this worker's.
    from batchlane.engines import get_engine
    from batchlane.jobs.store import JobStore
    from tests.models import register_echo

    store = JobStore(sm.tmp / "state" / "jobs.db")
    register_echo(store)
    (sm.tmp / "local-in").mkdir()
    (sm.tmp / "local-in" / "a.txt").write_text("x\n")
    orphan = get_engine("local", store).submit(
        {
            "TransformJobName": unique("local-orphan"),
            "ModelName": "echo",
            "TransformInput": {
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"{sm.tmp}/local-in/"}}
            },
            "TransformOutput": {"S3OutputPath": f"{sm.tmp}/local-out/"},
            "TransformResources": {"InstanceType": "local", "InstanceCount": 1},
        }
    )
    model = unique("wm")
    code, out, err = sm.cli(
        "worker", "--engine", "sagemaker", "--queue", queue, "--burst", "--model", model,
        "--model-data", str(folder),
    )  # fmt: skip
    assert code == 0, err
    assert (
        store.get_job(orphan.name).status.value == "InProgress" and store.get_job(orphan.name).attempts == 0
    )
    assert orphan.name not in {b.get("TransformJobName") for b in sm.proxy.bodies("DescribeTransformJob")}
    (created,) = sm.proxy.bodies("CreateModel")
    assert created["ModelName"] == model and created["PrimaryContainer"]["Image"] == IMAGE
    assert created["PrimaryContainer"]["ModelDataUrl"].startswith(f"s3://{sm.bucket}/staging/models/")
    (job,) = sm.proxy.bodies("CreateTransformJob")
    assert job["TransformJobName"] == message["job_name"] and job["ModelName"] == model
    assert job["TransformResources"] == {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1}
    assert (
        job["TransformInput"]["ContentType"] == "text/plain" and job["TransformInput"]["SplitType"] == "Line"
    )
    assert job["TransformOutput"]["S3OutputPath"] == message["output_path"]


def test_a_fresh_cli_process_reaches_the_endpoint_from_aws_endpoint_url(sm: SageMakerSetup) -> None:
    """The console script in its own process: boto3 reads AWS_ENDPOINT_URL and the region from the environment."""
    import os
    import subprocess

    from tests.models import CLI

    model, name = _model(sm), unique("subprocess")
    _job(sm, model, name)
    sm.proxy.clear()
    done = subprocess.run(
        [*CLI, "jobs", "describe", name, "--engine", "sagemaker", "--region", "us-east-1"],
        env=dict(os.environ), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["TransformJobArn"].endswith(f":transform-job/{name}")
    assert sm.proxy.bodies("DescribeTransformJob") == [{"TransformJobName": name}]
