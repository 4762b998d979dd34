"""The how-tos run as written: their bash blocks through the real `batchlane` command, their Python blocks with
pandas, in a scratch folder (docs/howto-pandas.md, docs/howto-hub-model.md)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from batchlane.jobs.store import JobStore
from tests.models import cli_env, register_echo

DOCS = Path(__file__).resolve().parents[2] / "docs"
# Blocks that need the network (the Hub download) are not run; the test builds the model folder instead.
NEEDS_NETWORK = ("hf download", "snapshot_download")


def _blocks(doc: str, language: str) -> list[str]:
    text = (DOCS / doc).read_text()
    found = re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)
    return [block for block in found if not any(marker in block for marker in NEEDS_NETWORK)]


def _shell(block: str, cwd: Path, env: dict[str, str]) -> str:
    path = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=cwd,
        env={**env, "PATH": path, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"{block}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_howto_pandas_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    env = cli_env(tmp_path / "home")
    store = JobStore(env["BATCHLANE_DB"])
    register_echo(store, name="dispute")  # the echo model answers {"echo": <record>} per line
    store.close()
    texts = ["card charged twice", "app keeps freezing", "account taken over"]
    (tmp_path / "tickets/more").mkdir(parents=True)
    (tmp_path / "tickets/a.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[:2]))
    (tmp_path / "tickets/more/b.jsonl").write_text(json.dumps({"text": texts[2]}) + "\n")

    (commands,) = _blocks("howto-pandas.md", "bash")
    printed = _shell(commands, tmp_path, env)
    assert "card charged twice" in printed and "wrote 3 rows to results.parquet (parquet)" in printed

    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in _blocks("howto-pandas.md", "python"):
        exec(compile(block, "howto-pandas.md", "exec"), namespace)  # noqa: S102 - the documented code itself

    table, predictions = namespace["table"], namespace["predictions"]
    assert list(table["input_key"]) == ["a.jsonl", "a.jsonl", "more/b.jsonl"]
    assert list(table["record_index"]) == [0, 1, 0]
    assert list(table["text"]) == texts and list(table["echo.text"]) == texts
    assert list(predictions["input_key"]) == ["a.jsonl", "a.jsonl", "more/b.jsonl"]
    assert [row["text"] for row in predictions["echo"]] == texts


def test_howto_hub_model_runs_as_written(tiny_bert_dir: Path, tmp_path: Path) -> None:
    # In place of `hf download ... --local-dir ./sst2-model`: a tiny classifier built here.
    shutil.copytree(tiny_bert_dir, tmp_path / "sst2-model")
    env = cli_env(tmp_path / "home")

    (commands,) = _blocks("howto-hub-model.md", "bash")
    printed = _shell(commands, tmp_path, env)

    rows = [json.loads(line) for line in (tmp_path / "reviews-out/part-0.txt.out").read_text().splitlines()]
    assert len(rows) == 2
    assert all(row["label"] in {"billing", "fraud", "service"} and 0 <= row["score"] <= 1 for row in rows)
    assert "I loved it" in printed and "worst purchase ever" in printed
    assert _blocks("howto-hub-model.md", "python") == []  # the only Python block is the download
