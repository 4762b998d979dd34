"""bench/gpu.py runs its GPU code path on a CPU too (CI has no GPU): a tiny random ModernBERT through the pipeline
baseline, the handler in-process and a real `batchlane transform` against `batchlane serve`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_benchmark_runs_on_cpu(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench/gpu.py"), "--device", "cpu", "--tiny", "--docs", "24", "--no-write",
         "--cache", str(tmp_path / "cache"), "--roofline-size", "64", "--roofline-seconds", "0.1"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "docs/s" not in line]
    assert [row.split(" | ")[0].lstrip("| ") for row in rows] == [
        "transformers pipeline, batch_size=32 (baseline)",
        "batchlane handler in-process (auto precision)",
        "batchlane transform end-to-end (defaults)",
    ]
    for row in rows:
        docs_per_s = float(row.split(" | ")[2])
        assert docs_per_s > 0
    assert "random ModernBERT (3 × 64), 24 CFPB documents" in result.stdout
    assert (tmp_path / "cache/modernbert-tiny-random/config.json").is_file()
