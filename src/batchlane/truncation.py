"""How a text longer than the model's max length is cut; training and serving share this, so a model is served with
the same cut it was trained with.

* ``"head"`` keeps the first ``max_length`` tokens (what tokenizers do by default).
* ``"head_tail"`` keeps the first three quarters and the last quarter of the budget, which helps when the decisive
  words of long documents sit at the end. The first and the last id (the special tokens of single-sequence
  encoders: ``[CLS]``/``[SEP]``, ``<s>``/``</s>``) always survive.

A model trained with ``head_tail`` records it as ``batchlane_truncation`` in its ``config.json``.
"""

from __future__ import annotations

from collections.abc import Sequence

TRUNCATIONS = ("head", "head_tail")
CONFIG_KEY = "batchlane_truncation"


def check(truncation: str) -> str:
    """``truncation`` if it is known, else ``ValueError`` listing the known ones."""
    if truncation not in TRUNCATIONS:
        raise ValueError(f"truncation must be one of {', '.join(TRUNCATIONS)}, got {truncation!r}")
    return truncation


def cut_head_tail(ids: Sequence[int], max_length: int) -> list[int]:
    """``ids`` (a whole encoding, special tokens included) cut to ``max_length`` by dropping the middle."""
    if len(ids) <= max_length:
        return list(ids)
    budget = max_length - 2
    tail = budget // 4
    head = budget - tail
    return [*ids[: 1 + head], *ids[len(ids) - tail - 1 :]]
