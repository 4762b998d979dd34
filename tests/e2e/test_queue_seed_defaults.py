"""A new user's first queue run, pasted from the docs: `models create default`, `queue send` with only the input
and output, `worker --burst`. No BATCHLANE_DEFAULT_* variable, no --model: the seed's defaults and the default model
name make it work. Real processes, a real SQLite queue and job store, a real `batchlane serve` of a tiny model.
"""

from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path

from batchlane.jobs.state import JobStatus
from batchlane.jobs.store import JobStore
from tests.integration.queue.test_worker_resend import results, seed_style_model
from tests.models import MODULE_CLI, run_cli

run = partial(run_cli, command=MODULE_CLI)  # `python -m batchlane`


def test_send_then_worker_burst_completes_with_no_settings(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BATCHLANE_", "AWS_ENDPOINT_URL"))}
    env["BATCHLANE_HOME"] = str(tmp_path / "home")
    (tmp_path / "data" / "in").mkdir(parents=True)
    (tmp_path / "data" / "in" / "letters.txt").write_text("my card was charged twice\nthank you\n")
    model_dir = seed_style_model(tmp_path / "my-model")

    created = run(["models", "create", "default", "--model-data", str(model_dir)], env, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    sent = run(["queue", "send", "--input", "data/in/", "--output", "data/out/", "--json"], env, cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr
    job_name = json.loads(sent.stdout)["job_name"]
    worked = run(["worker", "--burst", "--wait", "0", "--json"], env, cwd=tmp_path)
    assert worked.returncode == 0, worked.stderr

    [outcome] = json.loads(worked.stdout)["outcomes"]
    assert (outcome["action"], outcome["job_name"], outcome["job_status"]) == ("done", job_name, "Completed")
    output = (tmp_path / "data" / "out" / "letters.txt.out").read_text()
    assert results(output) == ["MY CARD WAS CHARGED TWICE", "THANK YOU"]

    # The same request sent again after it Completed: found, not run again.
    again = run(
        ["queue", "send", "--input", "data/in/", "--output", "data/out/", "--json"], env, cwd=tmp_path
    )
    assert json.loads(again.stdout)["job_name"] == job_name
    worked = run(["worker", "--burst", "--wait", "0", "--json"], env, cwd=tmp_path)
    [outcome] = json.loads(worked.stdout)["outcomes"]
    assert (outcome["job_name"], outcome["job_status"]) == (job_name, "Completed")
    store = JobStore(tmp_path / "home" / "batchlane.db")
    try:
        [job] = store.list_jobs(max_results=100)[0]
        assert (job.name, job.status, job.attempts) == (job_name, JobStatus.COMPLETED, 1)
    finally:
        store.close()
