"""`ensure_demo_model`: built once, cached by recipe id, reused, and built only once under concurrent calls.

The real demo recipe takes minutes, so these tests run the same code with a tiny base and a small copy of the data.
"""

from __future__ import annotations

import csv
import gzip
import logging
import threading
from pathlib import Path

import pytest

from batchlane.errors import Conflict, NotFound
from batchlane.training import DEMO_RECIPE, TrainRecipe, ensure_demo_model
from batchlane.training.demo_model import _exclusive_lock, demo_data_dir, demo_recipe_id
from tests.integration.training.test_classifier import cfpb_rows

TINY_RECIPE = TrainRecipe(max_length=32, batch_size=16, learning_rate=1e-3, seed=0)


@pytest.fixture()
def demo_data(tmp_path: Path) -> Path:
    folder = tmp_path / "cfpb"
    folder.mkdir()
    for name, per_label in (("train.csv.gz", 12), ("test.csv.gz", 4)):
        with gzip.open(folder / name, "wt", encoding="utf-8", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=["text", "label"])
            writer.writeheader()
            writer.writerows(cfpb_rows(name, per_label))
    return folder


def test_builds_once_then_reuses(
    demo_data: Path, tiny_bert_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = {"BATCHLANE_HOME": str(tmp_path / "home")}
    caplog.set_level(logging.INFO, logger="batchlane.training")
    kwargs = dict(env=env, data_dir=demo_data, base_model=tiny_bert_dir, recipe=TINY_RECIPE)
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(ensure_demo_model(**kwargs))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2 and results[0] == results[1]
    path = results[0]
    assert path.parent == tmp_path / "home" / "models"
    assert path.name == demo_recipe_id(demo_data, tiny_bert_dir, TINY_RECIPE)
    assert sum(r.message.startswith("building the demo model in") for r in caplog.records) == 1
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert ensure_demo_model(**kwargs) == path  # cached: no second build
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp
    # metrics.json is computed on the whole test file.
    assert '"n": 12' in (path / "metrics.json").read_text()


def test_recipe_id_changes_with_recipe_and_data(demo_data: Path, tiny_bert_dir: Path) -> None:
    first = demo_recipe_id(demo_data, tiny_bert_dir, TINY_RECIPE)
    assert first.startswith("cfpb-dispute-")
    assert first == demo_recipe_id(demo_data, tiny_bert_dir, TINY_RECIPE)
    assert first != demo_recipe_id(demo_data, tiny_bert_dir, DEMO_RECIPE)
    with gzip.open(demo_data / "test.csv.gz", "at", encoding="utf-8") as stream:
        stream.write("one more,Mortgage\n")
    assert first != demo_recipe_id(demo_data, tiny_bert_dir, TINY_RECIPE)


def test_missing_data_names_the_env_var(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="BATCHLANE_DEMO_DATA"):
        ensure_demo_model(env={"BATCHLANE_HOME": str(tmp_path)}, data_dir=tmp_path)
    assert demo_data_dir({"BATCHLANE_DEMO_DATA": str(tmp_path)}) == tmp_path
    assert (demo_data_dir({}) / "train.csv.gz").is_file()  # the copy shipped in examples/


@pytest.mark.slow
def test_lock_times_out_while_held(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    held = _exclusive_lock(lock, timeout=1).__enter__()
    try:
        with pytest.raises(Conflict, match="still locked"):
            _exclusive_lock(lock, timeout=0.2).__enter__()
    finally:
        held.__exit__(None, None, None)
    with _exclusive_lock(lock, timeout=0.2):  # released on exit
        pass
