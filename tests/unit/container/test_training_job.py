"""The image's `train` contract without Docker: hyperparameters, channels, the failure file and the exit status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchlane.container.entrypoint import readable_by
from batchlane.container.training_job import TrainingPaths, parse_hyperparameters, run
from batchlane.errors import BadInput


def test_sagemaker_style_string_hyperparameters_become_the_recipe() -> None:
    recipe, columns = parse_hyperparameters(
        {
            "epochs": "0.5",
            "batch-size": "8",
            "max_length": 64,
            "dropout": "none",
            "head_init": "random",
            "text_column": "complaint",
            "sagemaker_program": "ignored.py",
            "sagemaker_region": "eu-west-1",
        }
    )
    assert recipe == {
        "epochs": 0.5,
        "batch_size": 8,
        "max_length": 64,
        "dropout": None,
        "head_init": "random",
    }
    assert columns == {"text_column": "complaint"}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"epoch": "1"}, "hyperparameter 'epoch' is not one of: batch_size, class_weighting,"),
        ({"batch_size": "eight"}, "hyperparameter 'batch_size' must be a number, got 'eight'"),
        ({"learning-rate": "fast"}, "hyperparameter 'learning-rate' must be a number, got 'fast'"),
    ],
)
def test_bad_hyperparameters_are_named(raw: dict, message: str) -> None:
    with pytest.raises(BadInput) as caught:
        parse_hyperparameters(raw)
    assert str(caught.value).startswith(message)


def layout(root: Path, hyperparameters: object, files: dict[str, str]) -> Path:
    (root / "input" / "config").mkdir(parents=True)
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    for name, text in files.items():
        path = root / "input" / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    ("hyperparameters", "files", "reason"),
    [
        ({}, {"eval/e.csv": "text,label\na,b\n"}, "no 'train' channel under"),
        (
            {},
            {"train/a.csv": "text,label\n", "train/b.csv": "text,label\n"},
            "has 2 data files (a.csv, b.csv)",
        ),
        ({}, {"train/notes.txt": "x"}, "has no .csv or .jsonl file"),
        (["epochs"], {"train/a.csv": "text,label\n"}, "hyperparameters.json: expected a JSON object"),
        ({"epochs": "0"}, {"train/a.csv": "text,label\n"}, "epochs must be in (0, 100], got 0.0"),
    ],
)
def test_a_bad_job_writes_one_line_to_the_failure_file_and_exits_1(
    tmp_path: Path, hyperparameters: object, files: dict[str, str], reason: str
) -> None:
    root = layout(tmp_path / "opt_ml", hyperparameters, files)
    assert run({"SAGEMAKER_BASE_DIR": str(root)}) == 1
    failure = (root / "output" / "failure").read_text()
    assert reason in failure and failure.count("\n") == 1, failure


def test_sm_variables_move_single_folders(tmp_path: Path) -> None:
    paths = TrainingPaths.from_env(
        {
            "SAGEMAKER_BASE_DIR": str(tmp_path / "base"),
            "SM_MODEL_DIR": str(tmp_path / "m"),
            "SM_OUTPUT_DIR": str(tmp_path / "o"),
            "SM_CHANNEL_TRAIN": str(tmp_path / "t"),
        }
    )
    assert (paths.model, paths.output, paths.channels["train"]) == (
        tmp_path / "m",
        tmp_path / "o",
        tmp_path / "t",
    )
    assert paths.hyperparameters == tmp_path / "base" / "input" / "config" / "hyperparameters.json"


def test_readable_by_looks_at_every_file_and_folder(tmp_path: Path) -> None:
    model = tmp_path / "model"
    (model / "code").mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "code" / "inference.py").write_text("")
    for item in [model, *model.rglob("*")]:
        item.chmod(0o755 if item.is_dir() else 0o644)
    assert readable_by(model, uid=12345, gid=12345)
    (model / "code").chmod(0o750)
    assert not readable_by(model, uid=12345, gid=12345)
    assert readable_by(model, uid=12345, gid=(model / "code").stat().st_gid)
