"""boto3's SageMaker client against the control plane: uvicorn on a free loopback port, a real SQLite job store, and
jobs run by the server's executor through `batchlane serve` model containers (a tiny BERT)."""

from __future__ import annotations

import datetime
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, WaiterError

from batchlane.api.auth import AccessKey
from batchlane.api.executor import JobExecutor
from batchlane.engines import get_engine
from batchlane.jobs.state import JobStatus
from batchlane.jobs.store import JobStore
from batchlane.models import ModelRegistry, ModelSpec
from tests.servers import api_server, aws_client

KEY, SECRET = "AKIDSAGEMAKER", "sagemaker-test-secret"
FAST_WAIT = {"Delay": 1, "MaxAttempts": 90}
_names = itertools.count()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api-sagemaker")


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[str]:
    with api_server(root, AccessKey(KEY, SECRET), workers=1, lease_s=3, queue_worker=False) as url:
        yield url


@pytest.fixture(scope="module")
def sm(server: str):
    return aws_client("sagemaker", server, KEY, SECRET)


@pytest.fixture(scope="module")
def model(sm, tiny_bert_dir: Path) -> str:
    sm.create_model(
        ModelName="tiny-bert",
        PrimaryContainer={"Image": "batchlane:local", "ModelDataUrl": str(tiny_bert_dir)},
        ExecutionRoleArn="arn:aws:iam::000000000000:role/unused",
    )
    return "tiny-bert"


def job_request(name: str, model: str, input_dir: Path, output_dir: Path) -> dict:
    return {
        "TransformJobName": name,
        "ModelName": model,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"{input_dir}/"}},
            "ContentType": "application/jsonlines",
            "SplitType": "Line",
        },
        "TransformOutput": {
            "S3OutputPath": f"{output_dir}/",
            "Accept": "application/jsonlines",
            "AssembleWith": "Line",
        },
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }


def inputs(root: Path, lines: int = 2) -> Path:
    folder = root / f"in-{next(_names)}"
    folder.mkdir()
    if lines:
        (folder / "part-1.jsonl").write_text(
            "".join(json.dumps({"inputs": f"my card was charged twice ({i})"}) + "\n" for i in range(lines))
        )
    return folder


