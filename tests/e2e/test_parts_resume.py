"""kill -9 of a real `batchlane transform` in the middle of a large file cut into parts (docs/parts.md), then
`batchlane jobs resume`: the parts committed before the kill are not sent to the model again, and the output is
byte for byte that of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from batchlane.jobs.state import JobStatus
from batchlane.jobs.store import JobStore
from tests.models import CLI, cli_ok, echo_calls, echo_cli_env, run_cli, tree, wait_until, write_files

pytestmark = pytest.mark.slow

LINES = 240


def test_kill_9_mid_file_then_resume_redoes_only_uncommitted_parts(tmp_path: Path) -> None:
    env = echo_cli_env(tmp_path / "home")
    calls = tmp_path / "calls.jsonl"
    text = "".join(f"r{i:04d}\n" for i in range(LINES))  # 6 bytes a line: 20 lines a 120-byte part
    request = {
        "TransformJobName": "parted",
        "ModelName": "echo",
        "BatchStrategy": "SingleRecord",
        "MaxConcurrentTransforms": 2,
        "Environment": {"ECHO_BATCH_SLEEP_S": "0.03", "ECHO_LOG": str(calls)},
        "TransformInput": {
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": write_files(tmp_path / "in", {"big.txt": text, "sub/small.txt": "s1\ns2\n"}),
                }
            },
            "ContentType": "text/plain",
            "SplitType": "Line",
        },
        "TransformOutput": {"S3OutputPath": f"{tmp_path}/out/", "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": "local", "InstanceCount": 1},
    }
    request_file = tmp_path / "request.json"
    request_file.write_text(json.dumps(request))
    store = JobStore(env["BATCHLANE_DB"])
    common = ["--part-size", "120", "--consolidate"]

    runner = subprocess.Popen(
        [*CLI, "transform", "--request", str(request_file), *common, f"{tmp_path}/parted.jsonl", "-q"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(
            lambda: store.find_job("parted") is not None and store.part_counts("parted")[0] >= 3,
            timeout=90,
            interval=0.02,
        )
        os.kill(runner.pid, signal.SIGKILL)
    finally:
        runner.wait(timeout=30)
    assert runner.returncode == -signal.SIGKILL
    assert store.get_job("parted").status is JobStatus.IN_PROGRESS
    plan = store.parts("parted", "big.txt")
    committed = [part for part in plan if part.done]
    assert len(plan) == LINES // 20 and 3 <= len(committed) < len(plan)
    assert not (tmp_path / "out/big.txt.out").exists()
    sent_before = len(echo_calls(calls))

    resumed = cli_ok(run_cli(["jobs", "resume", "parted", "--quiet"], env))
    assert resumed.stdout.strip() == "parted: Completed"

    # The model saw none of the committed parts' records again.
    done_lines = {f"r{i:04d}\n" for part in committed for i in range(part.first_index, part.first_index + 20)}
    resent = [call["body"] for call in echo_calls(calls)[sent_before:]]
    assert resent and not done_lines & set(resent)
    # The rest, plus the file after it, plus up to MaxConcurrentTransforms answers the killed runner's model
    # server was still logging when the count was taken.
    assert len(resent) <= LINES - len(done_lines) + 2 + 2

    cli_ok(
        run_cli(
            ["transform", "--request", str(request_file), "--name", "uninterrupted", "--output", f"{tmp_path}/ref/",
             *common, f"{tmp_path}/ref.jsonl", "-q"],
            env,
        )
    )  # fmt: skip
    assert tree(tmp_path / "out") == tree(tmp_path / "ref")
    assert sorted(tree(tmp_path / "out")) == ["big.txt.out", "sub/small.txt.out"]
    assert (tmp_path / "parted.jsonl").read_bytes() == (tmp_path / "ref.jsonl").read_bytes()
    final = store.get_job("parted")
    assert (final.attempts, final.files_done, final.records_done) == (2, 2, LINES + 2)
    assert final.bytes_done == final.bytes_total
    assert store.part_counts("parted") == (len(plan) + 1, len(plan) + 1)
