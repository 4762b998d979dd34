"""CloudWatch Logs on the control plane: boto3's `logs` client and the `aws logs` CLI against uvicorn on a free port,
reading the logs of jobs the server ran (the echo model)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from batchlane.api.auth import AccessKey
from tests.models import ECHO_DIR, ECHO_ENV, transform_request
from tests.servers import api_server, aws_cli, aws_client

# Each test starts a `batchlane serve` process or loads a real model: `make test-fast` skips them.
pytestmark = pytest.mark.slow

KEY, SECRET = "AKIDLOGS", "logs-test-secret"
READER, READER_SECRET = "AKIDSMONLY", "sagemaker-only-secret"
GROUP = "/aws/sagemaker/TransformJobs"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api-logs")


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[str]:
    keys = (AccessKey(KEY, SECRET), AccessKey(READER, READER_SECRET, allow=("sagemaker:*",)))
    with api_server(root, *keys, workers=1, lease_s=3, queue_worker=False) as url:
        yield url


def client(server: str, service: str, key: str = KEY, secret: str = SECRET):
    return aws_client(service, server, key, secret)


@pytest.fixture(scope="module")
def logs(server: str):
    return client(server, "logs")


@pytest.fixture(scope="module")
def jobs(server: str, root: Path) -> dict[str, dict]:
    """Two finished jobs (``logs-a`` with 2 files, ``logs-b`` with 1), described."""
    sm = client(server, "sagemaker")
    sm.create_model(
        ModelName="echo",
        PrimaryContainer={"Image": "batchlane:local", "ModelDataUrl": str(ECHO_DIR), "Environment": ECHO_ENV},
        ExecutionRoleArn="arn:aws:iam::000000000000:role/unused",
    )
    described = {}
    for name, files in (("logs-a", 2), ("logs-b", 1)):
        source = root / f"{name}-in"
        source.mkdir()
        for i in range(files):
            (source / f"part-{i}.txt").write_text("card charged twice\nrude agent\n")
        sm.create_transform_job(**transform_request(name, f"{source}/", f"{root / name}-out/"))
        sm.get_waiter("transform_job_completed_or_stopped").wait(
            TransformJobName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 90}
        )
        described[name] = sm.describe_transform_job(TransformJobName=name)
        assert described[name]["TransformJobStatus"] == "Completed"
    return described


def stream_names(job: dict) -> tuple[str, str]:
    """SageMaker's names: ``<job>/<instance>-<epoch>`` (the container) and ``…/data-log`` (the platform)."""
    base = f"{job['TransformJobName']}/batchlane-1-{int(job['CreationTime'].timestamp())}"
    return base, base + "/data-log"


def error(call) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value.response["Error"]["Code"], caught.value.response["Error"]["Message"]


def test_describe_log_streams_names_orders_and_pages(logs, jobs: dict[str, dict]) -> None:
    container, data_log = stream_names(jobs["logs-a"])
    listed = logs.describe_log_streams(logGroupName=GROUP, logStreamNamePrefix="logs-a/")["logStreams"]
    assert [s["logStreamName"] for s in listed] == [container, data_log]
    for stream in listed:
        assert (
            stream["arn"]
            == f"arn:aws:logs:us-east-1:000000000000:log-group:{GROUP}:log-stream:{stream['logStreamName']}"
        )
        assert stream["creationTime"] <= stream["firstEventTimestamp"] <= stream["lastEventTimestamp"]

    # What the SageMaker SDK asks for first: limit=InstanceCount, ordered by name. More streams → a nextToken.
    first = logs.describe_log_streams(
        logGroupName=GROUP, logStreamNamePrefix="logs-a/", orderBy="LogStreamName", limit=1
    )
    assert [s["logStreamName"] for s in first["logStreams"]] == [container]
    second = logs.describe_log_streams(
        logGroupName=GROUP, logStreamNamePrefix="logs-a/", limit=1, nextToken=first["nextToken"]
    )
    assert [s["logStreamName"] for s in second["logStreams"]] == [data_log] and "nextToken" not in second

    backwards = logs.describe_log_streams(logGroupName=GROUP, logStreamNamePrefix="logs-", descending=True)
    assert [s["logStreamName"] for s in backwards["logStreams"]] == sorted(
        [*stream_names(jobs["logs-a"]), *stream_names(jobs["logs-b"])], reverse=True
    )
    paged = logs.get_paginator("describe_log_streams").paginate(
        logGroupName=GROUP, PaginationConfig={"PageSize": 1}
    )
    assert len([s for page in paged for s in page["logStreams"]]) == 4
    by_time = logs.describe_log_streams(logGroupName=GROUP, orderBy="LastEventTime", descending=True)
    last_events = [s["lastEventTimestamp"] for s in by_time["logStreams"]]
    assert last_events == sorted(last_events, reverse=True)

    assert error(
        lambda: logs.describe_log_streams(
            logGroupName=GROUP, logStreamNamePrefix="logs-a/", orderBy="LastEventTime"
        )
    ) == ("InvalidParameterException", "Cannot order by LastEventTime with a logStreamNamePrefix.")
    assert logs.describe_log_streams(logGroupName=GROUP, logStreamNamePrefix="nope/")["logStreams"] == []


