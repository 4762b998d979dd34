"""Sentence embeddings for drift monitoring, computed with serving's token-budget batching.

A sentence embedding is, as in the seed's drift monitor, the mean over a text's tokens of the model's hidden states,
here of the layers in ``EmbeddingOptions.layers`` (averaged; default the last two, ``-2`` alone is the seed's script)
and pooled over the tokens by ``pooling`` (``mean``, as the seed; ``cls``; ``max``). Padding tokens never count, so a
text gets the same embedding whichever batch it lands in.

Texts are tokenized with the model's fast tokenizer, sorted by length and packed under a token budget by
``serving.batching.plan_batches`` (the same planner the default handler uses); a classifier directory also yields
its predicted label from the same forward pass.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from batchlane.errors import ModelLoadError, ValidationError
from batchlane.serving import precision as precision_mod
from batchlane.serving.batching import pad_batch, plan_batches
from batchlane.serving.classifier import (
    DEFAULT_BATCH_OVERHEAD,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_TOKEN_BUDGET,
    _model_max_length,
    _own_encoder,
)

logger = logging.getLogger(__name__)

POOLINGS = ("mean", "cls", "max")
DEFAULT_LAYERS = (-2, -1)
# sentence-transformers runs all-MiniLM-L6-v2 at 256 tokens; longer texts cost more and move a mean little.
DEFAULT_MAX_LENGTH = 256
# Texts tokenized and length-sorted at a time: the token ids of a whole large data set as Python lists would take
# gigabytes, and sorting within 4,096 texts pads about as little as sorting all of them.
WINDOW = 4096


def parse_layers(text: str) -> tuple[int, ...]:
    """``"-2,-1"`` → ``(-2, -1)``: hidden-state indices (0 is the embedding layer, -1 the last layer).

    >>> parse_layers(" -2, -1 ")
    (-2, -1)
    """
    try:
        layers = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValidationError(
            f"--layers must be comma-separated integers such as -2,-1, got {text!r}", field="layers"
        ) from None
    if not layers:
        raise ValidationError("--layers names no layer", field="layers")
    return layers


@dataclass(frozen=True)
class EmbeddingOptions:
    """How texts become vectors; stored in the baseline so a run embeds exactly as the baseline did.

    ``precision`` defaults to fp32: a threshold learnt in one number format is only valid in the same one.
    """

    layers: tuple[int, ...] = DEFAULT_LAYERS
    pooling: str = "mean"
    max_length: int = DEFAULT_MAX_LENGTH
    token_budget: int | None = None
    max_batch_size: int | None = None
    device: str | None = None
    precision: str = "fp32"
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValidationError(
                f"--pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}", field="pooling"
            )
        for name in ("max_length", "token_budget", "max_batch_size", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValidationError(
                    f"--{name.replace('_', '-')} must be at least 1, got {value}", field=name
                )

    def describe(self) -> dict[str, Any]:
        """The options that decide the vectors (what statistics.json records)."""
        return {"layers": list(self.layers), "pooling": self.pooling, "max_length": self.max_length}


@dataclass
class Embedded:
    """``vectors`` (n × d float32) in input order; ``labels`` the predicted label per text for a classifier."""

    vectors: np.ndarray
    labels: list[str] | None = None
    label_names: list[str] = field(default_factory=list)


class Embedder:
    """A loaded encoder or sequence classifier that turns texts into sentence embeddings."""

    def __init__(self, model: Any, tokenizer: Any, options: EmbeddingOptions, device: str, classifier: bool):
        self.model = model
        self.options = options
        self.device = device
        self.classifier = classifier
        config = model.config
        depth = int(config.num_hidden_layers) + 1  # hidden_states holds the embedding layer too
        for layer in options.layers:
            if not -depth <= layer < depth:
                raise ValidationError(
                    f"--layers {layer} is out of range: the model has {depth} hidden states "
                    f"(indices {-depth}..{depth - 1})",
                    field="layers",
                )
        self.max_length = min(options.max_length, _model_max_length(config, tokenizer))
        self.tokenizer = tokenizer
        self._encoder = _own_encoder(tokenizer, self.max_length)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        kind = "cuda" if device.startswith("cuda") else "cpu"
        self.token_budget = options.token_budget or DEFAULT_TOKEN_BUDGET[kind]
        self.max_batch_size = options.max_batch_size or DEFAULT_MAX_BATCH_SIZE[kind]
        self.batch_overhead = DEFAULT_BATCH_OVERHEAD[kind]
        self.label_names = (
            [str(config.id2label.get(i, f"LABEL_{i}")) for i in range(config.num_labels)]
            if classifier
            else []
        )

    @classmethod
    def load(cls, model_dir: str | Path, options: EmbeddingOptions | None = None) -> Embedder:
        """Load a Hugging Face encoder or sequence-classifier directory from local files only (never the Hub)."""
        import torch
        from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer

        options = options or EmbeddingOptions()
        path = Path(model_dir)
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"--model {path} has no config.json, so it is not a Hugging Face model directory"
            )
        hardware = precision_mod.detect()
        precision_mod.configure_threads(options.threads or precision_mod.default_threads(hardware))
        device = options.device or ("cuda" if torch.cuda.is_available() else "cpu")
        choice = precision_mod.choose_precision(options.precision, device, hardware)
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        classifier = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
        auto = AutoModelForSequenceClassification if classifier else AutoModel
        try:
            model = auto.from_pretrained(path, local_files_only=True, dtype=choice.dtype)
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"--model {path}: {exc}") from None
        model.to(device).eval()
        embedder = cls(model, tokenizer, options, device, classifier)
        logger.info(
            "embedding with %s (%s) on %s in %s: layers %s, %s pooling, max length %d, token budget %d",
            path,
            "classifier" if classifier else "encoder",
            device,
            choice.name,
            ",".join(map(str, options.layers)),
            options.pooling,
            embedder.max_length,
            embedder.token_budget,
        )
        return embedder

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, truncated to the max length (the head of a long text is kept)."""
        if self._encoder is not None:
            return [encoding.ids for encoding in self._encoder.encode_batch_fast(list(texts))]
        return self.tokenizer(
            list(texts), truncation=True, max_length=self.max_length, padding=False, verbose=False
        )["input_ids"]

    def embed(self, texts: Sequence[str]) -> Embedded:
        """One vector per text (and its predicted label for a classifier), in input order."""
        texts = list(texts)
        width = int(self.model.config.hidden_size)
        vectors = np.empty((len(texts), width), dtype=np.float32)
        label_index = np.empty(len(texts), dtype=np.int64)
        for start in range(0, len(texts), WINDOW):
            ids = self.encode(texts[start : start + WINDOW])
            for batch in plan_batches(
                [len(row) for row in ids],
                self.token_budget,
                self.max_batch_size,
                batch_overhead=self.batch_overhead,
            ):
                input_ids, mask = pad_batch(ids, batch, self.pad_id)
                rows = [start + i for i in batch]
                vectors[rows], label_index[rows] = self._forward(input_ids, mask)
        labels = [self.label_names[i] for i in label_index] if self.classifier else None
        return Embedded(vectors, labels, list(self.label_names))

    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        ids = torch.from_numpy(input_ids).to(self.device)
        mask = torch.from_numpy(attention_mask).to(self.device)
        with torch.inference_mode():
            out = self.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            hidden = torch.stack([out.hidden_states[i] for i in self.options.layers]).float().mean(dim=0)
            keep = mask.unsqueeze(-1).to(hidden.dtype)
            if self.options.pooling == "mean":
                pooled = (hidden * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)
            elif self.options.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                pooled = hidden.masked_fill(keep == 0, float("-inf")).amax(dim=1)
            if self.classifier:
                labels = out.logits.argmax(dim=-1).cpu().numpy()
            else:
                labels = np.zeros(len(input_ids), dtype=np.int64)
        return pooled.cpu().numpy(), labels
