"""`batchlane jobs stop` on a job whose runner was SIGKILLed mid-file: the dead runner's half-written temp file must
not stay in the output folder, and the files it had committed stay as they were."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from batchlane.jobs.state import FileState, JobStatus
from batchlane.jobs.store import JobStore
from tests.models import CLI, ECHO_DIR, cli_env, temp_files, tree, wait_until


def test_stop_after_the_runner_was_killed_leaves_no_temp_file(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "home", BATCHLANE_DEVICE="cpu")
    subprocess.run(
        [*CLI, "models", "create", "echo", "--model-data", str(ECHO_DIR)], env=env, check=True, timeout=60
    )
    for i in range(3):
        path = tmp_path / "in" / f"part-{i}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{i}-{n}\n" for n in range(8 if i == 0 else 400)))
    out = tmp_path / "out"
    runner = subprocess.Popen(
        [*CLI, "transform", "--model", "echo", "--name", "killed", "--input", f"{tmp_path}/in/",
         "--output", f"{out}/", "--content-type", "text/plain", "--split-type", "Line",
         "--strategy", "SingleRecord", "--concurrency", "1", "--env", "ECHO_BATCH_SLEEP_S=0.05"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    store = JobStore(env["BATCHLANE_DB"])
    try:
        # Mid-file: the first file is committed and the second one's temp file is being written.
        wait_until(lambda: store.find_job("killed") and store.get_job("killed").files_done >= 1, timeout=120)
        wait_until(lambda: temp_files(out), timeout=60)
    finally:
        os.killpg(runner.pid, signal.SIGKILL)  # the runner and its model server die together, as in a crash
        runner.wait(timeout=30)
    assert temp_files(out), "the test needs a temp file left behind by the killed runner"
    committed = tree(out)

    stopped = subprocess.run(
        [*CLI, "jobs", "stop", "killed"], env=env, capture_output=True, text=True, timeout=60
    )

    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == "killed: Stopped"
    assert store.get_job("killed").status is JobStatus.STOPPED
    assert temp_files(out) == []
    assert tree(out) == {key: data for key, data in committed.items() if not key.endswith(".batchlane-tmp")}
    assert sorted(tree(out)) == sorted(f.output_key for f in store.files("killed", FileState.DONE))
