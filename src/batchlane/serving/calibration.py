"""The texts static int8 quantisation calibrates its activation ranges on (``--quantize int8``).

Where they come from, first found wins:

1. ``--calibration-data FILE`` (``BATCHLANE_CALIBRATION_DATA``);
2. ``calibration.jsonl`` in the model folder: ``batchlane train`` writes a seeded sample of the texts the model was
   trained on there (``docs/training.md``), so a model it trained quantises with no flag;
3. none: OpenVINO refuses to quantise (``missing_message`` names the flag), ONNX Runtime falls back to dynamic int8.

A file holds one text per line, or JSON Lines records with a ``text`` (or ``inputs``) field. The first
``CALIBRATION_TEXTS`` are used; they are also part of the quantised model's cache key (``digest``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from batchlane.errors import ModelLoadError

CALIBRATION_FILE = "calibration.jsonl"
# A few hundred texts cover the activation ranges of a text classifier; more changes nothing measurable and costs
# minutes on a small CPU.
CALIBRATION_TEXTS = 300
MIN_TEXTS = 10
BATCH = 8


@dataclass(frozen=True)
class Calibration:
    """The texts and where they came from (for the log)."""

    texts: list[str]
    source: str


def read_calibration(path: Path, limit: int = CALIBRATION_TEXTS) -> list[str]:
    """Up to ``limit`` texts from ``path``: one per line, or JSON Lines records with a ``text``/``inputs`` field."""
    texts: list[str] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"--calibration-data {path}: cannot read it ({exc})") from None
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ModelLoadError(
                    f"--calibration-data {path} line {number}: invalid JSON ({exc.msg})"
                ) from None
            text = next((record[k] for k in ("text", "inputs") if isinstance(record.get(k), str)), None)
            if text is None:
                raise ModelLoadError(f"--calibration-data {path} line {number}: no string 'text' field")
            line = text
        texts.append(line)
        if len(texts) >= limit:
            break
    if len(texts) < MIN_TEXTS:
        raise ModelLoadError(
            f"--calibration-data {path} holds {len(texts)} texts; give it at least {MIN_TEXTS} "
            f"({CALIBRATION_TEXTS} is best)"
        )
    return texts


def find(model_dir: Path, calibration_data: Path | None) -> Calibration | None:
    """The calibration texts for ``model_dir``: the given file, else the model's own ``calibration.jsonl``, else
    None."""
    if calibration_data is not None:
        return Calibration(read_calibration(calibration_data), f"--calibration-data {calibration_data}")
    own = model_dir / CALIBRATION_FILE
    if own.is_file():
        return Calibration(read_calibration(own), f"the model's training sample {own}")
    return None


def missing_message(model_dir: Path) -> str:
    """The one-line error for int8 that needs calibration texts and has none."""
    return (
        f"--quantize int8 calibrates on real texts, and {model_dir} has no {CALIBRATION_FILE} (batchlane train "
        "writes one): give --calibration-data FILE (a few hundred texts like the ones you will classify, one per "
        "line or JSON Lines with 'text')"
    )


def digest(texts: Sequence[str]) -> str:
    """A hash of the texts, for cache keys: other texts give another quantised model."""
    hasher = hashlib.sha256()
    for text in texts:
        hasher.update(text.encode("utf-8", "replace") + b"\0")
    return hasher.hexdigest()


def batches(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[dict[str, np.ndarray]]:
    """The texts tokenized as the server does (truncated to ``max_length``), in padded int64 batches of 8."""
    out = []
    for start in range(0, len(texts), BATCH):
        encoded = tokenizer(
            list(texts[start : start + BATCH]),
            truncation=True,
            max_length=max_length,
            padding=True,
            return_tensors="np",
        )
        out.append({k: encoded[k].astype(np.int64) for k in ("input_ids", "attention_mask")})
    return out


def write_sample(texts: Sequence[str], target: Path, *, size: int = CALIBRATION_TEXTS, seed: int = 0) -> int:
    """Write a seeded sample of ``size`` of ``texts`` (non-blank) as ``target`` JSON Lines; returns how many."""
    present = [text for text in texts if text and text.strip()]
    pick = np.random.default_rng(seed).permutation(len(present))[:size]
    with target.open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps({"text": present[i]}, ensure_ascii=False) + "\n" for i in sorted(pick))
    return len(pick)
