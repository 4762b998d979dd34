"""The ray engine on a real local Ray (``ray.init(num_cpus=2)``): the same outputs as the local engine, stop, a
replica killed mid-unit, and a GPU request the cluster cannot host (docs/ray.md)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from batchlane.cli.main import main
from batchlane.engines import get_engine
from batchlane.jobs.state import FileState, JobStatus
from batchlane.jobs.store import JobStore
from tests.integration.engines.ray.conftest import write_gzip, write_jsonlines, write_lines
from tests.models import (
    job_log,
    register_echo,
    run_job_in_process,
    temp_files,
    transform_request,
    tree,
    wait_until,
)

pytestmark = pytest.mark.slow


def _run_ray(store: JobStore, request: dict[str, Any], options: dict[str, Any] | None = None) -> Any:
    engine = get_engine("ray", store)
    record = engine.submit(request, {"startup_timeout_s": 120, "engine": "ray", **(options or {})})
    return engine.run(record.name)


CASES: dict[str, dict[str, Any]] = {
    # A multi-file job with sub-folders, on two replicas, with consolidated output.
    "subfolders": {
        "write": lambda root: write_lines(
            root, {"a.txt": 30, "sub/b.txt": 7, "sub/deeper/c.txt": 12, "d.txt": 1}
        ),
        "request": {},
        "options": {"replicas": 2},
        "consolidate": True,
    },
    "gzip": {
        "write": lambda root: write_gzip(root, {"x.csv.gz": 25, "y.csv.gz": 3}),
        "request": {"content_type": "text/csv", "compression": "Gzip"},
        "options": {},
    },
    "join-with-filters": {
        "write": lambda root: write_jsonlines(root, {"rows.jsonl": 20, "more.jsonl": 4}),
        "request": {
            "content_type": "application/jsonlines",
            "accept": "application/jsonlines",
            "DataProcessing": {
                "InputFilter": "$.text",
                "JoinSource": "Input",
                "OutputFilter": "$['id','SageMakerOutput']",
            },
        },
        "options": {},
    },
}


@pytest.mark.parametrize("case", list(CASES))
def test_outputs_are_byte_identical_to_the_local_engine(ray_session: Any, tmp_path: Path, case: str) -> None:
    spec = CASES[case]
    store = JobStore(tmp_path / "jobs.db")
    register_echo(store)
    folder = spec["write"](tmp_path)
    results = {}
    for engine in ("local", "ray"):
        options = dict(spec["options"]) if engine == "ray" else {}
        if spec.get("consolidate"):
            options["consolidate"] = str(tmp_path / f"all-{engine}.jsonl")
        request = transform_request(
            f"{case}-{engine}", f"{folder}/", f"{tmp_path}/out-{engine}/", **spec["request"]
        )
        run = _run_ray if engine == "ray" else run_job_in_process
        record = run(store, request, options)
        assert record.status is JobStatus.COMPLETED, record.failure_reason
        results[engine] = record
    local, ray_out = tree(tmp_path / "out-local"), tree(tmp_path / "out-ray")
    assert ray_out == local and local and all(local.values())
    assert results["ray"].records_done == results["local"].records_done > 0
    if spec.get("consolidate"):
        assert (tmp_path / "all-ray.jsonl").read_bytes() == (tmp_path / "all-local.jsonl").read_bytes()
    log = job_log(store, f"{case}-ray")
    if spec["options"].get("replicas") == 2:
        assert "ray: 2 replicas" in log


def _slow_job(tmp_path: Path, name: str, files: int, sleep_s: str) -> tuple[JobStore, dict[str, Any]]:
    store = JobStore(tmp_path / "jobs.db")
    register_echo(store, name="slow", ECHO_BATCH_SLEEP_S=sleep_s)
    folder = write_lines(tmp_path, {f"f{i}.txt": 5 for i in range(files)})
    return store, transform_request(name, f"{folder}/", f"{tmp_path}/out/", model="slow")


def test_stop_mid_job_cancels_the_remaining_units(ray_session: Any, tmp_path: Path) -> None:
    store, request = _slow_job(tmp_path, "stopped", files=8, sleep_s="1")
    engine = get_engine("ray", store)
    engine.submit(request, {"engine": "ray", "replicas": 1})
    final: list[Any] = []
    runner = threading.Thread(target=lambda: final.append(engine.run("stopped")))
    runner.start()
    wait_until(lambda: store.get_job("stopped").files_done >= 1, timeout=120)
    asked = time.monotonic()
    engine.stop("stopped", finish_here=False)
    runner.join(timeout=60)
    assert not runner.is_alive() and time.monotonic() - asked < 20
    assert final[0].status is JobStatus.STOPPED
    done = {f.input_key for f in store.files("stopped", FileState.DONE)}
    outputs = {path.name for path in (tmp_path / "out").iterdir()}
    assert 1 <= len(done) < 8 and outputs == {f"{Path(key).name}.out" for key in done}
    assert temp_files(tmp_path / "out") == []


def test_a_replica_killed_mid_unit_has_its_unit_rerun_without_duplicates(
    ray_session: Any, tmp_path: Path
) -> None:
    ray = ray_session
    store, request = _slow_job(tmp_path, "killed", files=6, sleep_s="1.5")
    expected = run_job_in_process(
        store,
        {
            **request,
            "TransformJobName": "expected",
            "TransformOutput": {"S3OutputPath": f"{tmp_path}/expected/"},
        },
    )
    assert expected.status is JobStatus.COMPLETED
    engine = get_engine("ray", store)
    engine.submit(request, {"engine": "ray", "replicas": 2})
    final: list[Any] = []
    runner = threading.Thread(target=lambda: final.append(engine.run("killed")))
    runner.start()
    # Both replicas are busy with a unit once the log says the second is ready and a moment has passed.
    wait_until(
        lambda: store.log_path("killed").exists() and job_log(store, "killed").count(" ready") >= 2, 120
    )
    time.sleep(0.5)
    victim = next(name for name in ray.util.list_named_actors() if name.startswith("batchlane-killed-0-"))
    ray.kill(ray.get_actor(victim))
    runner.join(timeout=180)
    assert final and final[0].status is JobStatus.COMPLETED, final and final[0].failure_reason
    assert tree(tmp_path / "out") == tree(tmp_path / "expected")
    assert temp_files(tmp_path / "out") == []
    log = job_log(store, "killed")
    assert "died" in log and "re-running it on another replica" in log
    # Each file was committed once: one "done" line per input.
    assert sorted(
        line.split(": done:")[0].rsplit("/", 1)[-1] for line in log.splitlines() if ": done:" in line
    ) == [f"f{i}.txt" for i in range(6)]


def test_a_gpu_instance_type_on_a_cpu_cluster_fails_with_the_reason(ray_session: Any, tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    register_echo(store)
    folder = write_lines(tmp_path, {"a.txt": 3})
    request = transform_request("gpu", f"{folder}/", f"{tmp_path}/out/")
    request["TransformResources"] = {"InstanceType": "ml.g5.xlarge", "InstanceCount": 1}
    started = time.monotonic()
    record = _run_ray(store, request)
    assert record.status is JobStatus.FAILED and time.monotonic() - started < 30
    assert "has 0 GPUs and cannot host one replica that needs 1 GPU" in (record.failure_reason or "")


def test_gpus_per_replica_from_the_cli_on_a_cpu_cluster_fails_with_the_reason(
    ray_session: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = JobStore(tmp_path / "jobs.db")
    register_echo(store)
    folder = write_lines(tmp_path, {"a.txt": 3})
    args = [
        "transform",
        "--name",
        "gpu-cli",
        "--model",
        "echo",
        "--input",
        f"{folder}/",
        "--output",
        f"{tmp_path}/out/",
        "--content-type",
        "text/plain",
        "--split-type",
        "Line",
        "--engine",
        "ray",
        "--gpus-per-replica",
        "1",
        "--db",
        str(store.path),
        "-q",
    ]
    with pytest.raises(SystemExit) as ended:
        main(args)
    assert ended.value.code == 1
    record = store.get_job("gpu-cli")
    assert record.options["job"]["engine"] == "ray" and "has 0 GPUs" in (record.failure_reason or "")


def test_an_unknown_engine_is_refused_naming_the_choices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as ended:
        main(
            [
                "transform",
                "--engine",
                "spark",
                "--model",
                "m",
                "--input",
                str(tmp_path),
                "--output",
                str(tmp_path / "o"),
                "--db",
                str(tmp_path / "jobs.db"),
            ]
        )
    assert ended.value.code != 0
    assert "engine 'spark' is not one of local, ray" in capsys.readouterr().err


def test_a_large_line_file_is_cut_into_parts_and_assembled_byte_identically(
    ray_session: Any, tmp_path: Path
) -> None:
    store = JobStore(tmp_path / "jobs.db")
    register_echo(store)
    folder = write_lines(tmp_path, {"big.txt": 400, "small.txt": 3})
    request = transform_request("whole", f"{folder}/", f"{tmp_path}/out-whole/", MaxPayloadInMB=1)
    request["BatchStrategy"] = "SingleRecord"
    expected = run_job_in_process(store, request, {"consolidate": str(tmp_path / "all-whole.jsonl")})
    assert expected.status is JobStatus.COMPLETED
    parted = {
        **request,
        "TransformJobName": "parted",
        "TransformOutput": {"S3OutputPath": f"{tmp_path}/out-ray/"},
    }
    options = {"replicas": 2, "part_size": 1200, "consolidate": str(tmp_path / "all-ray.jsonl")}
    record = _run_ray(store, parted, options)
    assert record.status is JobStatus.COMPLETED, record.failure_reason
    parts = store.parts("parted", "in/big.txt") or store.parts("parted", "big.txt")
    assert len(parts) > 3 and all(part.done for part in parts)
    assert tree(tmp_path / "out-ray") == tree(tmp_path / "out-whole")  # no staged part left behind either
    assert (tmp_path / "all-ray.jsonl").read_bytes() == (tmp_path / "all-whole.jsonl").read_bytes()
    assert record.records_done == expected.records_done == 403
    assert f"ray: {len(parts) + 1} work units (2 files)" in job_log(store, "parted")


def test_a_bad_record_in_a_late_part_fails_its_file_as_on_the_local_engine(
    ray_session: Any, tmp_path: Path
) -> None:
    store = JobStore(tmp_path / "jobs.db")
    register_echo(store)
    folder = write_lines(tmp_path, {"a.txt": 5, "big.txt": 200})
    big = (folder / "big.txt").read_text().splitlines(keepends=True)
    big[170] = "poison\n"
    (folder / "big.txt").write_text("".join(big))
    records = {}
    for engine in ("local", "ray"):
        request = transform_request(f"bad-{engine}", f"{folder}/", f"{tmp_path}/out-{engine}/")
        request["BatchStrategy"] = "SingleRecord"
        if engine == "local":
            records[engine] = run_job_in_process(store, request)
        else:
            records[engine] = _run_ray(store, request, {"replicas": 2, "part_size": 600})
    assert records["ray"].status is records["local"].status is JobStatus.FAILED
    reasons = {
        engine: (record.failure_reason or "").replace(f"bad-{engine}", "JOB")
        for engine, record in records.items()
    }
    assert reasons["ray"] == reasons["local"]
    assert "big.txt" in (records["ray"].failure_reason or "")
    assert len(store.parts("bad-ray", "big.txt")) > 3
    # The good file is committed; the failed one has no output and no staged part left behind.
    assert tree(tmp_path / "out-ray") == tree(tmp_path / "out-local") and list(
        tree(tmp_path / "out-ray")
    ) == ["a.txt.out"]


def test_orphan_sweeps_resume_each_job_on_its_own_engine(ray_session: Any, tmp_path: Path) -> None:
    """A local sweep (the local engine's ``recover``, which the worker and the control plane run) leaves a Ray job
    alone; ``jobs resume --all`` resumes the local orphan on the local engine and the Ray orphan on Ray."""
    store = JobStore(tmp_path / "jobs.db")
    register_echo(store)
    folder = write_lines(tmp_path, {"a.txt": 4})
    local = get_engine("local", store)
    local.submit(
        transform_request("on-local", f"{folder}/", f"{tmp_path}/out-local/"), {"startup_timeout_s": 120}
    )
    ray_engine = get_engine("ray", store)
    ray_engine.submit(
        transform_request("on-ray", f"{folder}/", f"{tmp_path}/out-ray/"),
        {"startup_timeout_s": 120, "engine": "ray"},
    )
    # Neither was ever claimed: both are orphans. The local sweep takes only its own.
    assert [record.name for record in local.recover()] == ["on-local"]
    assert store.get_job("on-local").status is JobStatus.COMPLETED
    assert store.get_job("on-ray").status is JobStatus.IN_PROGRESS

    with pytest.raises(SystemExit) as ended:
        main(["jobs", "resume", "--all", "--db", str(tmp_path / "jobs.db")])
    assert ended.value.code == 0
    assert store.get_job("on-ray").status is JobStatus.COMPLETED
    assert "[batchlane]: ray:" in job_log(store, "on-ray")
    assert "[batchlane]: ray:" not in job_log(store, "on-local")
    assert tree(tmp_path / "out-ray") == tree(tmp_path / "out-local")
