"""The ray engine on a two-node Ray cluster on this machine (``ray start --head`` + ``ray start --address``, one
CPU each), driven by the real CLI: the same outputs as the local engine, kill -9 of the driver then ``jobs resume``
(only uncommitted units are redone), and a worker node stopped mid-job (docs/ray.md)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchlane.jobs.parts import PartCheckpoint
from batchlane.jobs.state import JobStatus
from batchlane.jobs.store import JobStore
from tests.integration.engines.ray.cluster import LocalCluster, node_env, start_cluster
from tests.integration.engines.ray.conftest import write_lines
from tests.models import (
    CLI,
    echo_calls,
    job_log,
    register_echo,
    run_job_in_process,
    temp_files,
    transform_request,
    tree,
    wait_until,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    temp = Path(
        tempfile.mkdtemp(prefix="blrc-", dir="/tmp")
    )  # short: Ray's socket paths must fit in 107 bytes
    nodes = start_cluster(temp)
    try:
        yield nodes
    finally:
        nodes.stop()
        shutil.rmtree(temp, ignore_errors=True)


def _driver(store: JobStore, name: str, folder: Path, out: Path, address: str, model: str) -> list[str]:
    return [
        *CLI, "transform", "--name", name, "--model", model, "--input", f"{folder}/", "--output", f"{out}/",
        "--content-type", "text/plain", "--split-type", "Line", "--engine", "ray", "--address", address,
        "--replicas", "2", "--db", str(store.path), "-q",
    ]  # fmt: skip


def _expected(
    store: JobStore, folder: Path, out: Path, model: str, strategy: str | None = None
) -> dict[str, bytes]:
    request = transform_request(f"expected-{out.name}", f"{folder}/", f"{out}/", model=model)
    if strategy:
        request["BatchStrategy"] = strategy
    assert run_job_in_process(store, request).status is JobStatus.COMPLETED
    return tree(out)


def _replicas_done(store: JobStore, name: str) -> set[str]:
    """The replicas that committed a unit so far (from the job log's done lines)."""
    path = store.log_path(name)
    text = path.read_text() if path.exists() else ""
    return {line.rsplit("(", 1)[-1] for line in text.splitlines() if ": done:" in line}


def _done_lines(log: str) -> Counter[str]:
    return Counter(
        line.split(": done:")[0].rsplit("/", 1)[-1] for line in log.splitlines() if ": done:" in line
    )


def test_a_job_on_two_nodes_writes_the_local_engines_bytes(cluster: LocalCluster, tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    register_echo(store)
    folder = write_lines(tmp_path, {"a.txt": 40, "sub/b.txt": 3, "sub/c/d.txt": 9, "e.txt": 2})
    expected = _expected(store, folder, tmp_path / "expected", "echo")
    done = subprocess.run(
        _driver(store, "two-nodes", folder, tmp_path / "out", cluster.address, "echo"),
        env=node_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert tree(tmp_path / "out") == expected
    log = job_log(store, "two-nodes")
    assert "ray: 2 replicas (1 CPU, 0 GPU each) on a cluster of 2 CPU" in log


def test_kill_9_of_the_driver_then_jobs_resume_redoes_only_uncommitted_units(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """A large file in parts (BATCHLANE_PART_SIZE) and small whole files: after kill -9 and `jobs resume`, the
    records of the parts committed before the kill were sent to the model once, and each small file was committed
    once."""
    store = JobStore(tmp_path / "jobs.db")
    calls = tmp_path / "calls.jsonl"
    register_echo(store, name="slow", ECHO_BATCH_SLEEP_S="0.3", ECHO_LOG=str(calls))
    folder = write_lines(tmp_path, {"big.txt": 60, **{f"f{i}.txt": 3 for i in range(4)}})
    expected = _expected(store, folder, tmp_path / "expected", "slow", strategy="SingleRecord")
    calls.unlink()
    env = {**node_env(), "BATCHLANE_PART_SIZE": "180"}
    command = [
        *_driver(store, "resumed", folder, tmp_path / "out", cluster.address, "slow"),
        "--strategy",
        "SingleRecord",
    ]
    driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def committed_parts() -> list[PartCheckpoint]:
        return [p for p in store.parts("resumed", "big.txt") if p.done] if store.find_job("resumed") else []

    try:
        wait_until(lambda: len(committed_parts()) >= 2, timeout=180)
    finally:
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    before = committed_parts()
    parts = store.parts("resumed", "big.txt")
    assert store.get_job("resumed").status is JobStatus.IN_PROGRESS and 2 <= len(before) < len(parts)
    resumed = subprocess.run(
        [*CLI, "jobs", "resume", "resumed", "--db", str(store.path), "-q"],
        env=node_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert store.get_job("resumed").status is JobStatus.COMPLETED
    assert tree(tmp_path / "out") == expected and temp_files(tmp_path / "out") == []
    sent = Counter(call["body"].strip() for call in echo_calls(calls))
    lines = (folder / "big.txt").read_text().splitlines()
    for part in before:
        count = (
            parts[part.number + 1].first_index if part.number + 1 < len(parts) else len(lines)
        ) - part.first_index
        for line in lines[part.first_index : part.first_index + count]:
            assert sent[line] == 1, f"{line!r} of committed part {part.number} was sent again"
    assert all(sent[line] >= 1 for line in lines)
    done = _done_lines(job_log(store, "resumed"))
    assert set(done) == {"big.txt", *(f"f{i}.txt" for i in range(4))} and all(n == 1 for n in done.values())


def test_a_worker_node_stopped_mid_job_has_its_unit_rerun_elsewhere(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    store = JobStore(tmp_path / "jobs.db")
    register_echo(store, name="slow", ECHO_BATCH_SLEEP_S="1.5")
    folder = write_lines(tmp_path, {f"f{i:02d}.txt": 4 for i in range(12)})
    expected = _expected(store, folder, tmp_path / "expected", "slow")
    driver = subprocess.Popen(
        _driver(store, "node-lost", folder, tmp_path / "out", cluster.address, "slow"),
        env=node_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Both replicas (one per node) have committed a unit, so each is busy with its next one.
        wait_until(lambda: len(_replicas_done(store, "node-lost")) == 2, timeout=180)
        cluster.stop_node(cluster.nodes[1])  # the worker node
        _, err = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, err[-2000:]
    assert tree(tmp_path / "out") == expected and temp_files(tmp_path / "out") == []
    log = job_log(store, "node-lost")
    assert "re-running it on another replica" in log
    done = _done_lines(log)
    assert set(done) == {f"f{i:02d}.txt" for i in range(12)} and all(n == 1 for n in done.values())
