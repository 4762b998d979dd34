"""The batchlane image run as SageMaker runs it: `docker run IMAGE serve` and `docker run IMAGE train`."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from batchlane.testing import free_port, wait_for_http
from tests.container.conftest import build_image

TRAIN_ROWS = [
    ("my card was charged twice for one purchase", "billing"),
    ("the bill shows a fee I never agreed to", "billing"),
    ("they charged interest on a paid balance", "billing"),
    ("my statement has the wrong amount", "billing"),
    ("someone opened an account in my name", "fraud"),
    ("a stranger used my card number abroad", "fraud"),
    ("identity theft on my credit report", "fraud"),
    ("unauthorized withdrawals from my account", "fraud"),
    ("nobody answers the phone at the bank", "service"),
    ("the agent was rude and hung up", "service"),
    ("waited weeks for a reply to my letter", "service"),
    ("customer support never called back", "service"),
]


def readable_copy(model: Path, target: Path) -> Path:
    """A copy of a model folder that any user can read, as SageMaker extracts model data (pytest's dirs are 0700)."""
    shutil.copytree(model, target)
    for item in [target, *target.rglob("*")]:
        item.chmod(0o755 if item.is_dir() else 0o644)
    return target


def test_serve_answers_the_sagemaker_contract_as_the_image_user_and_stops_on_sigterm(
    batchlane_image: str, run_container, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    model = readable_copy(tiny_bert_dir, tmp_path / "model")
    port = free_port()
    env = {
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "SAGEMAKER_BATCH": "true",
        "SAGEMAKER_MAX_PAYLOAD_IN_MB": "1",
        "SAGEMAKER_BATCH_STRATEGY": "SINGLE_RECORD",
        "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "1",
        "SAGEMAKER_MODEL_SERVER_WORKERS": "2",
        "OMP_NUM_THREADS": "1",
    }
    container = run_container(batchlane_image, "serve", env=env, volumes={model: "/opt/ml/model:ro"})
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/ping", timeout=120)

    params = httpx.get(f"{url}/execution-parameters").json()
    assert params == {"MaxConcurrentTransforms": 1, "BatchStrategy": "SINGLE_RECORD", "MaxPayloadInMB": 1}
    answer = httpx.post(
        f"{url}/invocations",
        content="my card was charged twice\nsomeone stole my identity\n",
        headers={"content-type": "text/csv", "accept": "text/csv"},
    )
    assert answer.status_code == 200, answer.text
    rows = [line.split(",") for line in answer.text.splitlines()]  # text/csv: label,score per record
    assert len(rows) == 2 and {label for label, _ in rows} <= {"billing", "fraud", "service"}
    too_big = httpx.post(
        f"{url}/invocations", content=b"x" * (1024 * 1024 + 1), headers={"content-type": "text/csv"}
    )
    assert too_big.status_code == 413

    # SageMaker started it as root; the server itself runs as the image's unprivileged user.
    status = subprocess.run(
        [container.docker, "exec", container.id, "cat", "/proc/1/status"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "\nUid:\t1000\t" in status, status
    assert "SAGEMAKER_MODEL_SERVER_WORKERS=2: one process serves" in container.logs()

    # SIGTERM (docker stop): SageMaker SIGKILLs 30 s later; the server must be gone long before that.
    took = container.stop(grace_s=30)
    assert took < 10, f"docker stop took {took:.1f}s"
    assert container.inspect("{{.State.ExitCode}}") in ("0", "143")
    assert "Application shutdown complete" in container.logs()


def test_serve_stays_root_when_the_model_is_not_readable_by_the_image_user(
    batchlane_image: str, run_container, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    model = readable_copy(tiny_bert_dir, tmp_path / "model")
    (model / "config.json").chmod(0o600)  # a model.tar.gz made under umask 077
    port = free_port()
    container = run_container(
        batchlane_image,
        "serve",
        env={"SAGEMAKER_BIND_TO_PORT": str(port)},
        volumes={model: "/opt/ml/model:ro"},
    )
    wait_for_http(f"http://127.0.0.1:{port}/ping", timeout=120)
    assert "serving as root: /opt/ml/model is not readable by the user 'batchlane'" in container.logs()


def sagemaker_training_dir(root: Path, hyperparameters: dict, base_model: Path, rows) -> Path:
    """/opt/ml as SageMaker lays it out for a training job with channels `train` and `base_model`."""
    (root / "input" / "config").mkdir(parents=True)
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (root / "input" / "config" / "inputdataconfig.json").write_text(
        json.dumps({"train": {"ContentType": "text/csv"}, "base_model": {}})
    )
    train = root / "input" / "data" / "train"
    train.mkdir(parents=True)
    with (train / "complaints.csv").open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["complaint", "product"])
        writer.writerows(rows)
    shutil.copytree(base_model, root / "input" / "data" / "base_model")
    (root / "model").mkdir()
    (root / "output").mkdir()
    return root


def test_train_writes_the_model_sagemaker_uploads(
    batchlane_image: str, run_container, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    # SageMaker's SDK stringifies hyperparameters and adds sagemaker_* ones of its own.
    hyperparameters = {
        "epochs": "1",
        "batch-size": "4",
        "max_length": "32",
        "eval_fraction": "0.25",
        "text_column": "complaint",
        "label_column": "product",
        "sagemaker_job_name": "train-1",
    }
    opt_ml = sagemaker_training_dir(tmp_path / "opt_ml", hyperparameters, tiny_bert_dir, TRAIN_ROWS)
    container = run_container(
        batchlane_image, "train", env={"OMP_NUM_THREADS": "1"}, volumes={opt_ml: "/opt/ml"}
    )
    assert container.wait(timeout=300) == 0, container.logs()
    model = opt_ml / "model"
    config = json.loads((model / "config.json").read_text())
    assert sorted(config["id2label"].values()) == ["billing", "fraud", "service"]
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["n"] == 3  # a quarter of 12 rows held out
    assert (model / "model.safetensors").is_file()
    assert not (opt_ml / "output" / "failure").exists()


@pytest.mark.parametrize(
    ("hyperparameters", "rows", "reason"),
    [
        ({"epoch": "1"}, TRAIN_ROWS, "hyperparameter 'epoch' is not one of:"),
        ({"text_column": "complaint"}, TRAIN_ROWS, "complaints.csv"),
    ],
    ids=["typo-in-hyperparameter", "missing-label-column"],
)
def test_a_bad_training_job_writes_the_failure_file(
    batchlane_image: str, run_container, tiny_bert_dir: Path, tmp_path: Path, hyperparameters, rows, reason
) -> None:
    opt_ml = sagemaker_training_dir(tmp_path / "opt_ml", hyperparameters, tiny_bert_dir, rows)
    container = run_container(batchlane_image, "train", volumes={opt_ml: "/opt/ml"})
    assert container.wait(timeout=120) == 1
    failure = (opt_ml / "output" / "failure").read_text()
    assert reason in failure, failure
    assert len(failure.strip().splitlines()) == 1
    assert not any((opt_ml / "model").iterdir())


def test_a_second_build_reuses_every_cached_layer(batchlane_image: str) -> None:
    result = build_image(batchlane_image)
    assert result.returncode == 0, result.stderr
    steps = result.stdout.count("\nStep ")
    cached = result.stdout.count("Using cache")
    runs = [line for line in result.stdout.splitlines() if line.startswith("Step ") and " : RUN " in line]
    assert runs and cached >= len(runs), result.stdout[-3000:]
    assert steps > 0


def test_sigterm_stops_training_with_a_failure_file(
    batchlane_image: str, run_container, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    # StopTrainingJob sends SIGTERM; as PID 1 the trainer would ignore it without its own handler.
    hyperparameters = {
        "epochs": "100",
        "batch_size": "1",
        "text_column": "complaint",
        "label_column": "product",
    }
    opt_ml = sagemaker_training_dir(tmp_path / "opt_ml", hyperparameters, tiny_bert_dir, TRAIN_ROWS * 4)
    container = run_container(
        batchlane_image, "train", env={"OMP_NUM_THREADS": "1"}, volumes={opt_ml: "/opt/ml"}
    )
    deadline = time.monotonic() + 180
    while "training on " not in container.logs():
        assert time.monotonic() < deadline, container.logs()
        time.sleep(1)
    took = container.stop(grace_s=60)
    assert took < 20, f"docker stop took {took:.1f}s"
    assert container.inspect("{{.State.ExitCode}}") == "143"
    assert (opt_ml / "output" / "failure").read_text() == "training stopped by SIGTERM\n"
