"""The real `batchlane transform` / `batchlane jobs resume` commands as subprocesses: a boto3-shaped request file,
flags, validation errors, kill -9 and resume, `s3://` through moto's server, and the default classifier."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from batchlane.jobs.state import FileState, JobStatus
from batchlane.jobs.store import JobStore
from tests.models import (
    CLI,
    cli_env,
    cli_ok,
    echo_cli_env,
    put_echo_model,
    run_cli,
    temp_files,
    tree,
    wait_until,
    write_files,
)


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, str]:
    """A fresh BATCHLANE_HOME/job store with the echo model registered through the CLI."""
    return echo_cli_env(tmp_path / "home")


def _boto3_request(tmp_path: Path) -> dict:
    return {
        "TransformJobName": "from-request-file",
        "ModelName": "echo",
        "MaxConcurrentTransforms": 2,
        "ModelClientConfig": {"InvocationsTimeoutInSeconds": 60, "InvocationsMaxRetries": 1},
        "MaxPayloadInMB": 6,
        "BatchStrategy": "MultiRecord",
        "Environment": {"ECHO_LOG": str(tmp_path / "calls.jsonl")},
        "TransformInput": {
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": write_files(tmp_path / "in", {"a.csv": "1,x\n2,y\n"}),
                }
            },
            "ContentType": "text/csv",
            "CompressionType": "None",
            "SplitType": "Line",
        },
        "TransformOutput": {
            "S3OutputPath": f"{tmp_path}/from-file/",
            "Accept": "text/csv",
            "AssembleWith": "Line",
            "KmsKeyId": "alias/not-used-locally",
        },
        "TransformResources": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1},
        "DataProcessing": {"InputFilter": "$[1]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"},
        "Tags": [{"Key": "team", "Value": "search"}],
        "ExperimentConfig": {"ExperimentName": "batchlane-tests"},
    }


def test_request_file_is_a_boto3_request_and_flags_override_it(env: dict[str, str], tmp_path: Path) -> None:
    import boto3
    from botocore.validate import ParamValidator

    request = _boto3_request(tmp_path)
    # The very dict boto3's create_transform_job(**request) accepts.
    client = boto3.session.Session().client("sagemaker", region_name="us-east-1")
    shape = client.meta.service_model.operation_model("CreateTransformJob").input_shape
    assert not ParamValidator().validate(request, shape).has_errors()
    request_file = tmp_path / "request.json"
    request_file.write_text(json.dumps(request))

    result = cli_ok(
        run_cli(
            ["transform", "--request", str(request_file), "--name", "overridden", "--output", f"{tmp_path}/out/",
             "--strategy", "SingleRecord", "--source-headers", "-q"],
            env,
        )
    )  # fmt: skip

    assert "overridden: Completed" in result.stdout
    calls = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert sorted(call["source"] for call in calls) == [["a.csv", "0", "1"], ["a.csv", "1", "1"]]
    assert "files: 1 done, 0 failed, 1 total" in result.stdout
    assert tree(tmp_path / "out") == {"a.csv.out": b"1,x\n2,y\n"}
    assert not (tmp_path / "from-file").exists()
    described = json.loads(cli_ok(run_cli(["jobs", "describe", "overridden"], env)).stdout)
    assert described["TransformJobName"] == "overridden"
    assert described["TransformJobStatus"] == "Completed"
    assert described["BatchStrategy"] == "SingleRecord"
    assert described["TransformOutput"]["S3OutputPath"] == f"{tmp_path}/out/"
    assert described["DataProcessing"] == request["DataProcessing"]
    assert described["ModelClientConfig"] == request["ModelClientConfig"]
    assert "Tags" not in described  # DescribeTransformJob does not echo tags
    assert described["TransformJobArn"].endswith(":transform-job/overridden")


@pytest.mark.parametrize(
    ("args", "request_extra", "field"),
    [
        (["--max-payload-mb", "101"], {}, "'MaxPayloadInMB'"),
        (["--concurrency", "20", "--max-payload-mb", "6"], {}, "'MaxPayloadInMB'"),
        ([], {"MaxConcurentTransforms": 2}, "'MaxConcurentTransforms'"),
        (["--input-filter", "$[0:2,246:"], {}, "'DataProcessing.InputFilter'"),
        (["--name", "not_a_valid_name"], {}, "'TransformJobName'"),
    ],
    ids=["payload-limit", "payload-product", "unknown-field", "filter-syntax", "job-name"],
)
def test_a_validation_error_exits_2_with_one_line_naming_the_field(
    env: dict[str, str], tmp_path: Path, args: list[str], request_extra: dict, field: str
) -> None:
    request_file = tmp_path / "request.json"
    request_file.write_text(json.dumps({**_boto3_request(tmp_path), **request_extra}))

    result = run_cli(["transform", "--request", str(request_file), *args, "-q"], env)

    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert field in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "from-file").exists()
    assert JobStore(env["BATCHLANE_DB"]).list_jobs()[0] == []


def test_kill_9_mid_job_then_resume_gives_the_outputs_of_an_uninterrupted_run(
    env: dict[str, str], tmp_path: Path
) -> None:
    files = {f"part-{i}.txt": "".join(f"{i}-{n}\n" for n in range(4)) for i in range(6)}
    files["sub/more.txt"] = "m-0\nm-1\n"
    request = {
        "TransformJobName": "killed",
        "ModelName": "echo",
        "BatchStrategy": "SingleRecord",
        "Environment": {"ECHO_BATCH_SLEEP_S": "0.05"},
        "TransformInput": {
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": write_files(tmp_path / "in", files)}
            },
            "ContentType": "text/plain",
            "SplitType": "Line",
        },
        "TransformOutput": {"S3OutputPath": f"{tmp_path}/out/"},
        "TransformResources": {"InstanceType": "local", "InstanceCount": 1},
    }
    request_file = tmp_path / "request.json"
    request_file.write_text(json.dumps(request))
    store = JobStore(env["BATCHLANE_DB"])

    runner = subprocess.Popen(
        [
            *CLI,
            "transform",
            "--request",
            str(request_file),
            "--consolidate",
            f"{tmp_path}/killed.jsonl",
            "-q",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Kill while a file is half written: one file committed, the next one's temp output exists.
        wait_until(
            lambda: (
                (job := store.find_job("killed")) is not None
                and job.files_done >= 1
                and temp_files(tmp_path / "out")
            ),
            timeout=60,
            interval=0.02,
        )
        os.kill(runner.pid, signal.SIGKILL)
    finally:
        runner.wait(timeout=30)
    assert runner.returncode == -signal.SIGKILL
    killed = store.get_job("killed")
    assert killed.status is JobStatus.IN_PROGRESS
    committed = {f.input_key for f in store.files("killed", FileState.DONE)}
    assert 1 <= len(committed) < len(files)

    resumed = cli_ok(run_cli(["jobs", "resume", "killed", "--quiet"], env))
    assert resumed.stdout.strip() == "killed: Completed"

    cli_ok(
        run_cli(
            ["transform", "--request", str(request_file), "--name", "uninterrupted", "--output", f"{tmp_path}/ref/",
             "--consolidate", f"{tmp_path}/ref.jsonl", "-q"],
            env,
        )
    )  # fmt: skip
    assert tree(tmp_path / "out") == tree(tmp_path / "ref")
    assert len(tree(tmp_path / "out")) == len(files)
    assert temp_files(tmp_path / "out") == []
    assert (tmp_path / "killed.jsonl").read_bytes() == (tmp_path / "ref.jsonl").read_bytes()
    final = store.get_job("killed")
    assert final.attempts == 2
    # Counters are not double counted by the redone file.
    assert (final.files_done, final.records_done) == (len(files), 26)
    assert final.bytes_done == final.bytes_total


def test_s3_input_model_and_output_through_moto(tmp_path: Path, moto_server: str, s3_bucket: str) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    put_echo_model(s3, s3_bucket)
    s3.put_object(Bucket=s3_bucket, Key="in/a.txt", Body=b"one\ntwo\n")
    s3.put_object(Bucket=s3_bucket, Key="in/sub/b.txt", Body=b"three\n")
    s3.put_object(Bucket=s3_bucket, Key="in-other/c.txt", Body=b"not under in/\n")
    env = cli_env(tmp_path / "home", AWS_ENDPOINT_URL=moto_server)
    cli_ok(
        run_cli(
            ["models", "create", "echo-s3", "--model-data", f"s3://{s3_bucket}/models/echo/",
             "--env", "BATCHLANE_DEVICE=cpu"],
            env,
        )
    )  # fmt: skip

    result = run_cli(
        ["transform", "--model", "echo-s3", "--name", "on-s3", "--input", f"s3://{s3_bucket}/in/",
         "--output", f"s3://{s3_bucket}/out", "--content-type", "text/plain", "--split-type", "Line",
         "--consolidate", f"s3://{s3_bucket}/all/results.jsonl", "-q"],
        env,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    listed = s3.list_objects_v2(Bucket=s3_bucket, Prefix="out")
    assert sorted(item["Key"] for item in listed["Contents"]) == ["out/a.txt.out", "out/sub/b.txt.out"]
    body = s3.get_object(Bucket=s3_bucket, Key="out/a.txt.out")["Body"].read()
    assert body == b"echo:one\necho:two\n"
    assert s3.get_object(Bucket=s3_bucket, Key="out/sub/b.txt.out")["Body"].read() == b"echo:three\n"
    consolidated = s3.get_object(Bucket=s3_bucket, Key="all/results.jsonl")["Body"].read().decode()
    assert [json.loads(line) for line in consolidated.splitlines()] == [
        {"input_key": "in/a.txt", "record_index": 0, "line": 1, "output": "echo:one"},
        {"input_key": "in/a.txt", "record_index": 1, "line": 2, "output": "echo:two"},
        {"input_key": "in/sub/b.txt", "record_index": 0, "line": 1, "output": "echo:three"},
    ]
    assert not s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads")
    described = json.loads(cli_ok(run_cli(["jobs", "describe", "on-s3"], env)).stdout)
    assert described["Batchlane"]["Progress"]["RecordsDone"] == 3
    assert f"s3://{s3_bucket}/in/a.txt: done" in cli_ok(run_cli(["jobs", "logs", "on-s3"], env)).stdout


def test_the_default_classifier_runs_as_a_transform(tiny_bert_dir: Path, tmp_path: Path) -> None:
    env = cli_env(tmp_path / "home")
    texts = [
        "my card was charged twice",
        "the app keeps crashing",
        "someone used my account",
        "refund please",
    ]
    write_files(
        tmp_path / "in", {"tickets.csv": "".join(f"{t}\n" for t in texts), "more/extra.csv": "hello\n"}
    )

    result = run_cli(
        ["transform", "--model-dir", str(tiny_bert_dir), "--input", f"{tmp_path}/in/", "--output",
         f"{tmp_path}/out/", "--content-type", "text/csv", "--split-type", "Line", "--accept",
         "application/jsonlines", "--timeout", "60", "--startup-timeout", "90", "--name", "classify"],
        env,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert "classify: Completed" in result.stdout
    assert "records: 5 ok, 0 failed" in result.stdout
    rows = [json.loads(line) for line in (tmp_path / "out/tickets.csv.out").read_text().splitlines()]
    assert len(rows) == len(texts)
    assert all(row["label"] in {"billing", "fraud", "service"} and 0 <= row["score"] <= 1 for row in rows)
    assert len((tmp_path / "out/more/extra.csv.out").read_text().splitlines()) == 1