def wait_until_finished(sm, name: str, timeout_s: float = 60) -> str:
    """The job's terminal status (the waiter treats Failed as an error; these tests expect it sometimes)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = sm.describe_transform_job(TransformJobName=name)["TransformJobStatus"]
        if status in ("Completed", "Failed", "Stopped"):
            return status
        time.sleep(0.1)
    raise TimeoutError(f"job {name} did not finish within {timeout_s}s")


def client_error(call) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value.response["Error"]["Code"], caught.value.response["Error"]["Message"]


def test_create_model_start_a_transform_wait_and_read_the_outputs(sm, model: str, root: Path) -> None:
    described = sm.describe_model(ModelName=model)
    assert described["ModelArn"] == "arn:aws:sagemaker:us-east-1:000000000000:model/tiny-bert"
    assert described["PrimaryContainer"]["ModelDataUrl"].startswith("file:///")
    assert [m["ModelName"] for m in sm.list_models()["Models"]] == [model]

    source, out = inputs(root), root / "out-main"
    arn = sm.create_transform_job(**job_request("main-job", model, source, out))["TransformJobArn"]
    assert arn == "arn:aws:sagemaker:us-east-1:000000000000:transform-job/main-job"
    sm.get_waiter("transform_job_completed_or_stopped").wait(
        TransformJobName="main-job", WaiterConfig=FAST_WAIT
    )

    job = sm.describe_transform_job(TransformJobName="main-job")
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    assert job["CreationTime"] <= job["TransformStartTime"] <= job["TransformEndTime"]
    assert job["TransformInput"]["SplitType"] == "Line" and job["ModelName"] == model
    lines = (out / "part-1.jsonl.out").read_text().splitlines()
    assert len(lines) == 2 and all(
        json.loads(line)["label"] in {"billing", "fraud", "service"} for line in lines
    )


def test_errors_come_back_in_sagemaker_shape(sm, model: str, root: Path) -> None:
    code, message = client_error(lambda: sm.describe_transform_job(TransformJobName="no-such-job"))
    assert code == "ValidationException" and message.startswith("Could not find transform job")
    with pytest.raises(WaiterError, match="ValidationException"):
        sm.get_waiter("transform_job_completed_or_stopped").wait(
            TransformJobName="no-such-job", WaiterConfig=FAST_WAIT
        )

    bad = job_request("bad-split", model, inputs(root, 0), root / "out-bad")
    bad["TransformInput"]["SplitType"] = "Lines"
    code, message = client_error(lambda: sm.create_transform_job(**bad))
    assert code == "ValidationException" and "TransformInput.SplitType" in message

    missing = job_request("no-model", "no-such-model", inputs(root, 0), root / "out-missing")
    assert client_error(lambda: sm.create_transform_job(**missing))[0] == "ValidationException"

    first = job_request("dup-job", model, inputs(root, 0), root / "out-dup")
    sm.create_transform_job(**first)
    code, message = client_error(lambda: sm.create_transform_job(**first))
    assert code == "ResourceInUse" and "dup-job" in message
    code, message = client_error(
        lambda: sm.create_model(ModelName=model, PrimaryContainer={"ModelDataUrl": str(root)})
    )
    assert code == "ValidationException" and "Cannot create already existing model" in message

    assert (
        client_error(lambda: sm.stop_transform_job(TransformJobName="no-such-job"))[0] == "ResourceNotFound"
    )
    assert client_error(lambda: sm.list_transform_jobs(StatusEquals="Done"))[0] == "ValidationException"
    assert client_error(lambda: sm.list_transform_jobs(NextToken="garbage"))[0] == "ValidationException"


def test_list_transform_jobs_pages_filters_and_sorts(sm, model: str, root: Path) -> None:
    # Empty inputs fail at once ("no input objects") without a model server: enough jobs to page through, cheaply.
    names = [f"page-{i}" for i in range(3)]
    for name in names:
        sm.create_transform_job(**job_request(name, model, inputs(root, 0), root / f"out-{name}"))
    assert [wait_until_finished(sm, name) for name in names] == ["Failed"] * 3

    pages = list(
        sm.get_paginator("list_transform_jobs").paginate(
            NameContains="page-", PaginationConfig={"PageSize": 2}
        )
    )
    assert [len(p["TransformJobSummaries"]) for p in pages] == [2, 1]
    listed = [s["TransformJobName"] for p in pages for s in p["TransformJobSummaries"]]
    assert listed == names[::-1]  # newest first by default
    first = sm.list_transform_jobs(NameContains="page-", MaxResults=2, SortBy="Name", SortOrder="Ascending")
    second = sm.list_transform_jobs(
        NameContains="page-", MaxResults=2, SortBy="Name", SortOrder="Ascending", NextToken=first["NextToken"]
    )
    assert [
        s["TransformJobName"] for s in first["TransformJobSummaries"] + second["TransformJobSummaries"]
    ] == names
    assert "NextToken" not in second
    summary = second["TransformJobSummaries"][0]
    assert summary["TransformJobStatus"] == "Failed" and "no input objects" in summary["FailureReason"]
    assert summary["LastModifiedTime"] >= summary["CreationTime"]
    # botocore may send times rounded to the second, so the bounds sit well away from the jobs' creation times.
    created, day = first["TransformJobSummaries"][0]["CreationTime"], datetime.timedelta(days=1)

    def count(**filters: object) -> int:
        return len(sm.list_transform_jobs(NameContains="page-", **filters)["TransformJobSummaries"])

    assert count(CreationTimeAfter=created - day) == 3 and count(CreationTimeBefore=created - day) == 0
    assert count(LastModifiedTimeAfter=created + day) == 0
    assert (
        sm.list_transform_jobs(NameContains="page-", StatusEquals="Completed")["TransformJobSummaries"] == []
    )


def test_stop_transform_job_ends_stopped_without_outputs(sm, model: str, root: Path) -> None:
    out = root / "out-stopped"
    sm.create_transform_job(**job_request("stop-me", model, inputs(root, 50), out))
    sm.stop_transform_job(TransformJobName="stop-me")
    assert sm.describe_transform_job(TransformJobName="stop-me")["TransformJobStatus"] in (
        "Stopping",
        "Stopped",
    )
    sm.stop_transform_job(TransformJobName="stop-me")  # idempotent
    sm.get_waiter("transform_job_completed_or_stopped").wait(
        TransformJobName="stop-me", WaiterConfig=FAST_WAIT
    )
    assert sm.describe_transform_job(TransformJobName="stop-me")["TransformJobStatus"] == "Stopped"
    assert not list(out.glob("*.out"))


def test_delete_model(sm, root: Path) -> None:
    sm.create_model(ModelName="short-lived", PrimaryContainer={"ModelDataUrl": str(root)})
    sm.delete_model(ModelName="short-lived")
    assert client_error(lambda: sm.describe_model(ModelName="short-lived"))[0] == "ValidationException"
    assert client_error(lambda: sm.delete_model(ModelName="short-lived"))[0] == "ValidationException"


def _empty_job(store: JobStore, root: Path, name: str) -> None:
    ModelRegistry(store).create(ModelSpec(name="m", model_data=str(root)), exist_ok=True)
    get_engine("local", store).submit(job_request(name, "m", inputs(root, 0), root / f"out-{name}"))


def test_the_executor_resumes_orphaned_jobs_at_start(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    _empty_job(store, tmp_path, "orphan")  # created while no server ran: nobody holds it
    executor = JobExecutor(store, workers=1, lease_s=3, scan_interval_s=0.1)
    executor.start()
    try:
        for _ in range(200):
            if store.get_job("orphan").is_terminal:
                break
            time.sleep(0.05)
    finally:
        executor.stop()
    record = store.get_job("orphan")
    assert record.status is JobStatus.FAILED and record.attempts == 1  # run once: "no input objects"


def test_a_runner_that_keeps_crashing_fails_the_job_instead_of_looping(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    _empty_job(store, tmp_path, "crashy")

    def crash(store: JobStore, name: str, *, owner: str, lease_s: float) -> None:
        store.claim(name, owner, lease_s)
        raise RuntimeError("boom")

    executor = JobExecutor(
        store, workers=1, scan_interval_s=0.05, unclaimed_grace_s=0, max_attempts=2, run_job=crash
    )
    executor.start()
    try:
        for _ in range(200):
            if store.get_job("crashy").is_terminal:
                break
            time.sleep(0.05)
    finally:
        executor.stop()
    record = store.get_job("crashy")
    assert record.status is JobStatus.FAILED and record.attempts == 2
    assert "crashed 2 times" in (record.failure_reason or "") and "boom" in (record.failure_reason or "")
