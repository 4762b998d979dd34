"""The end-to-end demo behind ``make demo``: the dispute classifier over the CFPB test set as a batch transform.

1. Build the demo classifier on first use (cached; see ``training.demo_model``).
2. Write the labelled test rows as several JSON Lines files (``{"id", "text"}``), keeping the labels aside.
3. Register the model and run a transform on the embedded default (local folder store, SQLite job store), with
   ``JoinSource=Input`` and an ``OutputFilter`` so each output line carries the record's id and its prediction.
4. Read the ``.out`` files back and summarise: predictions per label, accuracy against the true labels, docs/s.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchlane.jobs.store import JobRecord, JobStore


@dataclass(frozen=True)
class DemoResult:
    """What the demo measured."""

    job: JobRecord
    output_dir: Path
    records: int
    correct: int
    predicted: Counter
    seconds: float
    model_dir: Path

    @property
    def accuracy(self) -> float:
        return self.correct / self.records if self.records else 0.0

    @property
    def docs_per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


def write_inputs(test_file: Path, input_dir: Path, files: int, limit: int | None) -> dict[str, str]:
    """Split the labelled rows of ``test_file`` into ``files`` JSON Lines inputs; returns id → true label."""
    from batchlane.training.data import load_labelled

    data = load_labelled(test_file, max_rows=limit)
    input_dir.mkdir(parents=True, exist_ok=True)
    for old in input_dir.glob("*.jsonl"):
        old.unlink()
    truth: dict[str, str] = {}
    per_file = -(-len(data.texts) // files)
    for part in range(files):
        rows = range(part * per_file, min(len(data.texts), (part + 1) * per_file))
        with open(input_dir / f"complaints-{part:03d}.jsonl", "w", encoding="utf-8") as out:
            for row in rows:
                record_id = f"cfpb-test-{row:05d}"
                truth[record_id] = data.labels[row]
                out.write(json.dumps({"id": record_id, "text": data.texts[row]}, ensure_ascii=False) + "\n")
    return truth


def demo_request(name: str, model_name: str, input_dir: Path, output_dir: Path) -> dict[str, Any]:
    """The CreateTransformJob request the demo runs (the same JSON boto3 would take)."""
    return {
        "TransformJobName": name,
        "ModelName": model_name,
        "MaxConcurrentTransforms": 2,
        "MaxPayloadInMB": 1,
        "BatchStrategy": "MultiRecord",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"{input_dir}/"}},
            "ContentType": "application/jsonlines",
            "SplitType": "Line",
        },
        "TransformOutput": {
            "S3OutputPath": f"{output_dir}/",
            "Accept": "application/jsonlines",
            "AssembleWith": "Line",
        },
        "DataProcessing": {"JoinSource": "Input", "OutputFilter": "$['id','SageMakerOutput']"},
        "TransformResources": {"InstanceType": "local", "InstanceCount": 1},
    }


def read_predictions(output_dir: Path) -> dict[str, str]:
    """id → predicted label from the ``.out`` files."""
    predictions: dict[str, str] = {}
    for path in sorted(output_dir.rglob("*.out")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                result = row["SageMakerOutput"]
                predictions[row["id"]] = (result[0] if isinstance(result, list) else result)["label"]
    return predictions


def run_demo(
    workdir: Path,
    store: JobStore,
    *,
    files: int = 4,
    limit: int | None = None,
    model_dir: Path | None = None,
    on_progress: Callable[[str, dict[str, Any]], None] | None = None,
) -> DemoResult:
    """Run the whole demo in ``workdir`` (inputs under ``input/``, outputs under ``output/``)."""
    from batchlane.engines import get_engine
    from batchlane.jobs.naming import timestamped_name
    from batchlane.models import ModelRegistry, ModelSpec
    from batchlane.training.demo_model import DEMO_TEST_FILE, demo_data_dir, ensure_demo_model

    model_dir = model_dir or ensure_demo_model()
    truth = write_inputs(demo_data_dir() / DEMO_TEST_FILE, workdir / "input", files, limit)
    spec = ModelSpec(name=f"dispute-classifier-{model_dir.name[-12:]}", model_data=str(model_dir))
    model = ModelRegistry(store).create(spec, exist_ok=True)
    output_dir = workdir / "output" / time.strftime("%Y%m%d-%H%M%S")
    name = timestamped_name("demo")
    engine = get_engine("local", store)
    engine.submit(demo_request(name, model.name, workdir / "input", output_dir))
    started = time.monotonic()
    job = engine.run(name, on_progress=on_progress)
    seconds = time.monotonic() - started
    predictions = read_predictions(output_dir)
    correct = sum(1 for key, label in predictions.items() if truth.get(key) == label)
    return DemoResult(
        job, output_dir, len(predictions), correct, Counter(predictions.values()), seconds, model_dir
    )
