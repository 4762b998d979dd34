"""The real `batchlane serve` and `batchlane package` commands, started as subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from batchlane.examples.user_code import example_path, make_model_dir
from batchlane.testing import free_port, wait_for_http
from tests.models import CLI, run_cli


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAGEMAKER_", "SM_", "BATCHLANE_"))}
    env.update(
        OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", BATCHLANE_HOME=str(tmp_path)
    )
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def archive(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model.tar.gz built by the real `batchlane package` command."""
    out = tmp_path_factory.mktemp("package") / "model.tar.gz"
    result = run_cli(
        [
            "package",
            "--model-dir",
            str(tiny_bert_dir),
            "--code",
            str(example_path("without_context")),
            "-o",
            str(out),
        ],
        _env(out.parent),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    return out


def test_package_layout(archive: Path, tiny_bert_dir: Path) -> None:
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert names == {p.name for p in tiny_bert_dir.iterdir()} | {"code/inference.py"}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def _serve(
    processes: list, model: Path, tmp_path: Path, *flags: str, **env: str
) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    process = subprocess.Popen(
        [*CLI, "serve", "--model-dir", str(model), "--host", "127.0.0.1", "--port", str(port), *flags],
        env=_env(tmp_path, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    processes.append(process)
    return process, f"http://127.0.0.1:{port}"


def test_serve_an_archive_then_stop_on_sigterm(archive: Path, tmp_path: Path, served: list) -> None:
    process, url = _serve(served, archive, tmp_path)
    wait_for_http(f"{url}/ping", timeout=60)
    response = httpx.post(
        f"{url}/invocations",
        content="fraud!\nservice\nhi\n",
        headers={"content-type": "text/csv", "accept": "text/csv"},
    )
    assert (response.status_code, response.text) == (200, "fraud\nservice\nbilling\n")
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    # uvicorn finishes in-flight work, then re-raises the signal so the exit status says "terminated".
    assert process.returncode in (0, -signal.SIGTERM), stderr
    assert "Application shutdown complete" in stderr
    assert "loaded user module" in stderr and "inference.py" in stderr


def test_serve_default_handler_with_flags(tiny_modernbert_dir: Path, tmp_path: Path, served: list) -> None:
    _, url = _serve(
        served, tiny_modernbert_dir, tmp_path, "--top-k", "2", "--max-length", "16", "--threads", "1"
    )
    wait_for_http(f"{url}/ping", timeout=60)
    body = "".join(json.dumps({"text": t}) + "\n" for t in ["one", "two words", "three words here"])
    response = httpx.post(
        f"{url}/invocations",
        content=body,
        headers={"content-type": "application/jsonlines", "accept": "application/jsonlines"},
    )
    records = [json.loads(line) for line in response.text.splitlines()]
    assert len(records) == 3 and all(len(ranked) == 2 for ranked in records)


def test_model_load_failure_exits_non_zero(tiny_bert_dir: Path, tmp_path: Path, served: list) -> None:
    model = make_model_dir("broken_model_fn", tiny_bert_dir, tmp_path / "broken")
    process, _ = _serve(served, model, tmp_path)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1
    assert stderr.strip().splitlines()[-1] == (
        "error: the model failed to load: model_fn raised RuntimeError: weights are corrupt (on purpose)"
    )
    assert "Traceback" in stderr  # the log keeps the traceback


@pytest.mark.parametrize(
    ("example", "env", "message"),
    [
        ("mixed", {}, "defines transform_fn and predict_fn"),
        ("without_context", {"SAGEMAKER_PROGRAM": "missing.py"}, "SAGEMAKER_PROGRAM=missing.py but"),
    ],
)
def test_start_up_errors_are_one_line(
    example: str, env: dict[str, str], message: str, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    model = make_model_dir(example, tiny_bert_dir, tmp_path / example)
    serve = ["serve", "--model-dir", str(model), "--port", str(free_port())]
    result = run_cli(serve, _env(tmp_path, **env), timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert message in result.stderr and "Traceback" not in result.stderr


def test_serve_help_lists_every_option(tmp_path: Path) -> None:
    result = run_cli(["serve", "--help"], _env(tmp_path), timeout=30)
    for option in ("--model-dir", "--host", "--port", "--max-length", "--token-budget", "--device", "--precision",
                   "--top-k", "--threads"):  # fmt: skip
        assert option in result.stdout
