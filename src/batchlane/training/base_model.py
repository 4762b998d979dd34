"""The base encoder a recipe starts from: loading it with a fresh classification head, and freezing its lower layers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from batchlane.errors import ModelLoadError, ValidationError


def load_base(base: Path, labels: list[str], seed: int, dropout: float | None) -> tuple[Any, Any]:
    """The model (a sequence classifier with a seeded new head for ``labels``) and tokenizer of a local base;
    ``dropout`` overrides every dropout probability of the architecture. ``ModelLoadError`` naming ``base_model``."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, set_seed

    # The new head's initial weights come from the global RNG: seed it so a recipe gives the same model every time.
    set_seed(seed)
    try:
        tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
        overrides: dict[str, Any] = {}
        if dropout is not None:
            # Every dropout probability of the architecture (BERT's hidden/attention, ModernBERT's mlp/attention/
            # embedding …), whatever it is called.
            config = AutoConfig.from_pretrained(base, local_files_only=True)
            overrides = {
                key: dropout
                for key, value in config.to_dict().items()
                if "dropout" in key and isinstance(value, int | float) and not isinstance(value, bool)
            }
        model = AutoModelForSequenceClassification.from_pretrained(
            base,
            local_files_only=True,
            **overrides,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
            problem_type="single_label_classification",
            # A base that is already a classifier (other labels) gets a fresh head of the right size.
            ignore_mismatched_sizes=True,
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"{base}: cannot load as a base encoder ({exc})", field="base_model") from exc
    return model, tokenizer


def encoder_layers(model: Any) -> list[Any]:
    """The transformer layers of a classifier's encoder, bottom first (BERT's ``encoder.layer``, ModernBERT's
    ``layers`` …): the ModuleList as long as ``config.num_hidden_layers``."""
    import torch

    wanted = int(model.config.num_hidden_layers)
    candidates = [
        (name, module)
        for name, module in model.base_model.named_modules()
        if isinstance(module, torch.nn.ModuleList) and len(module) == wanted
    ]
    for name, module in candidates:
        if name.split(".")[-1] in ("layer", "layers"):
            return list(module)
    if candidates:
        return list(candidates[0][1])
    raise ValidationError(
        f"cannot find the encoder layers of {type(model).__name__} to freeze", field="freeze_layers"
    )


def freeze_lower_layers(model: Any, n: int) -> int:
    """Freeze the embeddings and the lowest ``n`` encoder layers (no-op for 0); return the frozen parameter count.

    Frozen layers need no weight gradients and no optimizer state, which makes each step cheaper; the upper layers
    and the head still adapt to the task.
    """
    if n <= 0:
        return 0
    layers = encoder_layers(model)
    if n > len(layers):
        raise ValidationError(
            f"freeze_layers {n} exceeds the model's {len(layers)} layers", field="freeze_layers"
        )
    modules = [getattr(model.base_model, "embeddings", None), *layers[:n]]
    frozen = 0
    for module in modules:
        if module is None:
            continue
        for param in module.parameters():
            if param.requires_grad:
                param.requires_grad_(False)
                frozen += param.numel()
    return frozen
