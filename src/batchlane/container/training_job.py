"""The image's ``train``: SageMaker's training-container contract over :func:`batchlane.training.train_classifier`.

SageMaker (and ``docker run IMAGE train`` by hand) lays out::

    /opt/ml/input/config/hyperparameters.json   {"epochs": "1", ...}: values are strings (SageMaker's CLI and SDK
                                                stringify them); JSON numbers are accepted too
    /opt/ml/input/data/train/                    labelled .csv/.jsonl(.gz) files: the ``train`` channel (required)
    /opt/ml/input/data/eval/                     optional evaluation data (channel ``eval``, ``validation`` or ``test``)
    /opt/ml/input/data/base_model/               optional base model folder (else the packaged all-MiniLM-L6-v2)
    /opt/ml/model/                               written: the trained model, ready for ``serve``
    /opt/ml/output/failure                       written on error: one line, SageMaker's FailureReason

``SAGEMAKER_BASE_DIR`` moves the ``/opt/ml`` root; ``SM_MODEL_DIR``, ``SM_OUTPUT_DIR``, ``SM_INPUT_CONFIG_DIR`` and
``SM_CHANNEL_<NAME>`` move single folders, as in SageMaker's training toolkit. SIGTERM (StopTrainingJob) stops the
run: the failure file says so and the exit status is 143.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from batchlane.errors import BadInput, BatchlaneError

logger = logging.getLogger(__name__)

DEFAULT_BASE_DIR = "/opt/ml"
EVAL_CHANNELS = ("eval", "validation", "test")
DATA_SUFFIXES = (".csv", ".jsonl", ".csv.gz", ".jsonl.gz")
# Hyperparameters that are not recipe fields; SageMaker's SDK adds sagemaker_* ones of its own, which are ignored.
COLUMN_HYPERPARAMETERS = ("text_column", "label_column")
FAILURE_LIMIT = 1024  # SageMaker keeps the first 1024 characters of the failure file as FailureReason


class Stopped(BaseException):
    """SIGTERM arrived: SageMaker stops a training job this way, then SIGKILLs it after a grace period.

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` in a library swallows it.
    """


@dataclasses.dataclass(frozen=True)
class TrainingPaths:
    """Where the contract's folders are; built from the environment once."""

    hyperparameters: Path
    data: Path
    model: Path
    output: Path
    channels: Mapping[str, Path]

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TrainingPaths:
        base = Path(env.get("SAGEMAKER_BASE_DIR") or DEFAULT_BASE_DIR)
        config = Path(env.get("SM_INPUT_CONFIG_DIR") or base / "input" / "config")
        data = Path(env.get("SM_INPUT_DIR") or base / "input") / "data"
        channels = {p.name: p for p in sorted(data.iterdir()) if p.is_dir()} if data.is_dir() else {}
        for key, value in env.items():
            if key.startswith("SM_CHANNEL_") and key != "SM_CHANNELS" and value:
                channels[key.removeprefix("SM_CHANNEL_").lower()] = Path(value)
        return cls(
            hyperparameters=config / "hyperparameters.json",
            data=data,
            model=Path(env.get("SM_MODEL_DIR") or base / "model"),
            output=Path(env.get("SM_OUTPUT_DIR") or base / "output"),
            channels=channels,
        )


def channel_file(channel: str, folder: Path) -> Path:
    """The one labelled data file in a channel's folder; a one-line error when there is none or several."""
    if folder.is_file():
        return folder
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name.lower().endswith(DATA_SUFFIXES))
    if len(files) == 1:
        return files[0]
    what = (
        "no .csv or .jsonl file"
        if not files
        else f"{len(files)} data files ({', '.join(p.name for p in files)})"
    )
    raise BadInput(f"channel {channel!r} ({folder}) has {what}; put exactly one file in it", field=channel)


def parse_hyperparameters(raw: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Split ``hyperparameters.json`` into TrainRecipe keyword arguments and column names, converting strings.

    Keys may use ``-`` or ``_``; ``sagemaker_*`` keys are ignored; an unknown key or a bad value is a one-line error
    naming it (a typo would otherwise train with a default silently).
    """
    from batchlane.training import TrainRecipe

    fields = {f.name: f for f in dataclasses.fields(TrainRecipe)}
    recipe: dict[str, Any] = {}
    columns: dict[str, str] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name.startswith("sagemaker_"):
            continue
        if name in COLUMN_HYPERPARAMETERS:
            columns[name] = str(value)
            continue
        if name not in fields:
            known = ", ".join(sorted([*fields, *COLUMN_HYPERPARAMETERS]))
            raise BadInput(f"hyperparameter {key!r} is not one of: {known}", field=key)
        recipe[name] = _convert(key, value, fields[name].type)
    return recipe, columns


def _convert(key: str, value: Any, annotation: Any) -> Any:
    text = str(value).strip()
    kind = str(annotation)
    if "None" in kind and text.lower() in ("", "none", "null"):
        return None
    try:
        if kind.startswith("int"):
            return int(float(text)) if float(text).is_integer() else int(text)
        if kind.startswith("float"):
            return float(text)
    except ValueError:
        raise BadInput(f"hyperparameter {key!r} must be a number, got {value!r}", field=key) from None
    return text


def train(paths: TrainingPaths) -> Path:
    """Run one training job laid out as ``paths``; return the model folder written."""
    from batchlane.training import TrainRecipe, train_classifier

    raw: dict[str, Any] = {}
    if paths.hyperparameters.is_file():
        try:
            raw = json.loads(paths.hyperparameters.read_text() or "{}")
        except json.JSONDecodeError as exc:
            raise BadInput(
                f"{paths.hyperparameters}: not valid JSON ({exc})", field="hyperparameters"
            ) from None
        if not isinstance(raw, dict):
            raise BadInput(f"{paths.hyperparameters}: expected a JSON object", field="hyperparameters")
    recipe_args, columns = parse_hyperparameters(raw)
    if "train" not in paths.channels:
        have = ", ".join(sorted(paths.channels)) or "none"
        raise BadInput(f"no 'train' channel under {paths.data} (channels: {have})", field="train")
    data = channel_file("train", paths.channels["train"])
    eval_channel = next((c for c in EVAL_CHANNELS if c in paths.channels), None)
    eval_data = channel_file(eval_channel, paths.channels[eval_channel]) if eval_channel else None
    base_model = paths.channels.get("base_model")
    # train_classifier renames a finished folder into place, which cannot replace a mount point such as
    # /opt/ml/model: build beside it in a temporary folder and copy the files in.
    with tempfile.TemporaryDirectory(prefix="batchlane-train-") as tmp:
        built = Path(tmp) / "model"
        result = train_classifier(
            data,
            built,
            base_model=base_model,
            eval_data=eval_data,
            recipe=TrainRecipe(**recipe_args),
            **columns,
        )
        paths.model.mkdir(parents=True, exist_ok=True)
        shutil.copytree(result.output, paths.model, dirs_exist_ok=True)
    logger.info("wrote the model to %s (metrics in %s)", paths.model, paths.model / "metrics.json")
    return paths.model


def write_failure(paths: TrainingPaths, reason: str) -> None:
    """Write SageMaker's failure file (best effort: a read-only output folder must not hide the real error)."""
    try:
        paths.output.mkdir(parents=True, exist_ok=True)
        (paths.output / "failure").write_text(reason[:FAILURE_LIMIT] + "\n")
    except OSError as exc:
        logger.error("could not write %s: %s", paths.output / "failure", exc)


def _on_sigterm(_signum: int, _frame: Any) -> None:
    raise Stopped("training stopped by SIGTERM")


def run(env: Mapping[str, str] | None = None) -> int:
    """Train as SageMaker's ``train`` does; return the exit status (0, 1 on error, 143 when stopped)."""
    env = os.environ if env is None else env
    # As PID 1 in a container, SIGTERM's default action is ignored: handle it so StopTrainingJob stops the run.
    signal.signal(signal.SIGTERM, _on_sigterm)
    paths = TrainingPaths.from_env(env)
    try:
        train(paths)
    except Stopped as exc:
        write_failure(paths, str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return 143
    except BatchlaneError as exc:
        write_failure(paths, str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # anything else is still the job's failure reason; the traceback goes to the log
        traceback.print_exc()
        write_failure(paths, f"{type(exc).__name__}: {exc}")
        return 1
    return 0
