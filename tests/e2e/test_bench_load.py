"""Short versions of the load and soak benchmarks, asserting their invariants (never their timings).

bench/control_plane_load.py: 20 boto3 clients make 200 mixed SageMaker/SQS calls against a real `batchlane server`
while jobs run; no call may answer 5xx, no job or message may be lost or duplicated. bench/serve_soak.py: a real
`batchlane serve` with dynamic batching under constant load; open fds and RSS must not grow.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def bench(script: str, tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args, "--no-write", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert out.is_file(), done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert done.returncode == 0, (result["problems"], done.stdout[-3000:])
    assert result["problems"] == []
    return result


@pytest.mark.slow
def test_200_mixed_control_plane_calls_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    result = bench("control_plane_load.py", tmp_path, "--calls", "200", "--clients", "20", "--settle-s", "60")

    assert result["calls"] == 200
    answers = result["outcomes"]
    assert not [code for code in answers if not code.startswith(("200", "400"))], answers
    # The only 4xx is the repeated create of an accepted name, which must be refused.
    assert set(answers) <= {"200", "400 ResourceInUse"}, answers
    jobs = result["checks"]["jobs"]
    assert jobs["accepted"] > 0 and jobs["listed"] == jobs["accepted"]
    assert jobs["lost"] == jobs["listed_twice"] == jobs["second_create_accepted"] == []
    assert jobs["not_terminal"] == [] and jobs["completed_without_output"] == []
    assert set(jobs["by_status"]) <= {"Completed", "Stopped"}, jobs["by_status"]
    messages = result["checks"]["messages"]
    assert messages["sent"] > 0 and messages["received_and_deleted"] > 0
    assert messages["sent"] == messages["received_and_deleted"] + messages["still_in_queue"]
    assert messages["lost"] == messages["received_twice"] == messages["drained_after_delete"] == []
    assert messages["queue_after_drain"] == {"visible": 0, "in_flight": 0}
    assert result["server_tracebacks"] == 0


@pytest.mark.slow
def test_serve_under_constant_dynamic_batching_load_keeps_fds_and_rss_flat(
    tmp_path: Path, tiny_bert_dir: Path
) -> None:
    result = bench(
        "serve_soak.py", tmp_path, "--model-dir", str(tiny_bert_dir),
        "--duration", "12", "--warmup", "3", "--sample-s", "1", "--clients", "4",
        "--max-fd-growth", "4", "--max-rss-growth-mb", "64",
    )  # fmt: skip

    assert result["requests"] > 0 and result["errors"] == 0, result["statuses"]
    assert result["samples"] >= 8
    assert result["fds"]["max"] - result["fds"]["start"] <= 4
    assert result["rss_mb"]["end"] - result["rss_mb"]["start"] < 64
    assert result["threads"]["max"] - result["threads"]["start"] <= 4
