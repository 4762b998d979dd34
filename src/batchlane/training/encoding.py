"""Turning texts into token ids for training and evaluation, and padding them into batches.

Two truncation strategies: ``"head"`` keeps the first ``max_length`` tokens (what a serving tokenizer does by
default); ``"head_tail"`` keeps the first three quarters and the last quarter of the budget, which helps when the
decisive words of long documents sit at the end. Special tokens are always kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

TRUNCATIONS = ("head", "head_tail")


def encode_texts(
    tokenizer: Any, texts: Sequence[str], max_length: int, truncation: str = "head"
) -> list[list[int]]:
    """Token ids (with special tokens) of each text, at most ``max_length`` long."""
    if truncation not in TRUNCATIONS:
        raise ValueError(f"truncation must be one of {TRUNCATIONS}, got {truncation!r}")
    texts = list(texts)
    if truncation == "head":
        return tokenizer(texts, truncation=True, max_length=max_length, return_attention_mask=False)[
            "input_ids"
        ]
    # Tokenize in full, then cut the middle out: the first and the last id are the special tokens ([CLS]/[SEP],
    # <s>/</s>) of single-sequence encoders, so they survive the cut.
    full = tokenizer(texts, truncation=False, return_attention_mask=False, verbose=False)["input_ids"]
    budget = max_length - 2
    tail = budget // 4
    head = budget - tail
    return [ids if len(ids) <= max_length else ids[: 1 + head] + ids[len(ids) - tail - 1 :] for ids in full]


class PaddingCollator:
    """Pads ``{"input_ids": [...], "labels": int}`` features into tensors (dynamic padding: to the longest in batch).

    Only ``input_ids`` and ``attention_mask`` are produced: ModernBERT takes no ``token_type_ids`` and BERT defaults
    them to zeros for single texts.
    """

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for row, feature in enumerate(features):
            n = len(feature["input_ids"])
            ids[row, :n] = torch.as_tensor(feature["input_ids"], dtype=torch.long)
            mask[row, :n] = 1
        batch: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        if "labels" in features[0]:
            batch["labels"] = torch.as_tensor([f["labels"] for f in features], dtype=torch.long)
        return batch


def pad_token_id(tokenizer: Any) -> int:
    """The tokenizer's pad id, falling back to 0 for tokenizers without a pad token."""
    pad = getattr(tokenizer, "pad_token_id", None)
    return 0 if pad is None else int(pad)
