"""Tokenizer helpers of the default classifier: the longest input a model takes, and a thread-safe copy of a fast
tokenizer's backend."""

from __future__ import annotations

import logging
from typing import Any

from batchlane.serving.classifier_options import DEFAULT_MAX_LENGTH

logger = logging.getLogger(__name__)

# Position ids of these models start after the padding index, so two positions are unusable.
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "longformer", "bart", "mbart"}


def _model_max_length(config: Any, tokenizer: Any) -> int:
    limit = DEFAULT_MAX_LENGTH
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        limit = min(limit, positions - (2 if getattr(config, "model_type", "") in _OFFSET_POSITIONS else 0))
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if (
        isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < 1_000_000
    ):  # transformers uses 1e30 for "none"
        limit = min(limit, tokenizer_limit)
    return limit


def _own_encoder(tokenizer: Any, max_length: int | None) -> Any | None:
    """A private copy of a fast tokenizer's Rust backend with truncation set once, or None for slow tokenizers.

    transformers re-applies truncation on the shared backend at every call, which PyO3 refuses while another thread
    is encoding ("Already borrowed", huggingface/tokenizers#537); a copy that is never reconfigured can be used by
    any number of threads at once, and skips transformers' per-call Python work.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not getattr(tokenizer, "is_fast", False):
        return None
    try:
        from tokenizers import Tokenizer

        encoder = Tokenizer.from_str(backend.to_str())
        encoder.no_padding()
        if max_length is None:  # the caller cuts the full encoding itself (head_tail)
            encoder.no_truncation()
        else:
            encoder.enable_truncation(max_length, direction=getattr(tokenizer, "truncation_side", "right"))
    except Exception as exc:  # an exotic tokenizer: the transformers call still works
        logger.debug("tokenizer backend copy failed (%s); using the transformers call", exc)
        return None
    return encoder
