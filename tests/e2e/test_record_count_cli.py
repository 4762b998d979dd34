"""Result counts and the CSV-header hint through the real `batchlane` command (subprocesses): a handler answering
once per mini-batch completes with a warning in `jobs logs` and `jobs describe`, `--record-count strict` fails it
with one line naming both counts, and a CSV header is named in the error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchlane.examples.user_code import make_model_dir
from tests.models import ECHO_DIR, cli_env, cli_ok, run_cli

HINT = "line 1 looks like a CSV header; pass --csv-header skip"


def _describe(name: str, env: dict[str, str]) -> dict:
    return json.loads(cli_ok(run_cli(["jobs", "describe", name], env)).stdout)


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, str]:
    """A fresh job store with the echo model and the ``per_batch`` user-code example registered through the CLI."""
    env = cli_env(tmp_path / "home")
    per_batch = make_model_dir("per_batch", ECHO_DIR, tmp_path / "per-batch")
    for name, model_dir in (("echo", ECHO_DIR), ("per-batch", per_batch)):
        cli_ok(
            run_cli(
                ["models", "create", name, "--model-data", str(model_dir), "--env", "BATCHLANE_DEVICE=cpu"],
                env,
            )
        )
    return env


def _per_batch_job(tmp_path: Path, name: str, *extra: str) -> list[str]:
    (tmp_path / "in").mkdir(exist_ok=True)
    (tmp_path / "in/a.txt").write_text("one\ntwo\nthree\n")
    return [
        "transform",
        "--name",
        name,
        "--model",
        "per-batch",
        "--input",
        f"{tmp_path}/in/",
        "--output",
        f"{tmp_path}/{name}/",
        "--content-type",
        "text/plain",
        "--split-type",
        "Line",
        "--quiet",
        *extra,
    ]


def test_once_per_mini_batch_completes_with_a_warning_in_logs_and_describe(
    env: dict[str, str], tmp_path: Path
) -> None:
    result = cli_ok(run_cli(_per_batch_job(tmp_path, "lenient"), env))

    assert "Completed" in result.stdout
    assert (tmp_path / "lenient/a.txt.out").read_text() == '{"predictions": [3, 3, 5]}\n'
    expected = (
        f"{(tmp_path / 'in/a.txt').as_uri()}: model returned 1 result for 3 records (application/json response) in "
        "the mini-batch of lines 1-3"
    )
    described = _describe("lenient", env)
    assert described["TransformJobStatus"] == "Completed"
    assert described["Batchlane"]["Warnings"] == {"Count": 1, "First": expected}
    assert described["Batchlane"]["Options"]["job"]["record_count"] == "lenient"
    logs = cli_ok(run_cli(["jobs", "logs", "lenient"], env)).stdout
    assert f"[batchlane]: warning: {expected}; the output holds the responses as returned" in logs


def test_strict_record_count_fails_with_one_line_naming_both_counts(
    env: dict[str, str], tmp_path: Path
) -> None:
    result = run_cli(_per_batch_job(tmp_path, "strict", "--record-count", "strict"), env)

    assert "Failed" in result.stdout, result.stdout + result.stderr
    reason = _describe("strict", env)["FailureReason"]
    assert "\n" not in reason
    assert (
        "a.txt: model returned 1 result for 3 records (application/json response) in the mini-batch of lines 1-3; "
        "record_count=strict needs one result per record" in reason
    )
    assert not (tmp_path / "strict/a.txt.out").exists()


def test_an_unknown_record_count_is_a_one_line_usage_error(env: dict[str, str], tmp_path: Path) -> None:
    result = run_cli(_per_batch_job(tmp_path, "sloppy", "--record-count", "sloppy"), env)

    assert result.returncode == 2
    assert (
        result.stderr.count("\n") == 1
        and "record_count" in result.stderr
        and "Traceback" not in result.stderr
    )


def test_a_csv_header_is_named_in_the_failure(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in/rows.csv").write_text("id,text\n1,a\n2,b\n")
    common = [
        "--model",
        "echo",
        "--input",
        f"{tmp_path}/in/",
        "--content-type",
        "text/csv",
        "--accept",
        "text/csv",
        "--split-type",
        "Line",
    ]

    joined = run_cli(
        [
            "transform",
            "--name",
            "joined",
            *common,
            "--output",
            f"{tmp_path}/joined/",
            "--join-source",
            "Input",
            "-q",
        ],
        env,
    )
    skipped = run_cli(
        [
            "transform",
            *("--name", "skipped", *common, "--output", f"{tmp_path}/skipped/", "--join-source", "Input"),
            *("--split-type", "Line", "--csv-header", "skip", "-q"),
        ],
        env,
    )

    assert "Failed" in joined.stdout, joined.stdout + joined.stderr
    reason = _describe("joined", env)["FailureReason"]
    assert (
        "model returned 2 results for 3 records" in reason
        and "JoinSource=Input needs one result per record" in reason
    )
    assert reason.endswith(f"(lines 1-3); {HINT}; see `batchlane jobs logs joined`")
    # Following the hint: the header heads the output, lined up with the columns.
    cli_ok(skipped)
    assert (tmp_path / "skipped/rows.csv.out").read_text() == "id,text,SageMakerOutput\n1,a,1|a\n2,b,2|b\n"
