"""Sentence embeddings (batchlane.monitor.embedding) with the real classifier architecture and tiny weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from batchlane.errors import ValidationError
from batchlane.monitor import embedding
from batchlane.monitor.embedding import Embedder, EmbeddingOptions, parse_layers
from batchlane.serving.classifier import SequenceClassifier

TEXTS = [
    "short",
    "a somewhat longer text about a billing problem with my card " * 6,
    "medium length text about fraud",
    "",
    "another one " * 20,
]


def seed_embedding(embedder: Embedder, text: str, layer: int = -2) -> np.ndarray:
    """The seed's embedding of one text: its hidden states at ``layer`` averaged over its tokens, unpadded."""
    import torch

    ids = embedder.encode([text])[0]
    with torch.inference_mode():
        out = embedder.model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    return out.hidden_states[layer][0].mean(dim=0).numpy()


@pytest.mark.parametrize("window", [4096, 2])
def test_embeddings_do_not_depend_on_the_batch_they_land_in(
    tiny_bert_dir: Path, window: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 64-token budget splits the texts into several padded batches, a window of 2 into several tokenizer windows;
    # each text must come out as if embedded alone, in its place.
    monkeypatch.setattr(embedding, "WINDOW", window)
    embedder = Embedder.load(tiny_bert_dir, EmbeddingOptions(layers=(-2,), token_budget=64))
    vectors = embedder.embed(TEXTS).vectors
    assert vectors.shape == (len(TEXTS), 32)
    for row, text in zip(vectors, TEXTS, strict=True):
        np.testing.assert_allclose(row, seed_embedding(embedder, text), atol=1e-5)


def test_layers_are_averaged(tiny_bert_dir: Path) -> None:
    embedder = Embedder.load(tiny_bert_dir, EmbeddingOptions(layers=(-2, -1)))
    both = embedder.embed(TEXTS[:2]).vectors
    expected = [(seed_embedding(embedder, t, -2) + seed_embedding(embedder, t, -1)) / 2 for t in TEXTS[:2]]
    np.testing.assert_allclose(both, expected, atol=1e-5)


def test_a_classifier_also_gives_the_labels_serving_predicts(tiny_bert_dir: Path) -> None:
    embedded = Embedder.load(tiny_bert_dir).embed(TEXTS)
    served = SequenceClassifier.load(tiny_bert_dir).classify(TEXTS)
    assert embedded.labels == [item["label"] for item in served]
    assert embedded.label_names == ["billing", "fraud", "service"]


@pytest.mark.parametrize("pooling", ["cls", "max"])
def test_other_poolings(tiny_bert_dir: Path, pooling: str) -> None:
    vectors = Embedder.load(tiny_bert_dir, EmbeddingOptions(pooling=pooling)).embed(TEXTS[:2]).vectors
    assert vectors.shape == (2, 32) and np.isfinite(vectors).all()


def test_bad_options_name_the_flag(tiny_bert_dir: Path) -> None:
    with pytest.raises(ValidationError, match="--layers 7 is out of range: the model has 3 hidden states"):
        Embedder.load(tiny_bert_dir, EmbeddingOptions(layers=(7,)))
    with pytest.raises(ValidationError, match="--pooling must be one of mean, cls, max"):
        EmbeddingOptions(pooling="sum")
    with pytest.raises(ValidationError, match="--layers must be comma-separated integers"):
        parse_layers("last")
