"""`batchlane models` and `batchlane jobs` as subprocesses: the model registry, and list/describe/logs/stop of a
job running in the background (`batchlane transform --detach`)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from batchlane.jobs.state import FileState, JobStatus
from batchlane.jobs.store import JobStore
from tests.models import ECHO_DIR, cli_env, cli_ok, run_cli, temp_files, tree, wait_until, write_files


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path / "home")


def test_models_create_list_describe_delete(env: dict[str, str], tmp_path: Path) -> None:
    created = cli_ok(
        run_cli(
            ["models", "create", "echo", "--model-data", str(ECHO_DIR), "--env", "A=1", "--env", "B=two"], env
        )
    )
    assert created.stdout.strip() == "arn:aws:sagemaker:us-east-1:000000000000:model/echo"

    again = run_cli(
        ["models", "create", "echo", "--model-data", str(ECHO_DIR), "--env", "A=1", "--env", "B=two"], env
    )
    assert again.returncode == 1 and "already existing model" in again.stderr
    cli_ok(
        run_cli(
            [
                "models",
                "create",
                "echo",
                "--model-data",
                str(ECHO_DIR),
                "--env",
                "A=1",
                "--env",
                "B=two",
                "--exist-ok",
            ],
            env,
        )
    )
    different = run_cli(["models", "create", "echo", "--model-data", str(ECHO_DIR), "--exist-ok"], env)
    assert (
        different.returncode == 1
        and "different spec" in different.stderr
        and "environment" in different.stderr
    )
    cli_ok(run_cli(["models", "create", "remote", "--serve-url", "http://127.0.0.1:9/"], env))
    both = run_cli(
        ["models", "create", "both", "--model-data", str(ECHO_DIR), "--serve-url", "http://127.0.0.1:9"], env
    )
    assert both.returncode == 2 and "exactly one of" in both.stderr
    missing = run_cli(["models", "create", "missing", "--model-data", str(tmp_path / "nope")], env)
    assert missing.returncode == 2 and "does not exist" in missing.stderr

    listed = cli_ok(run_cli(["models", "list"], env)).stdout
    assert "echo" in listed and "remote" in listed and "http://127.0.0.1:9" in listed

    described = json.loads(cli_ok(run_cli(["models", "describe", "echo"], env)).stdout)
    assert described["ModelName"] == "echo"
    assert described["ModelArn"].endswith(":model/echo")
    assert described["PrimaryContainer"] == {
        "ModelDataUrl": ECHO_DIR.as_uri(),
        "Environment": {"A": "1", "B": "two"},
    }
    assert "CreationTime" in described
    remote = json.loads(cli_ok(run_cli(["models", "describe", "remote"], env)).stdout)
    assert remote["Batchlane"] == {"ServeUrl": "http://127.0.0.1:9"}

    assert cli_ok(run_cli(["models", "delete", "echo"], env)).stdout.strip() == "deleted model echo"
    gone = run_cli(["models", "describe", "echo"], env)
    assert gone.returncode == 1
    assert (
        gone.stderr.strip()
        == 'error: Could not find model "arn:aws:sagemaker:us-east-1:000000000000:model/echo".'
    )
    assert "echo" not in cli_ok(run_cli(["models", "list"], env)).stdout.replace("remote", "")


def _start_detached(
    env: dict[str, str], tmp_path: Path, name: str, files: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Create the echo model, write ``files`` under tmp_path/in, and start `transform --detach` ``name`` of them one
    record a request, the model sleeping 0.2 s each; the transform's result, asserted exit 0."""
    cli_ok(
        run_cli(
            ["models", "create", "echo", "--model-data", str(ECHO_DIR), "--env", "BATCHLANE_DEVICE=cpu"], env
        )
    )
    write_files(tmp_path / "in", files)
    return cli_ok(
        run_cli(
            ["transform", "--detach", "--model", "echo", "--name", name, "--input", f"{tmp_path}/in/",
             "--output", f"{tmp_path}/out/", "--content-type", "text/plain", "--split-type", "Line",
             "--strategy", "SingleRecord", "--env", "ECHO_BATCH_SLEEP_S=0.2"],
            env,
        )
    )  # fmt: skip


