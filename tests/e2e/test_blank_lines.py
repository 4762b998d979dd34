"""Blank lines are records on both sides: a `batchlane transform` job through the default classifier (`batchlane
serve` with a tiny BERT) answers each blank line with an empty result (docs/serving.md), under MultiRecord and
SingleRecord, so the `.out` file has one line per input line."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from pathlib import Path

import pytest

from batchlane.jobs.state import JobStatus
from batchlane.jobs.store import JobStore
from tests.models import CLI, cli_env

LABELS = {"billing", "fraud", "service"}
TEXTS = ["my card was charged twice", "", "hi", "", "someone opened an account in my name", ""]


def _input(content_type: str) -> str:
    if content_type == "text/csv":
        return "".join(f'"{text}"\n' if text else "\n" for text in TEXTS)
    return "".join(json.dumps({"text": text}) + "\n" if text else "\n" for text in TEXTS)


def _labels(lines: list[str], content_type: str) -> list[str | None]:
    """The label per output line, None where the line is the documented empty answer."""
    if content_type == "text/csv":
        return [next(csv.reader(io.StringIO(line)))[0] if line else None for line in lines]
    return [None if line == "null" else json.loads(line)["label"] for line in lines]


@pytest.mark.parametrize("content_type", ["application/jsonlines", "text/csv"])
@pytest.mark.parametrize("strategy", ["MultiRecord", "SingleRecord"])
def test_a_file_with_blank_lines_completes_with_one_answer_per_line(
    tiny_bert_dir: Path, tmp_path: Path, strategy: str, content_type: str
) -> None:
    env = cli_env(tmp_path / "home")
    subprocess.run(
        [*CLI, "models", "create", "clf", "--model-data", str(tiny_bert_dir), "--env", "BATCHLANE_DEVICE=cpu"],
        env=env, check=True, timeout=60, capture_output=True,
    )  # fmt: skip
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "tickets.txt").write_text(_input(content_type))

    done = subprocess.run(
        [*CLI, "transform", "--model", "clf", "--name", "blanks", "--input", f"{tmp_path}/in/",
         "--output", f"{tmp_path}/out/", "--content-type", content_type, "--accept", content_type,
         "--split-type", "Line", "--strategy", strategy, "--assemble-with", "Line", "--quiet"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip

    record = JobStore(env["BATCHLANE_DB"]).get_job("blanks")
    assert done.returncode == 0 and record.status is JobStatus.COMPLETED, (record.failure_reason, done.stderr)
    lines = (tmp_path / "out" / "tickets.txt.out").read_text().split("\n")
    assert lines[-1] == "", "the output ends with a newline"
    labels = _labels(lines[:-1], content_type)
    assert len(labels) == len(TEXTS)
    for text, label in zip(TEXTS, labels, strict=True):
        assert (label is None) if not text else (label in LABELS), (text, label)
    assert record.records_done == len(TEXTS)
