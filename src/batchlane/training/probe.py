"""Linear-probe initialisation of a new classification head ("LP-FT", Kumar et al., ICLR 2022).

A freshly initialised head sends random gradients into the pretrained encoder for the first few hundred steps, which
is most of a short CPU training budget. Fitting a logistic regression on the frozen encoder's features first and
starting fine-tuning from that head makes the short run count: on the CFPB data it is the difference between
fine-tuning landing below and clearly above the TF-IDF baseline (docs/training.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from batchlane.training.encoding import PaddingCollator, pad_token_id

logger = logging.getLogger(__name__)

PROBE_BATCH_SIZE = 64
# Inverse regularisation of the probe. Loose (10) because the features are few (hidden size) and the rows many.
PROBE_C = 10.0


def output_layer(model: Any) -> Any:
    """The classifier's final ``nn.Linear`` (``out_features == num_labels``): BERT's ``classifier``, ModernBERT's
    ``classifier``, RoBERTa's ``classifier.out_proj`` …"""
    import torch

    n = int(model.config.num_labels)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == n]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no linear layer with {n} outputs")
    return linears[-1]


def head_features(
    model: Any,
    tokenizer: Any,
    ids: Sequence[Sequence[int]],
    *,
    bf16: bool,
    batch_size: int = PROBE_BATCH_SIZE,
) -> np.ndarray:
    """The inputs of :func:`output_layer` for each encoded text (eval mode, no dropout), float32, in input order."""
    import torch

    layer = output_layer(model)
    captured: list[torch.Tensor] = []
    hook = layer.register_forward_pre_hook(lambda _module, args: captured.append(args[0].detach().float()))
    order = np.argsort([-len(x) for x in ids], kind="stable")
    collate = PaddingCollator(pad_token_id(tokenizer))
    device = next(model.parameters()).device
    features = np.empty((len(ids), layer.in_features), dtype=np.float32)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                batch = collate([{"input_ids": ids[i]} for i in chunk])
                captured.clear()
                model(**{k: v.to(device) for k, v in batch.items()})
                features[chunk] = captured[-1].cpu().numpy()
    finally:
        hook.remove()
        model.train(was_training)
    return features


def init_head_from_probe(
    model: Any,
    tokenizer: Any,
    ids: Sequence[Sequence[int]],
    label_ids: Sequence[int],
    *,
    bf16: bool,
    seed: int = 0,
) -> dict[str, float]:
    """Fit a multinomial logistic regression on the frozen features of ``ids`` and copy it into the output layer.

    Labels missing from ``label_ids`` keep their random rows. Returns timings and the probe's training accuracy.
    """
    import torch
    from sklearn.linear_model import LogisticRegression

    started = time.perf_counter()
    features = head_features(model, tokenizer, ids, bf16=bf16)
    encoded = time.perf_counter()
    y = np.asarray(label_ids, dtype=np.int64)
    probe = LogisticRegression(C=PROBE_C, max_iter=1000, random_state=seed).fit(features, y)
    coef, intercept = probe.coef_, probe.intercept_
    if len(probe.classes_) == 2:
        # scikit-learn keeps one row for binary problems (the logit of class 1); split it symmetrically.
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    layer = output_layer(model)
    with torch.no_grad():
        for row, label_id in enumerate(probe.classes_):
            layer.weight[int(label_id)] = torch.as_tensor(coef[row], dtype=layer.weight.dtype)
            if layer.bias is not None:
                layer.bias[int(label_id)] = float(intercept[row])
    stats = {
        "probe_rows": len(ids),
        "probe_feature_seconds": round(encoded - started, 1),
        "probe_fit_seconds": round(time.perf_counter() - encoded, 1),
        "probe_train_accuracy": round(float(probe.score(features, y)), 4),
    }
    logger.info(
        "linear probe on %d rows: train accuracy %.3f (features %.0fs, fit %.1fs)",
        len(ids),
        stats["probe_train_accuracy"],
        stats["probe_feature_seconds"],
        stats["probe_fit_seconds"],
    )
    return stats