def test_jobs_list_describe_logs_and_stop_a_detached_job(env: dict[str, str], tmp_path: Path) -> None:
    files = {f"part-{i}.txt": f"{i}a\n{i}b\n" for i in range(16)}
    started = _start_detached(env, tmp_path, "background", files)
    store = JobStore(env["BATCHLANE_DB"])
    assert started.stdout.strip() == "background"
    wait_until(lambda: store.get_job("background").files_done >= 1, timeout=60)

    stopping = cli_ok(run_cli(["jobs", "stop", "background"], env))
    assert stopping.stdout.strip() in ("background: Stopping", "background: Stopped")
    final = wait_until(
        lambda: (job := store.get_job("background")).status.is_terminal and job, timeout=30, interval=0.1
    )
    assert final.status is JobStatus.STOPPED
    done = sorted(f.output_key for f in store.files("background", FileState.DONE))
    assert 1 <= len(done) < 16
    assert sorted(tree(tmp_path / "out")) == done
    assert temp_files(tmp_path / "out") == []
    assert (
        cli_ok(run_cli(["jobs", "stop", "background"], env)).stdout.strip() == "background: Stopped"
    )  # idempotent

    described = json.loads(cli_ok(run_cli(["jobs", "describe", "background"], env)).stdout)
    assert described["TransformJobStatus"] == "Stopped"
    assert described["Batchlane"]["Progress"]["FilesDone"] == len(done)
    assert described["Batchlane"]["Options"]["job"]["on_record_error"] == "fail"
    assert described["Environment"] == {"ECHO_BATCH_SLEEP_S": "0.2"}

    listed = json.loads(cli_ok(run_cli(["jobs", "list", "--json"], env)).stdout)
    (summary,) = listed["TransformJobSummaries"]
    assert summary["TransformJobName"] == "background"
    assert summary["TransformJobStatus"] == "Stopped"
    assert {"TransformJobArn", "CreationTime", "LastModifiedTime", "TransformEndTime"} <= set(summary)
    assert json.loads(cli_ok(run_cli(["jobs", "list", "--json", "--status", "Completed"], env)).stdout) == {
        "TransformJobSummaries": []
    }
    table = cli_ok(run_cli(["jobs", "list"], env)).stdout
    assert "background" in table and "Stopped" in table
    bad_status = run_cli(["jobs", "list", "--status", "Running"], env)
    assert bad_status.returncode == 2 and "StatusEquals" in bad_status.stderr

    log = cli_ok(run_cli(["jobs", "logs", "background"], env)).stdout
    assert "[sagemaker logs]: MaxConcurrentTransforms=2, MaxPayloadInMB=6, BatchStrategy=SINGLE_RECORD" in log
    assert "part-0.txt: done: 2 records, 0 failed" in log
    assert "[batchlane]: job Stopped" in log
    container_log = cli_ok(run_cli(["jobs", "logs", "background", "--container"], env)).stdout
    assert "POST /invocations" in container_log

    # A job no runner holds (its runner died, or none started it yet) is stopped by `jobs stop` itself.
    from batchlane.engines import get_engine
    from tests.models import transform_request

    get_engine("local", store).submit(
        transform_request("orphan", f"{tmp_path}/in/", f"{tmp_path}/orphan-out/")
    )
    assert cli_ok(run_cli(["jobs", "stop", "orphan"], env)).stdout.strip() == "orphan: Stopped"
    assert store.get_job("orphan").status is JobStatus.STOPPED
    assert not (tmp_path / "orphan-out").exists()

    unknown = run_cli(["jobs", "describe", "no-such-job"], env)
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == (
        "error: Could not find transform job 'arn:aws:sagemaker:us-east-1:000000000000:transform-job/no-such-job'."
    )


def test_a_detached_runner_ended_by_sigterm_leaves_the_job_for_the_orphan_sweep(
    env: dict[str, str], tmp_path: Path
) -> None:
    """SIGTERM to a background runner is a shutdown, not the user's stop: the job stays InProgress with a dead owner
    (never Stopped, which nothing resumes on its own), and `jobs resume --all` finishes it byte-identically."""
    import os
    import signal

    files = {f"part-{i}.txt": f"{i}a\n{i}b\n" for i in range(8)}
    _start_detached(env, tmp_path, "shutdown", files)
    store = JobStore(env["BATCHLANE_DB"])
    running = wait_until(lambda: (job := store.get_job("shutdown")).files_done >= 1 and job, timeout=60)
    pid = int(running.owner.split(":")[1])
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: _gone(pid), timeout=30, interval=0.1)

    assert store.get_job("shutdown").status is JobStatus.IN_PROGRESS
    assert temp_files(tmp_path / "out") == []
    resumed = cli_ok(run_cli(["jobs", "resume", "--all"], env))
    assert "shutdown: Completed" in resumed.stdout
    assert tree(tmp_path / "out") == {
        f"{name}.out": "".join(f"echo:{line}\n" for line in text.splitlines()).encode()
        for name, text in files.items()
    }


def _gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie nobody has reaped yet counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True
