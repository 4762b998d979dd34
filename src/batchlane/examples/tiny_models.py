"""Tiny, randomly initialised sequence classifiers for tests and docs (no downloads, built in well under a second).

Weights are random but seeded, so a given (architecture, labels, seed) always gives the same predictions.
"""

from __future__ import annotations

from pathlib import Path

TOKENIZER_VOCAB = Path(__file__).parent / "tokenizer" / "vocab.txt"
DEFAULT_LABELS = ("billing", "fraud", "service")


def build_tokenizer():
    """The uncased WordPiece tokenizer of all-MiniLM-L6-v2 (vocab shipped in this package)."""
    from transformers import BertTokenizerFast

    return BertTokenizerFast(vocab=str(TOKENIZER_VOCAB), do_lower_case=True, model_max_length=512)


def build_tiny_classifier(
    out_dir: str | Path,
    arch: str = "bert",
    labels: tuple[str, ...] | list[str] = DEFAULT_LABELS,
    seed: int = 0,
    hidden_size: int = 32,
    layers: int = 2,
) -> Path:
    """Write a ready-to-serve model directory (config, safetensors weights, tokenizer) and return its path.

    ``arch`` is ``"bert"``, ``"modernbert"``, ``"roberta"`` or ``"deberta"`` (``"deberta-v2"``).
    """
    import torch
    from transformers import AutoModelForSequenceClassification

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    id2label = {i: str(name) for i, name in enumerate(labels)}
    label2id = {name: i for i, name in id2label.items()}
    common = dict(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden_size,
        num_attention_heads=4,
        intermediate_size=hidden_size * 2,
        num_labels=len(id2label),
        id2label=id2label,
        label2id=label2id,
        pad_token_id=tokenizer.pad_token_id,
    )
    if arch == "bert":
        from transformers import BertConfig

        config = BertConfig(num_hidden_layers=layers, max_position_embeddings=512, **common)
    elif arch == "modernbert":
        from transformers import ModernBertConfig

        config = ModernBertConfig(
            num_hidden_layers=layers,
            max_position_embeddings=512,
            bos_token_id=tokenizer.cls_token_id,
            eos_token_id=tokenizer.sep_token_id,
            cls_token_id=tokenizer.cls_token_id,
            sep_token_id=tokenizer.sep_token_id,
            global_attn_every_n_layers=2,
            local_attention=64,
            **common,
        )
    elif arch == "roberta":
        from transformers import RobertaConfig

        config = RobertaConfig(num_hidden_layers=layers, max_position_embeddings=514, **common)
    elif arch in ("deberta", "deberta-v2"):
        from transformers import DebertaV2Config

        config = DebertaV2Config(num_hidden_layers=layers, max_position_embeddings=512, **common)
    else:
        raise ValueError(f"unknown tiny architecture {arch!r}; use bert, modernbert, roberta or deberta")
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(config)
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
