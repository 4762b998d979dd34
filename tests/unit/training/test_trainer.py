"""The recipe's validation and hash, truncation strategies, padding, layer freezing and precision choice."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from batchlane.errors import ValidationError
from batchlane.examples.tiny_models import build_tiny_classifier
from batchlane.training.base_model import encoder_layers, freeze_lower_layers
from batchlane.training.device import resolve_precision
from batchlane.training.encoding import PaddingCollator, encode_texts
from batchlane.training.trainer import TrainRecipe, class_weights, default_base_model


@pytest.mark.parametrize(
    "field,value",
    [
        ("max_length", 4),
        ("epochs", 0),
        ("batch_size", 0),
        ("learning_rate", 2.0),
        ("warmup_ratio", 1.0),
        ("freeze_layers", -1),
        ("max_train_rows", 1),
        ("eval_fraction", 0.0),
        ("precision", "fp16"),
        ("truncation", "tail"),
        ("class_weighting", "inverse"),
        ("head_init", "zeros"),
        ("probe_rows", 1),
    ],
)
def test_recipe_validation_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=f"^{field} must be") as info:
        dataclasses.replace(TrainRecipe(), **{field: value}).validate()
    assert info.value.field == field


def test_recipe_digest_is_stable_and_sensitive() -> None:
    assert TrainRecipe().digest() == TrainRecipe().digest()
    assert TrainRecipe().digest() != TrainRecipe(seed=1).digest()
    assert TrainRecipe().as_dict()["max_length"] == 128


@pytest.mark.slow  # imports transformers: seconds on a busy machine
def test_head_and_head_tail_truncation() -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(default_base_model(), local_files_only=True)
    words = [f"w{i}" for i in range(40)]
    text = " ".join(["start"] + ["filler"] * 100 + ["finish"])
    (head,) = encode_texts(tokenizer, [text], 20, "head")
    head_tail, short = encode_texts(tokenizer, [text, "finish"], 20, "head_tail")
    finish = tokenizer.convert_tokens_to_ids("finish")
    assert len(head) == len(head_tail) == 20
    assert head[0] == head_tail[0] == tokenizer.cls_token_id
    assert head[-1] == head_tail[-1] == tokenizer.sep_token_id
    assert finish not in head and head_tail[-2] == finish  # the tail survives only with head_tail
    assert short == [tokenizer.cls_token_id, finish, tokenizer.sep_token_id]  # short texts are untouched
    assert len(encode_texts(tokenizer, [" ".join(words)], 512)[0]) < 512
    with pytest.raises(ValueError, match="truncation"):
        encode_texts(tokenizer, ["x"], 20, "middle")


def test_padding_collator() -> None:
    batch = PaddingCollator(pad_token_id=0)(
        [{"input_ids": [5, 6, 7], "labels": 1}, {"input_ids": [8], "labels": 0}]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [1, 0]
    assert "labels" not in PaddingCollator(0)([{"input_ids": [1]}])


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["bert", "modernbert"])
def test_freeze_lower_layers(arch: str, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(
        build_tiny_classifier(tmp_path, arch=arch, layers=3)
    )
    layers = encoder_layers(model)
    assert len(layers) == 3
    assert freeze_lower_layers(model, 0) == 0
    frozen = freeze_lower_layers(model, 2)
    assert frozen > 0
    assert not any(p.requires_grad for p in model.base_model.embeddings.parameters())
    assert not any(p.requires_grad for layer in layers[:2] for p in layer.parameters())
    assert all(p.requires_grad for p in layers[2].parameters())
    assert all(p.requires_grad for name, p in model.named_parameters() if "classifier" in name)
    with pytest.raises(ValidationError, match="exceeds the model's 3 layers"):
        freeze_lower_layers(model, 4)


def test_precision_choice() -> None:
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    assert resolve_precision("auto", "cpu") in ("fp32", "bf16")
    with pytest.raises(ValidationError, match="precision must be one of"):
        resolve_precision("int8", "cpu")


def test_class_weights() -> None:
    # counts: label 0 three times, label 1 once, label 2 never; n = 4 over k = 2 present labels.
    assert class_weights([0, 0, 0, 1], 3, "none") is None
    assert class_weights([0, 0, 0, 1], 3, "balanced") == pytest.approx([4 / 6, 4 / 2, 0.0])
    assert class_weights([0, 0, 0, 1], 3, "sqrt") == pytest.approx([(4 / 6) ** 0.5, 2**0.5, 0.0])
