"""Turning texts into token ids for training and evaluation, and padding them into batches.

Truncation strategies (``"head"``, ``"head_tail"``) are defined in ``batchlane.truncation``, shared with serving.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from batchlane.truncation import TRUNCATIONS, check, cut_head_tail

__all__ = ["TRUNCATIONS", "PaddingCollator", "encode_texts", "pad_token_id"]


def encode_texts(
    tokenizer: Any, texts: Sequence[str], max_length: int, truncation: str = "head"
) -> list[list[int]]:
    """Token ids (with special tokens) of each text, at most ``max_length`` long."""
    check(truncation)
    texts = list(texts)
    if truncation == "head":
        return tokenizer(texts, truncation=True, max_length=max_length, return_attention_mask=False)[
            "input_ids"
        ]
    # Tokenize in full, then cut the middle out.
    full = tokenizer(texts, truncation=False, return_attention_mask=False, verbose=False)["input_ids"]
    return [cut_head_tail(ids, max_length) for ids in full]


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
