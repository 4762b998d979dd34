"""The CLI's exit codes and one-line errors, through the real `batchlane` command: a job that ends Failed exits
non-zero from `transform`, `jobs resume` and `demo`; typos exit 2 with click's hint; `jobs wait` exits by the job's
final state (docs/transform.md, "Exit codes and Ctrl-C")."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from batchlane.cli.main import main
from batchlane.engines import get_engine
from batchlane.examples.user_code import make_model_dir
from batchlane.jobs.state import JobStatus
from batchlane.jobs.store import JobStore
from tests.models import CLI, ECHO_DIR, echo_cli_env, run_cli, transform_request, write_files


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, str]:
    return echo_cli_env(tmp_path / "home")


def test_a_failed_job_exits_1_from_transform_and_from_jobs_resume(
    env: dict[str, str], tmp_path: Path
) -> None:
    source = write_files(tmp_path / "in", {"good.txt": "a\nb\n", "bad.txt": "x\npoison\n"})
    args = ["--model", "echo", "--input", source, "--content-type", "text/plain", "--split-type", "Line"]

    failed = run_cli(
        ["transform", *args, "--name", "fails", "--output", f"{tmp_path}/out/", "--retries", "0"], env
    )

    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "fails: Failed" in failed.stdout
    assert "retry the failed files: batchlane jobs resume fails" in failed.stdout
    assert (tmp_path / "out/good.txt.out").read_text() == "echo:a\necho:b\n"

    # `jobs resume` retries the failed file (the record is still poison) and exits 1 again, with a fresh summary.
    resumed = run_cli(["jobs", "resume", "fails"], env)
    assert resumed.returncode == 1, resumed.stdout + resumed.stderr
    assert "resuming fails (was Failed): 1 of 2 files already done" in resumed.stderr
    assert "fails: Failed" in resumed.stdout and "(0 this run)" in resumed.stdout
    brief = run_cli(["jobs", "resume", "fails", "--quiet"], env)
    assert (brief.returncode, brief.stdout.strip()) == (1, "fails: Failed")

    ok = run_cli(
        ["transform", "--model", "echo", "--input", f"{tmp_path}/in/good", "--output", f"{tmp_path}/ok2/",
         "--content-type", "text/plain", "--split-type", "Line", "--name", "all-good", "-q"],
        env,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr
    again = run_cli(["jobs", "resume", "all-good"], env)
    assert again.returncode == 0
    assert (
        again.stdout.strip() == "all-good: Completed; nothing to resume (`batchlane jobs results all-good`)"
    )


def test_a_failed_demo_exits_1(env: dict[str, str], tmp_path: Path) -> None:
    # The cheapest failing demo: a model whose model_fn raises, over 4 test rows.
    broken = make_model_dir("broken_model_fn", ECHO_DIR, tmp_path / "broken")

    result = run_cli(
        [
            "demo",
            "--model-dir",
            str(broken),
            "--limit",
            "4",
            "--files",
            "1",
            "--workdir",
            str(tmp_path / "demo"),
        ],
        env,
        timeout=300,
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Failed" in result.stdout
    assert "model container exited with code 1" in result.stdout


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["transform", "--inptu", "x"],
            "error: No such option: --inptu (Possible options: --input). Try 'batchlane transform --help' for help.",
        ),
        (
            ["transfrom"],
            "error: No such command 'transfrom'. Did you mean 'transform'? Try 'batchlane --help' for help.",
        ),
        (
            ["jobs", "wiat", "x"],
            "error: No such command 'wiat'. Did you mean 'wait'? Try 'batchlane jobs --help' for help.",
        ),
        (
            ["transform", "--concurrency", "many"],
            "error: Invalid value for '--concurrency': Input should be a valid integer, unable to parse string as an "
            "integer. Try 'batchlane transform --help' for help.",
        ),
    ],
    ids=["option", "command", "subcommand", "value"],
)
def test_a_usage_error_is_one_line_and_exit_2(
    args: list[str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(args)

    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines() == [line]


def test_a_usage_error_through_the_console_script(env: dict[str, str]) -> None:
    result = run_cli(["transform", "--inptu", "x"], env)

    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: No such option: --inptu (Possible options: --input). Try 'batchlane transform --help' for help."
    )
    assert result.stdout == ""


def test_jobs_wait_exits_by_the_final_state(env: dict[str, str], tmp_path: Path) -> None:
    store = JobStore(env["BATCHLANE_DB"])
    for name in ("done", "broken", "halted", "running"):
        get_engine("local", store).submit(
            transform_request(name, f"{tmp_path}/in/", f"{tmp_path}/out-{name}/")
        )
    store.transition("broken", JobStatus.FAILED, failure_reason="ClientError: something broke")
    store.request_stop("halted")
    store.transition("halted", JobStatus.STOPPED)

    failed = run_cli(["jobs", "wait", "broken"], env)
    assert (failed.returncode, failed.stdout) == (
        1,
        "broken: Failed\n  reason: ClientError: something broke\n",
    )
    stopped = run_cli(["jobs", "wait", "halted"], env)
    assert (stopped.returncode, stopped.stdout) == (3, "halted: Stopped\n")
    timed_out = run_cli(["jobs", "wait", "running", "--timeout", "0.5", "--poll", "0.1"], env)
    assert timed_out.returncode == 124
    assert timed_out.stderr.strip() == "running: still InProgress after 0.5 s"
    unknown = run_cli(["jobs", "wait", "nope"], env)
    assert unknown.returncode == 1 and "Could not find transform job" in unknown.stderr

    # A waiter sees the job end while it waits.
    waiter = subprocess.Popen(
        [*CLI, "jobs", "wait", "done", "--poll", "0.1"], env=env, stdout=subprocess.PIPE, text=True
    )
    time.sleep(1.0)
    assert waiter.poll() is None
    store.transition("done", JobStatus.COMPLETED)
    out, _ = waiter.communicate(timeout=30)
    assert (waiter.returncode, out) == (0, "done: Completed\n")
