"""``batchlane transform --engine sagemaker`` against moto's server, through a recording proxy.

What moto does not do, and so what these tests cannot show: moto's transform jobs are Completed the moment they are
created and run no inference (no container starts, nothing is written under the output path); moto does not check
that a role, an image or model data exist. What they do show is what batchlane sends: the staged model archive and
inputs in S3, CreateModel once per spec, and CreateTransformJob with the request the local engine would run.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

from tests.integration.engines.conftest import IMAGE, ROLE, SageMakerSetup, unique

ECHO = Path(__file__).parents[2] / "models" / "echo"


def _model_dir(tmp: Path) -> Path:
    folder = tmp / "echo-model"
    shutil.copytree(ECHO, folder)
    (folder / "weights.bin").write_bytes(b"\x00" * 64)
    return folder


def _inputs(tmp: Path) -> Path:
    folder = tmp / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("hello\nworld\n")
    (folder / "sub" / "b.txt").write_text("third\n")
    return folder


def _transform(
    sm: SageMakerSetup, name: str, model_dir: Path, inputs: Path, *extra: str
) -> tuple[int, str, str]:
    return sm.cli(
        "transform",
        "--engine", "sagemaker",
        "--name", name,
        "--model-dir", str(model_dir),
        "--input", f"{inputs}/",
        "--output", f"s3://{sm.bucket}/out/{name}/",
        "--content-type", "text/plain",
        "--split-type", "Line",
        "--upload-to", sm.staging,
        "--role", ROLE,
        *extra,
    )  # fmt: skip


def test_transform_stages_creates_the_model_once_and_starts_the_validated_job(sm: SageMakerSetup) -> None:
    model_dir, inputs = _model_dir(sm.tmp), _inputs(sm.tmp)
    name = unique("sm-first")
    code, out, err = _transform(sm, name, model_dir, inputs, "--image", IMAGE, "--max-payload-mb", "2")
    assert code == 0, err
    assert f"{name}: Completed" in out and f"batchlane jobs logs {name} --engine sagemaker" in out
    assert f"{name}: InProgress" in err or f"{name}: Completed" in err  # status changes as they were seen

    (model,) = sm.proxy.bodies("CreateModel")
    model_url = model["PrimaryContainer"]["ModelDataUrl"]
    assert model_url.startswith(f"s3://{sm.bucket}/staging/models/") and model_url.endswith("/model.tar.gz")
    assert model["PrimaryContainer"]["Image"] == IMAGE and model["ExecutionRoleArn"] == ROLE
    s3 = sm.boto("s3")
    archive = s3.get_object(Bucket=sm.bucket, Key=model_url.split("/", 3)[3])["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        assert sorted(tar.getnames()) == ["code/inference.py", "weights.bin"]

    (job,) = sm.proxy.bodies("CreateTransformJob")
    staged = job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
    assert staged.startswith(f"s3://{sm.bucket}/staging/inputs/") and staged.endswith("/")
    listed = s3.list_objects_v2(Bucket=sm.bucket, Prefix=staged.split("/", 3)[3])["Contents"]
    assert sorted(o["Key"].rsplit("/", 2)[-2:][-1] for o in listed) == ["a.txt", "b.txt"]
    assert job == {
        "TransformJobName": name,
        "ModelName": model["ModelName"],
        "MaxPayloadInMB": 2,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": staged}},
            "ContentType": "text/plain",
            "SplitType": "Line",
        },
        "TransformOutput": {"S3OutputPath": f"s3://{sm.bucket}/out/{name}/"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }

    # The same folder again: the same spec, so no second CreateModel and nothing uploaded again.
    sm.proxy.clear()
    second = unique("sm-second")
    code, out, err = _transform(
        sm, second, model_dir, inputs, "--image", IMAGE, "--instance-type", "ml.c5.xlarge"
    )
    assert code == 0, err
    assert sm.proxy.bodies("CreateModel") == []
    assert [p for p in sm.proxy.uploads() if "/staging/" in p] == []
    (job,) = sm.proxy.bodies("CreateTransformJob")
    assert job["TransformResources"] == {"InstanceType": "ml.c5.xlarge", "InstanceCount": 1}
    assert job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == staged

    # Another image for that model name: a conflict naming the field, and no job started.
    sm.proxy.clear()
    code, out, err = _transform(sm, unique("sm-third"), model_dir, inputs, "--image", IMAGE + "-v2")
    assert code == 1
    assert "already exists in SageMaker with a different spec: PrimaryContainer.Image" in err
    assert IMAGE + "-v2" in err and len(err.strip().splitlines()) == 1
    assert sm.proxy.bodies("CreateTransformJob") == [] and sm.proxy.bodies("CreateModel") == []


def test_the_request_is_validated_here_before_anything_reaches_aws(sm: SageMakerSetup) -> None:
    model_dir, inputs = _model_dir(sm.tmp), _inputs(sm.tmp)
    code, _, err = _transform(
        sm, unique("sm-bad"), model_dir, inputs, "--image", IMAGE, "--max-payload-mb", "101"
    )
    assert code == 2 and "MaxPayloadInMB" in err
    code, _, err = _transform(
        sm, unique("sm-opt"), model_dir, inputs, "--image", IMAGE, "--on-record-error", "skip"
    )
    assert code == 2 and "--on-record-error is batchlane's own option" in err
    code, _, err = sm.cli(
        "transform", "--engine", "sagemaker", "--model-dir", str(model_dir), "--input", f"{inputs}/",
        "--output", str(sm.tmp / "out"), "--image", IMAGE, "--role", ROLE, "--upload-to", sm.staging,
    )  # fmt: skip
    assert code == 2 and "SageMaker writes only to s3://" in err
    assert sm.proxy.calls == [] and sm.proxy.uploads() == []


def test_without_a_staging_prefix_a_local_model_is_refused_with_how_to_fix_it(sm: SageMakerSetup) -> None:
    code, _, err = sm.cli(
        "transform", "--engine", "sagemaker", "--model-dir", str(_model_dir(sm.tmp)),
        "--input", f"s3://{sm.bucket}/in/", "--output", f"s3://{sm.bucket}/out/", "--image", IMAGE, "--role", ROLE,
    )  # fmt: skip
    assert code == 2
    assert "--upload-to s3://BUCKET/PREFIX (or set BATCHLANE_SAGEMAKER_STAGING)" in err
    assert sm.proxy.bodies("CreateModel") == [] and sm.proxy.bodies("CreateTransformJob") == []


def test_s3_inputs_and_a_sagemaker_model_are_used_as_they_are(sm: SageMakerSetup) -> None:
    model = unique("existing")
    sm.boto("sagemaker").create_model(
        ModelName=model,
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": f"s3://{sm.bucket}/m/model.tar.gz"},
        ExecutionRoleArn=ROLE,
    )
    sm.proxy.clear()
    name = unique("sm-s3")
    code, out, err = sm.cli(
        "transform", "--engine", "sagemaker", "--name", name, "--model", model,
        "--input", f"s3://{sm.bucket}/in/part", "--output", f"s3://{sm.bucket}/out/", "--detach",
    )  # fmt: skip
    assert code == 0, err
    assert out.strip() == name  # --detach: the name, at once
    assert sm.proxy.bodies("CreateModel") == [] and sm.proxy.uploads() == []
    (job,) = sm.proxy.bodies("CreateTransformJob")
    assert job["ModelName"] == model
    assert job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{sm.bucket}/in/part"


def test_a_failed_job_exits_non_zero_with_its_failure_reason(sm: SageMakerSetup) -> None:
    """moto's jobs never fail, so the proxy answers DescribeTransformJob as SageMaker does for a failed job."""

    def failed(answer: dict) -> dict:
        return {**answer, "TransformJobStatus": "Failed", "FailureReason": "AlgorithmError: See job logs"}

    sm.proxy.rewrite["DescribeTransformJob"] = failed
    model = unique("existing")
    sm.boto("sagemaker").create_model(
        ModelName=model,
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": f"s3://{sm.bucket}/m/model.tar.gz"},
        ExecutionRoleArn=ROLE,
    )
    # DescribeTransformJob of a job that does not exist yet is an error answer, which the rewrite leaves alone.
    name = unique("sm-fails")
    code, out, _ = sm.cli(
        "transform", "--engine", "sagemaker", "--name", name, "--model", model,
        "--input", f"s3://{sm.bucket}/in/", "--output", f"s3://{sm.bucket}/out/",
    )  # fmt: skip
    assert code == 1
    assert f"{name}: Failed" in out and "reason: AlgorithmError: See job logs" in out
    code, out, _ = sm.cli("jobs", "wait", name, "--engine", "sagemaker")
    assert code == 1 and "reason: AlgorithmError: See job logs" in out