def test_get_log_events_reads_forward_backward_and_by_time(logs, jobs: dict[str, dict]) -> None:
    job = jobs["logs-a"]
    _, data_log = stream_names(job)
    head = logs.get_log_events(logGroupName=GROUP, logStreamName=data_log, startFromHead=True)
    messages = [e["message"] for e in head["events"]]
    assert "[sagemaker logs]: MaxConcurrentTransforms=" in messages[0]
    assert sum("done: 2 records, 0 failed" in m for m in messages) == 2
    assert messages[-1].endswith("[batchlane]: job Completed")
    stamps = [e["timestamp"] for e in head["events"]]
    assert stamps == sorted(stamps)
    assert job["CreationTime"].timestamp() * 1000 - 1000 <= stamps[0]
    assert stamps[-1] <= job["TransformEndTime"].timestamp() * 1000 + 1000
    assert all(e["ingestionTime"] >= e["timestamp"] for e in head["events"])

    # At the end of the stream the same token comes back with no events (the SDK's loop stops on that).
    more = logs.get_log_events(
        logGroupName=GROUP, logStreamName=data_log, startFromHead=True, nextToken=head["nextForwardToken"]
    )
    assert more["events"] == [] and more["nextForwardToken"] == head["nextForwardToken"]

    # Without startFromHead: the latest events; then backwards page by page.
    latest = logs.get_log_events(logGroupName=GROUP, logStreamName=data_log, limit=1)
    assert [e["message"] for e in latest["events"]] == messages[-1:]
    token, seen = latest["nextBackwardToken"], []
    for _ in range(len(messages)):
        page = logs.get_log_events(logGroupName=GROUP, logStreamName=data_log, limit=1, nextToken=token)
        seen = [e["message"] for e in page["events"]] + seen
        if not page["events"]:
            assert page["nextBackwardToken"] == token
            break
        token = page["nextBackwardToken"]
    assert seen == messages[:-1]

    # startTime is inclusive, endTime exclusive (epoch milliseconds).
    since = logs.get_log_events(
        logGroupName=GROUP, logStreamName=data_log, startFromHead=True, startTime=stamps[-1]
    )
    assert [e["message"] for e in since["events"]] == [
        m for m, t in zip(messages, stamps, strict=True) if t >= stamps[-1]
    ]
    until = logs.get_log_events(
        logGroupName=GROUP, logStreamName=data_log, startFromHead=True, endTime=stamps[-1]
    )
    assert [e["message"] for e in until["events"]] == [
        m for m, t in zip(messages, stamps, strict=True) if t < stamps[-1]
    ]

    container, _ = stream_names(job)
    served = logs.get_log_events(logGroupName=GROUP, logStreamName=container, startFromHead=True)["events"]
    assert any("Uvicorn running on" in e["message"] for e in served)


