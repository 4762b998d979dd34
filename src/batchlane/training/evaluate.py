"""Evaluating a sequence classifier on labelled data: predictions in length-sorted batches, then metrics.

Used by ``batchlane train`` (on its held-out split), ``batchlane evaluate``, the demo and the benchmark.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from batchlane import truncation as truncation_mod
from batchlane.errors import ModelLoadError, NotFound
from batchlane.training.data import LabelledData, check_labels_known, load_labelled
from batchlane.training.device import resolve_device, resolve_precision
from batchlane.training.encoding import PaddingCollator, encode_texts, pad_token_id
from batchlane.training.metrics import classification_report

logger = logging.getLogger(__name__)

DEFAULT_EVAL_BATCH_SIZE = 64


def model_labels(config: Any) -> list[str]:
    """The label names of a classifier config, in id order."""
    id2label = {int(k): str(v) for k, v in (config.id2label or {}).items()}
    return [id2label.get(i, f"LABEL_{i}") for i in range(int(config.num_labels))]


def model_max_length(tokenizer: Any, config: Any) -> int:
    """The longest input the model takes: the tokenizer's limit (which ``batchlane train`` sets to the training
    length), capped by the position embeddings."""
    limit = int(getattr(tokenizer, "model_max_length", 0) or 0)
    positions = int(getattr(config, "max_position_embeddings", 512) or 512)
    # Tokenizers without a limit report a huge sentinel (1e30).
    return min(limit, positions) if 0 < limit < 1_000_000 else min(512, positions)


def predict_label_ids(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    max_length: int,
    batch_size: int = DEFAULT_EVAL_BATCH_SIZE,
    truncation: str = "head",
    precision: str = "auto",
) -> np.ndarray:
    """The argmax label id for each text, in input order.

    Texts are sorted by token length so each batch pads only to its own longest member; ``precision`` ``auto`` uses
    bf16 autocast where the hardware has it.
    """
    import torch

    device = next(model.parameters()).device
    dtype = resolve_precision(precision, device.type)
    ids = encode_texts(tokenizer, texts, max_length, truncation)
    order = np.argsort([-len(x) for x in ids], kind="stable")
    collate = PaddingCollator(pad_token_id(tokenizer))
    predictions = np.empty(len(ids), dtype=np.int64)
    was_training = model.training
    model.eval()
    try:
        with (
            torch.inference_mode(),
            torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16"),
        ):
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                batch = collate([{"input_ids": ids[i]} for i in chunk])
                logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
                predictions[chunk] = logits.argmax(dim=-1).cpu().numpy()
    finally:
        model.train(was_training)
    return predictions


def evaluate_loaded(
    model: Any,
    tokenizer: Any,
    data: LabelledData,
    *,
    max_length: int,
    batch_size: int = DEFAULT_EVAL_BATCH_SIZE,
    truncation: str = "head",
    precision: str = "auto",
    label_column: str = "label",
) -> dict:
    """Metrics (see :func:`~batchlane.training.metrics.classification_report`) of an in-memory model on ``data``,
    plus ``eval_data`` and ``eval_seconds``. Raises BadInput naming the record if a label is unknown to the model."""
    labels = model_labels(model.config)
    check_labels_known(data, labels, label_column)
    index = {label: i for i, label in enumerate(labels)}
    started = time.perf_counter()
    predicted = predict_label_ids(
        model,
        tokenizer,
        data.texts,
        max_length=max_length,
        batch_size=batch_size,
        truncation=truncation,
        precision=precision,
    )
    seconds = time.perf_counter() - started
    report = classification_report([index[label] for label in data.labels], predicted, labels)
    report["eval_data"] = data.source
    report["eval_seconds"] = round(seconds, 2)
    report["max_length"] = max_length
    logger.info(
        "evaluated on %d records in %.1fs: accuracy %.4f, macro-F1 %.4f",
        report["n"],
        seconds,
        report["accuracy"],
        report["macro_f1"],
    )
    return report


def load_classifier(model_dir: str | Path) -> tuple[Any, Any]:
    """``(model, tokenizer)`` from a local sequence-classification directory (never a hub), model in eval mode on
    the GPU if there is one."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise NotFound(f"{model_dir}: not a model directory (no config.json)", field="model")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(
            f"{model_dir}: cannot load a sequence classifier ({exc})", field="model"
        ) from exc
    model.to(resolve_device())
    model.eval()
    return model, tokenizer


def evaluate_model(
    model_dir: str | Path,
    data: str | Path,
    *,
    text_column: str = "text",
    label_column: str = "label",
    max_length: int | None = None,
    batch_size: int = DEFAULT_EVAL_BATCH_SIZE,
    max_rows: int | None = None,
    precision: str = "auto",
    output: str | Path | None = None,
) -> dict:
    """Evaluate the classifier in ``model_dir`` on a labelled CSV/JSONL file and return the metrics dict.

    ``max_length`` defaults to the model's own limit (the training length for models from ``batchlane train``);
    ``output``, if given, receives the metrics as JSON. The data is checked before the model runs: a missing file,
    column or unknown label raises a ``BatchlaneError`` naming file, line and column.
    """
    records = load_labelled(data, text_column=text_column, label_column=label_column, max_rows=max_rows)
    model, tokenizer = load_classifier(model_dir)
    report = evaluate_loaded(
        model,
        tokenizer,
        records,
        max_length=max_length or model_max_length(tokenizer, model.config),
        batch_size=batch_size,
        truncation=getattr(model.config, truncation_mod.CONFIG_KEY, "head"),
        precision=precision,
        label_column=label_column,
    )
    report["model"] = str(model_dir)
    if output is not None:
        write_json(Path(output), report)
    return report


def write_json(path: Path, payload: dict) -> None:
    """Write ``payload`` as indented JSON atomically (temp file beside it, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
