"""`batchlane serve` pip-installs a model's code/requirements.txt, as SageMaker does, into a cache outside its own
environment. Real `batchlane serve` subprocesses; the packages are tiny wheels built here and found with
``--no-index --find-links ./wheels`` in the requirements file, so no registry is needed."""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import socket
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from batchlane.jobs.state import JobStatus
from batchlane.jobs.store import JobStore
from batchlane.models import ModelRegistry, ModelSpec
from batchlane.serving.requirements import ensure_installed, site_dirs
from batchlane.testing import free_port, wait_for_http
from tests.models import CLI, ECHO_ENV, run_job, transform_request, wait_until

INFERENCE = """\
import reqdemo


def model_fn(model_dir):
    return reqdemo.VALUE


def transform_fn(model, input_data, content_type, accept):
    return model, "text/plain"
"""
LOCAL = "--no-index\n--find-links ./wheels\n"


def build_wheel(folder: Path, name: str, version: str, module: str) -> Path:
    """A pure-Python wheel holding one module ``<name>.py``, written without any build tool."""
    files = {
        f"{name}.py": module,
        f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{name}-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{name}-{version}.dist-info/RECORD,,")
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
        archive.writestr(f"{name}-{version}.dist-info/RECORD", "\n".join(record) + "\n")
    return wheel


def model_dir(root: Path, requirements: str) -> Path:
    """A model folder whose inference.py imports ``reqdemo``, which only its requirements provide."""
    code = root / "code"
    build_wheel(code / "wheels", "reqdemo", "0.1", "VALUE = 'hello from reqdemo'\n")
    (code / "inference.py").write_text(INFERENCE)
    (code / "requirements.txt").write_text(requirements)
    return root


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAGEMAKER_", "SM_", "BATCHLANE_"))}
    env.update(BATCHLANE_HOME=str(home), BATCHLANE_DEVICE="cpu", OMP_NUM_THREADS="1", **extra)
    return env


@pytest.fixture
def servers() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def _serve(
    started: list, model: Path, home: Path, *flags: str, **env: str
) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    process = subprocess.Popen(
        [*CLI, "serve", "--model-dir", str(model), "--host", "127.0.0.1", "--port", str(port), *flags],
        env=_env(home, **env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    started.append(process)
    return process, f"http://127.0.0.1:{port}"


def _stop(process: subprocess.Popen[str]) -> str:
    process.terminate()
    return process.communicate(timeout=30)[1]


def _cache(home: Path) -> list[str]:
    folder = home / "requirements"
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock")) if folder.is_dir() else []


def test_requirements_are_installed_once_and_reused(tmp_path: Path, servers: list) -> None:
    model = model_dir(tmp_path / "model", f"{LOCAL}reqdemo==0.1\n")
    process, url = _serve(servers, model, tmp_path / "home")
    wait_for_http(f"{url}/ping", timeout=90)
    answer = httpx.post(f"{url}/invocations", content="x", headers={"content-type": "text/plain"})
    assert (answer.status_code, answer.text) == (200, "hello from reqdemo")
    log = _stop(process)
    assert f"requirements: installing {model / 'code' / 'requirements.txt'}" in log
    (cached,) = _cache(tmp_path / "home")  # one folder, no temporary one left

    # The next start runs no pip: with the wheels gone, a pip run (--no-index) could not succeed.
    for wheel in (model / "code" / "wheels").iterdir():
        wheel.unlink()
    process, url = _serve(servers, model, tmp_path / "home")
    wait_for_http(f"{url}/ping", timeout=60)
    answer = httpx.post(f"{url}/invocations", content="x", headers={"content-type": "text/plain"})
    assert (answer.status_code, answer.text) == (200, "hello from reqdemo")
    log = _stop(process)
    assert "installing" not in log
    assert f"installed earlier in {tmp_path / 'home' / 'requirements' / cached}" in log
    assert _cache(tmp_path / "home") == [cached]

    # Nothing leaked into batchlane's own environment.
    outside = subprocess.run([sys.executable, "-c", "import reqdemo"], capture_output=True, text=True)
    assert outside.returncode == 1 and "No module named 'reqdemo'" in outside.stderr


def test_servers_starting_together_install_once(tmp_path: Path, servers: list) -> None:
    model = model_dir(tmp_path / "model", f"{LOCAL}reqdemo==0.1\n")
    started = [_serve(servers, model, tmp_path / "home") for _ in range(2)]
    for _, url in started:
        wait_for_http(f"{url}/ping", timeout=120)
        answer = httpx.post(f"{url}/invocations", content="x", headers={"content-type": "text/plain"})
        assert answer.text == "hello from reqdemo"
    logs = [_stop(process) for process, _ in started]
    # One pip run; the other server waited on the lock, or started after the folder was in place.
    assert sum("requirements: installing " in log for log in logs) == 1, logs
    assert any("another server installed" in log or "installed earlier" in log for log in logs), logs
    assert len(_cache(tmp_path / "home")) == 1


@pytest.mark.parametrize(
    ("requirements", "reason"),
    [
        (
            "--no-index\nnosuchpackage-batchlane==1.0\n",
            "No matching distribution found for nosuchpackage-batchlane==1.0",
        ),
        # A version of a package batchlane runs with (numpy) is refused, even when it is at hand.
        (
            f"{LOCAL}numpy==1.0\n",
            "The user requested numpy==1.0; The user requested (constraint) numpy==",
        ),
    ],
    ids=["missing-package", "replaces-numpy"],
)
def test_a_failed_install_is_one_line_naming_the_file(tmp_path: Path, requirements: str, reason: str) -> None:
    model = model_dir(tmp_path / "model", requirements)
    build_wheel(model / "code" / "wheels", "numpy", "1.0", "")
    home = tmp_path / "home"
    result = subprocess.run(
        [*CLI, "serve", "--model-dir", str(model), "--port", str(free_port())],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: installing {model / 'code' / 'requirements.txt'} failed: "), last
    assert reason in last and "Traceback" not in result.stderr
    assert _cache(home) == []  # nothing half-installed is kept: the next start tries again


@pytest.mark.parametrize(
    ("flags", "env"),
    [(["--no-install-requirements"], {}), ([], {"BATCHLANE_INSTALL_REQUIREMENTS": "false"})],
    ids=["flag", "variable"],
)
def test_turned_off_the_user_import_fails(tmp_path: Path, flags: list[str], env: dict[str, str]) -> None:
    model = model_dir(tmp_path / "model", f"{LOCAL}reqdemo==0.1\n")
    result = subprocess.run(
        [*CLI, "serve", "--model-dir", str(model), "--port", str(free_port()), *flags],
        env=_env(tmp_path / "home", **env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].endswith("ModuleNotFoundError: No module named 'reqdemo'")
    assert "requirements.txt not installed (--no-install-requirements)" in result.stderr
    assert _cache(tmp_path / "home") == []


def test_a_transform_job_fails_with_the_install_error(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    model = model_dir(tmp_path / "model", "--no-index\nnosuchpackage-batchlane==1.0\n")
    ModelRegistry(store).create(ModelSpec(name="needs-packages", model_data=str(model), environment=ECHO_ENV))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("x\n")
    request = transform_request("reqs", f"{tmp_path}/in/", f"{tmp_path}/out/", model="needs-packages")
    record = run_job(store, request)
    assert record.status is JobStatus.FAILED
    assert "requirements.txt failed: No matching distribution found for nosuchpackage-batchlane" in (
        record.failure_reason
    )


def test_sigterm_during_the_install_stops_pip_and_keeps_nothing(tmp_path: Path) -> None:
    import psutil

    home = tmp_path / "home"
    with socket.socket() as index:  # an index that accepts connections and never answers: pip waits on it
        index.bind(("127.0.0.1", 0))
        index.listen(8)
        url = f"http://127.0.0.1:{index.getsockname()[1]}/"
        model = model_dir(tmp_path / "model", f"--no-index\n--find-links {url}\nreqdemo==0.1\n")
        process = subprocess.Popen(
            [*CLI, "serve", "--model-dir", str(model), "--port", str(free_port())],
            env=_env(home),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            pip = wait_until(lambda: psutil.Process(process.pid).children(recursive=True), timeout=60)
            assert list((home / "requirements").glob(".*-*"))  # the temporary folder pip installs into
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 128 + signal.SIGTERM, stderr
    _, alive = psutil.wait_procs(pip, timeout=10)
    assert not alive  # pip did not outlive the server
    assert sorted(p.name for p in (home / "requirements").iterdir() if not p.name.endswith(".lock")) == []


def test_a_relative_home_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model_dir(tmp_path / "model", f"{LOCAL}reqdemo==0.1\n")
    monkeypatch.chdir(tmp_path)
    target = ensure_installed(Path("model/code/requirements.txt"), Path("home/requirements"))
    assert target.parent == tmp_path / "home" / "requirements"
    assert (site_dirs(target)[0] / "reqdemo.py").is_file()
