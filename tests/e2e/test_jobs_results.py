"""`batchlane jobs results`: a job's outputs as a table, and exported to csv, jsonl or parquet, joined with the
input records when SplitType=Line (one row per file otherwise)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from batchlane.jobs.state import JobStatus
from batchlane.jobs.store import JobStore
from tests.models import cli_env, register_echo, run_cli, run_job, transform_request

INPUTS = {
    "a.jsonl": '{"t": "one"}\n{"t": "two"}\n{"t": "three"}\n',
    "sub/b.jsonl": '{"t": "four"}\n',
}
JOINED = [
    {"input_key": "a.jsonl", "record_index": 0, "input": '{"t": "one"}', "output": '{"echo": {"t": "one"}}'},
    {"input_key": "a.jsonl", "record_index": 1, "input": '{"t": "two"}', "output": '{"echo": {"t": "two"}}'},
    {
        "input_key": "a.jsonl",
        "record_index": 2,
        "input": '{"t": "three"}',
        "output": '{"echo": {"t": "three"}}',
    },
    {
        "input_key": "sub/b.jsonl",
        "record_index": 0,
        "input": '{"t": "four"}',
        "output": '{"echo": {"t": "four"}}',
    },
]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], Path]:
    """One store with two Completed jobs over the same inputs: ``lines`` (SplitType=Line) and ``whole`` (None)."""
    root = tmp_path_factory.mktemp("results")
    env = cli_env(root / "home", COLUMNS="200")
    for name, text in INPUTS.items():
        (root / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "in" / name).write_text(text)
    store = JobStore(env["BATCHLANE_DB"])
    register_echo(store)
    for name, split in (("lines", "Line"), ("whole", None)):
        request = transform_request(
            name, f"{root}/in/", f"{root}/out-{name}/", content_type="application/jsonlines", split_type=split
        )
        assert run_job(store, request).status is JobStatus.COMPLETED
    store.close()
    return env, root


def test_the_head_is_a_table_of_joined_rows(finished: tuple[dict[str, str], Path]) -> None:
    env, _ = finished

    result = run_cli(["jobs", "results", "lines", "--head", "2"], env)

    assert result.returncode == 0, result.stderr
    rows = [
        [cell.strip() for cell in re.split("[│┃]", line)[1:-1]]
        for line in result.stdout.splitlines()
        if line.startswith(("│", "┃"))
    ]
    assert rows == [
        ["input_key", "record_index", "input", "output"],
        ["a.jsonl", "0", '{"t": "one"}', '{"echo": {"t": "one"}}'],
        ["a.jsonl", "1", '{"t": "two"}', '{"echo": {"t": "two"}}'],
    ]


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "parquet"])
def test_export_joins_outputs_with_inputs(
    finished: tuple[dict[str, str], Path], tmp_path: Path, suffix: str
) -> None:
    env, _ = finished
    if suffix == "parquet":
        pytest.importorskip("pyarrow")
    target = tmp_path / f"results.{suffix}"

    result = run_cli(["jobs", "results", "lines", "--to", str(target)], env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote 4 rows to {target} ({suffix})"
    assert _read(target, suffix) == JOINED
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # no temp file left


def test_export_without_a_line_split_is_one_row_per_file(
    finished: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    env, _ = finished
    target = tmp_path / "whole.out-table"

    result = run_cli(["jobs", "results", "whole", "--to", str(target), "--format", "jsonl"], env)

    assert result.returncode == 0, result.stderr
    rows = _read(target, "jsonl")
    assert [(r["input_key"], r["record_index"], r["input"]) for r in rows] == [
        ("a.jsonl", None, None),
        ("sub/b.jsonl", None, None),
    ]
    assert rows[0]["output"].splitlines() == [r["output"] for r in JOINED[:3]]


def test_parquet_without_pyarrow_is_a_one_line_error_naming_the_extra(
    finished: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    env, _ = finished
    blocker = tmp_path / "no-pyarrow" / "pyarrow"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('No module named pyarrow')\n")
    path = str(tmp_path / "no-pyarrow") + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")

    result = run_cli(
        ["jobs", "results", "lines", "--to", str(tmp_path / "r.parquet")], {**env, "PYTHONPATH": path}
    )

    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: writing parquet needs pyarrow: pip install 'batchlane[results]' (or use a .csv or .jsonl file)"
    )
    assert not (tmp_path / "r.parquet").exists()


def test_an_unknown_suffix_says_how_to_name_the_format(
    finished: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    env, _ = finished

    result = run_cli(["jobs", "results", "lines", "--to", str(tmp_path / "r.txt")], env)

    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: cannot tell the format of {tmp_path / 'r.txt'} from its suffix; name it .parquet, .csv or .jsonl, "
        "or pass --format"
    )


def _read(path: Path, fmt: str) -> list[dict]:
    if fmt == "jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    if fmt == "csv":
        with open(path, newline="") as handle:
            return [{**row, "record_index": int(row["record_index"])} for row in csv.DictReader(handle)]
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()
