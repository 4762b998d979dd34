"""The linear-probe head initialisation on tiny BERT/ModernBERT classifiers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from batchlane.examples.tiny_models import build_tiny_classifier
from batchlane.training.probe import head_features, init_head_from_probe, output_layer


def load(tmp_path: Path, arch: str, labels: tuple[str, ...]):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = build_tiny_classifier(tmp_path / arch, arch=arch, labels=labels)
    return (
        AutoModelForSequenceClassification.from_pretrained(path),
        AutoTokenizer.from_pretrained(path),
    )


def fake_ids(n: int, vocab: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [[2, *rng.integers(5, vocab, int(rng.integers(3, 12))).tolist(), 3] for _ in range(n)]


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["bert", "modernbert"])
def test_probe_sets_the_output_layer(arch: str, tmp_path: Path) -> None:
    model, tokenizer = load(tmp_path, arch, ("a", "b", "c", "d"))
    vocab = model.config.vocab_size
    ids = fake_ids(40, vocab)
    labels = [i % 3 for i in range(40)]  # label "d" (3) never occurs
    layer = output_layer(model)
    assert layer.out_features == 4
    before = layer.weight.detach().clone()
    features = head_features(model, tokenizer, ids, bf16=False)
    assert features.shape == (40, layer.in_features)
    model.train()
    stats = init_head_from_probe(model, tokenizer, ids, labels, bf16=False)
    assert stats["probe_rows"] == 40 and 0 <= stats["probe_train_accuracy"] <= 1
    assert not torch.equal(layer.weight[:3], before[:3])
    assert torch.equal(layer.weight[3], before[3])  # the absent label keeps its random row
    assert model.training  # the mode is restored


@pytest.mark.slow
def test_binary_probe_matches_logistic_regression(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    model, tokenizer = load(tmp_path, "bert", ("neg", "pos"))
    model.eval()
    ids = fake_ids(30, model.config.vocab_size, seed=1)
    labels = [i % 2 for i in range(30)]
    features = head_features(model, tokenizer, ids, bf16=False)
    init_head_from_probe(model, tokenizer, ids, labels, bf16=False)
    reference = LogisticRegression(C=10.0, max_iter=1000, random_state=0).fit(features, labels)
    with torch.no_grad():
        logits = output_layer(model)(torch.as_tensor(features)).numpy()
    # The two-row head's logit difference is scikit-learn's single decision function. The features are recomputed
    # inside the probe and the fit stops at lbfgs's tolerance, so compare what the head predicts (probabilities and
    # labels) rather than raw margins, which wander by more than float noise on near-separable data.
    difference = logits[:, 1] - logits[:, 0]
    np.testing.assert_allclose(
        1 / (1 + np.exp(-difference)), reference.predict_proba(features)[:, 1], atol=2e-3
    )
    assert ((difference > 0).astype(int) == reference.predict(features)).all()