def test_filter_log_events_by_pattern_stream_and_page(logs, jobs: dict[str, dict]) -> None:
    done = logs.filter_log_events(logGroupName=GROUP, filterPattern='"done:"')
    streams = {e["logStreamName"] for e in done["events"]}
    assert streams == {stream_names(jobs["logs-a"])[1], stream_names(jobs["logs-b"])[1]}
    assert len(done["events"]) == 3 and all("done:" in e["message"] for e in done["events"])
    assert [e["timestamp"] for e in done["events"]] == sorted(e["timestamp"] for e in done["events"])

    # Every term must occur; ?terms: any one of them.
    both = logs.filter_log_events(
        logGroupName=GROUP, filterPattern="job Completed", logStreamNamePrefix="logs-b/"
    )
    assert [e["message"].split(" ", 2)[2] for e in both["events"]] == ["[batchlane]: job Completed"]
    either = logs.filter_log_events(logGroupName=GROUP, filterPattern="?MaxPayloadInMB ?Uvicorn")
    assert {e["logStreamName"] for e in either["events"]} == {
        *stream_names(jobs["logs-a"]),
        *stream_names(jobs["logs-b"]),
    }

    one_stream = [stream_names(jobs["logs-b"])[0]]
    everything = logs.filter_log_events(logGroupName=GROUP, logStreamNames=one_stream)["events"]
    assert everything and {e["logStreamName"] for e in everything} == set(one_stream)
    paged = logs.get_paginator("filter_log_events").paginate(
        logGroupName=GROUP, logStreamNames=one_stream, PaginationConfig={"PageSize": 2}
    )
    assert [e for page in paged for e in page["events"]] == everything
    assert len({e["eventId"] for e in everything}) == len(everything)

    assert error(lambda: logs.filter_log_events(logGroupName=GROUP, filterPattern='{ $.level = "ERROR" }'))[
        0
    ] == ("InvalidParameterException")
    assert error(
        lambda: logs.filter_log_events(
            logGroupName=GROUP, logStreamNames=one_stream, logStreamNamePrefix="logs-b/"
        )
    ) == (
        "InvalidParameterException",
        "logStreamNames and logStreamNamePrefix are mutually exclusive parameters.",
    )


def test_unknown_group_stream_and_bad_tokens_are_cloudwatch_errors(
    server: str, logs, jobs: dict[str, dict]
) -> None:
    missing_group = ("ResourceNotFoundException", "The specified log group does not exist.")
    assert (
        error(lambda: logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs")) == missing_group
    )
    assert error(lambda: logs.get_log_events(logGroupName="/nope", logStreamName="x")) == missing_group
    assert error(lambda: logs.filter_log_events(logGroupName="/nope")) == missing_group
    with pytest.raises(
        logs.exceptions.ResourceNotFoundException, match="The specified log stream does not exist."
    ):
        logs.get_log_events(logGroupName=GROUP, logStreamName="logs-a/batchlane-1-0")
    _, data_log = stream_names(jobs["logs-a"])
    for call in (
        lambda: logs.get_log_events(logGroupName=GROUP, logStreamName=data_log, nextToken="x/12"),
        lambda: logs.describe_log_streams(logGroupName=GROUP, nextToken="not-a-token"),
        lambda: logs.filter_log_events(logGroupName=GROUP, nextToken="bm90IGpzb24="),
    ):
        assert error(call) == ("InvalidParameterException", "The specified nextToken is invalid.")
    # Keys' allow patterns cover the logs service like the others.
    reader = client(server, "logs", READER, READER_SECRET)
    code, message = error(lambda: reader.get_log_events(logGroupName=GROUP, logStreamName=data_log))
    assert code == "AccessDeniedException" and "logs:GetLogEvents" in message


def aws_logs(server: str, home: Path, *args: str) -> dict:
    return aws_cli(server, home, KEY, SECRET, "logs", *args)


def test_the_aws_cli_reads_and_filters_job_logs(server: str, root: Path, jobs: dict[str, dict]) -> None:
    container, data_log = stream_names(jobs["logs-b"])
    described = aws_logs(
        server, root, "describe-log-streams", "--log-group-name", GROUP, "--log-stream-name-prefix", "logs-b/"
    )
    assert [s["logStreamName"] for s in described["logStreams"]] == [container, data_log]
    events = aws_logs(
        server,
        root,
        "get-log-events",
        "--log-group-name",
        GROUP,
        "--log-stream-name",
        data_log,
        "--start-from-head",
    )
    assert events["events"][-1]["message"].endswith("[batchlane]: job Completed")
    assert events["nextForwardToken"].startswith("f/") and events["nextBackwardToken"].startswith("b/")
    # The CLI follows filter-log-events' nextToken itself (page size 1 here: one request per event).
    filtered = aws_logs(
        server,
        root,
        "filter-log-events",
        "--log-group-name",
        GROUP,
        "--log-stream-name-prefix",
        "logs-a/",
        "--filter-pattern",
        '"done:"',
        "--page-size",
        "1",
    )
    assert [e["logStreamName"] for e in filtered["events"]] == [stream_names(jobs["logs-a"])[1]] * 2
