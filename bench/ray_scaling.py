"""The ray engine's scaling table (docs/ray.md): the same transform job on the local engine and on a local Ray with
1 and 2 replicas, for a model that waits (the echo test model sleeping per request: replicas overlap even on a
busy 2-core box) and for the demo dispute classifier (CPU bound: replicas share the cores).

    python bench/ray_scaling.py                      # both models, replicas 1 and 2
    python bench/ray_scaling.py --docs 400 --replicas 1,2,4 --models classifier

``seconds`` is the job's wall time from ``run`` to its end, replica start-up included; ``after ready`` starts when
the first replica answers (the second may still be loading its model then). The demo classifier is built on first
use (``training.demo_model``; set BATCHLANE_HOME to reuse a cached one).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO)]

from batchlane.engines import get_engine  # noqa: E402
from batchlane.jobs.store import JobStore  # noqa: E402
from batchlane.models import ModelRegistry, ModelSpec  # noqa: E402

SLEEP_S = 0.25  # the echo model's sleep per request


def _sleep_job(work: Path, store: JobStore, files: int, lines: int) -> tuple[dict[str, Any], int]:
    from tests.models import ECHO_DIR, ECHO_ENV, transform_request

    env = {**ECHO_ENV, "ECHO_BATCH_SLEEP_S": str(SLEEP_S)}
    ModelRegistry(store).create(
        ModelSpec(name="sleepy", model_data=str(ECHO_DIR), environment=env), exist_ok=True
    )
    folder = work / "in-sleep"
    folder.mkdir()
    for i in range(files):
        (folder / f"f{i}.txt").write_text("".join(f"file {i} line {j}\n" for j in range(lines)))
    # SingleRecord, one request at a time per replica: each file takes lines x SLEEP_S on one replica.
    request = transform_request("sleep", f"{folder}/", f"{work}/out-sleep/", model="sleepy")
    return {**request, "BatchStrategy": "SingleRecord", "MaxConcurrentTransforms": 1}, files * lines


def _classifier_job(work: Path, store: JobStore, docs: int, files: int) -> tuple[dict[str, Any], int]:
    from batchlane.demo import demo_request, write_inputs
    from batchlane.training.demo_model import DEMO_TEST_FILE, demo_data_dir, ensure_demo_model

    model_dir = ensure_demo_model()
    truth = write_inputs(demo_data_dir() / DEMO_TEST_FILE, work / "in-classifier", files, docs)
    ModelRegistry(store).create(ModelSpec(name="classifier", model_data=str(model_dir)), exist_ok=True)
    return demo_request("classifier", "classifier", work / "in-classifier", work / "out-classifier"), len(
        truth
    )


def _run(store: JobStore, request: dict[str, Any], engine: str, replicas: int, tag: str) -> dict[str, float]:
    name = f"{request['TransformJobName']}-{tag}"
    output = request["TransformOutput"]["S3OutputPath"].rstrip("/") + f"-{tag}/"
    job = {
        **request,
        "TransformJobName": name,
        "TransformOutput": {**request["TransformOutput"], "S3OutputPath": output},
    }
    options = {"engine": engine, "replicas": replicas} if engine == "ray" else {}
    runner = (
        get_engine(engine, store, invoker="in_process") if engine == "local" else get_engine(engine, store)
    )
    runner.submit(job, {"startup_timeout_s": 600, **options})
    ready: list[float] = []
    started = time.perf_counter()
    record = runner.run(
        name, on_progress=lambda event, data: ready.append(time.perf_counter()) if event == "ready" else None
    )
    ended = time.perf_counter()
    if record.status.value != "Completed":
        raise SystemExit(f"{name}: {record.status.value}: {record.failure_reason}")
    return {"seconds": ended - started, "after_ready": ended - (ready[0] if ready else started)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", default="sleep,classifier", help="sleep, classifier or both (comma-separated)"
    )
    parser.add_argument("--replicas", default="1,2", help="ray pool sizes to measure (comma-separated)")
    parser.add_argument("--docs", type=int, default=300, help="classifier documents (default 300)")
    parser.add_argument(
        "--files", type=int, default=4, help="input files per job (the work units; default 4)"
    )
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ray

    temp = tempfile.mkdtemp(prefix="blbench-", dir="/tmp")
    ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ray-scaling-") as scratch:
        work = Path(scratch)
        store = JobStore(work / "jobs.db")
        for model in args.models.split(","):
            if model == "sleep":
                request, records = _sleep_job(work, store, files=args.files * 2, lines=8)
            else:
                request, records = _classifier_job(work, store, args.docs, args.files)
            runs = [("local", 1)] + [("ray", int(n)) for n in args.replicas.split(",")]
            for engine, replicas in runs:
                result = _run(store, request, engine, replicas, f"{engine}{replicas}")
                rows.append(
                    {"model": model, "engine": engine, "replicas": replicas, "records": records, **result}
                )
                print(f"{model} {engine} x{replicas}: {result['seconds']:.1f} s", file=sys.stderr, flush=True)
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)
    print("| model | engine | replicas | records | seconds | records/s | after first ready: s | records/s |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['model']} | {row['engine']} | {row['replicas']} | {row['records']} | {row['seconds']:.1f} | "
            f"{row['records'] / row['seconds']:.1f} | {row['after_ready']:.1f} | "
            f"{row['records'] / row['after_ready']:.1f} |"
        )
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