def test_a_job_name_sagemaker_has_is_not_started_again(sm: SageMakerSetup) -> None:
    model = unique("existing")
    sm.boto("sagemaker").create_model(
        ModelName=model,
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": f"s3://{sm.bucket}/m/model.tar.gz"},
        ExecutionRoleArn=ROLE,
    )
    name = unique("sm-dup")
    args = ["transform", "--engine", "sagemaker", "--name", name, "--model", model,
            "--input", f"s3://{sm.bucket}/in/", "--output", f"s3://{sm.bucket}/out/", "--detach"]  # fmt: skip
    assert sm.cli(*args)[0] == 0
    sm.proxy.clear()
    code, _, err = sm.cli(*args)
    assert code == 1 and f"transform job {name} already exists in SageMaker" in err
    assert sm.proxy.bodies("CreateTransformJob") == []  # moto would have replaced the job
    assert json.loads(json.dumps(sm.proxy.bodies("DescribeTransformJob")[0])) == {"TransformJobName": name}


def test_ctrl_c_in_the_foreground_sends_stop_and_follows_the_job_to_stopped(sm: SageMakerSetup) -> None:
    """As the local CLI: the first Ctrl-C stops the job, exit 130 (128 + SIGINT). moto's jobs are Completed at once and moto has no
    StopTransformJob, so the proxy shows the job InProgress until it got StopTransformJob, then Stopped."""
    import os
    import signal
    import threading

    sm.proxy.answer["StopTransformJob"] = (200, {})
    seen = []

    def running_until_stopped(answer: dict) -> dict:
        seen.append(answer["TransformJobName"])
        if len(seen) == 2:  # the first poll of the foreground loop: its handler is installed
            threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
        status = "Stopped" if sm.proxy.bodies("StopTransformJob") else "InProgress"
        return {**answer, "TransformJobStatus": status}

    sm.proxy.rewrite["DescribeTransformJob"] = running_until_stopped
    model = unique("existing")
    sm.boto("sagemaker").create_model(
        ModelName=model,
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": f"s3://{sm.bucket}/m/model.tar.gz"},
        ExecutionRoleArn=ROLE,
    )
    name = unique("sm-ctrl-c")
    code, out, err = sm.cli(
        "transform", "--engine", "sagemaker", "--name", name, "--model", model,
        "--input", f"s3://{sm.bucket}/in/", "--output", f"s3://{sm.bucket}/out/",
    )  # fmt: skip
    assert code == 130, err
    assert sm.proxy.bodies("StopTransformJob") == [{"TransformJobName": name}]
    assert f"stopping {name} (StopTransformJob)" in err
    assert f"{name}: InProgress" in err and f"{name}: Stopped" in err and f"{name}: Stopped" in out
