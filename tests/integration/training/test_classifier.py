"""`train_classifier` and `evaluate_model` end to end on real CFPB rows, with tiny BERT and ModernBERT bases."""

from __future__ import annotations

import csv
import gzip
import json
import stat
from pathlib import Path

import pytest

from batchlane.errors import BadInput, Conflict, NotFound, ValidationError
from batchlane.serving.classifier import ClassifierOptions, SequenceClassifier
from batchlane.training import TrainRecipe, evaluate_model, train_classifier

CFPB = Path(__file__).parents[3] / "examples" / "data" / "cfpb"
LABELS = [
    "Credit reporting, credit repair services, or other personal consumer reports",
    "Debt collection",
    "Mortgage",
]
FAST = TrainRecipe(max_length=64, batch_size=8, epochs=1.0, learning_rate=1e-3, eval_fraction=0.25, seed=3)


def cfpb_rows(source: str, per_label: int) -> list[dict[str, str]]:
    """The first ``per_label`` rows of each of three labels from a real CFPB file."""
    picked: dict[str, list[dict[str, str]]] = {label: [] for label in LABELS}
    with gzip.open(CFPB / source, "rt", encoding="utf-8", newline="") as stream:
        for row in csv.DictReader(stream):
            bucket = picked.get(row["label"])
            if bucket is not None and len(bucket) < per_label:
                bucket.append(row)
            if all(len(b) == per_label for b in picked.values()):
                break
    return [row for rows in picked.values() for row in rows]


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def cfpb_small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """60 real training rows (20 per label) and 24 real test rows (8 per label), as CSV files."""
    folder = tmp_path_factory.mktemp("cfpb-small")
    return (
        write_csv(folder / "train.csv", cfpb_rows("train.csv.gz", 20)),
        write_csv(folder / "test.csv", cfpb_rows("test.csv.gz", 8)),
    )


def check_model_dir(path: Path, labels: list[str], max_length: int) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True)
    assert model.config.id2label == dict(enumerate(labels))
    assert model.config.label2id == {label: i for i, label in enumerate(labels)}
    assert AutoTokenizer.from_pretrained(path, local_files_only=True).model_max_length == max_length
    assert (path / "model.safetensors").is_file()
    for item in path.iterdir():  # readable by a server running as another user
        assert item.stat().st_mode & stat.S_IROTH, item


def check_metrics(metrics: dict, n: int) -> None:
    matrix = metrics["confusion_matrix"]["matrix"]
    assert metrics["n"] == n == sum(map(sum, matrix))
    assert metrics["confusion_matrix"]["labels"] == metrics["labels"]
    f1s = [metrics["per_label"][label]["f1"] for label in metrics["macro_f1_labels"]]
    assert metrics["macro_f1"] == pytest.approx(sum(f1s) / len(f1s))
    assert metrics["accuracy"] == pytest.approx(sum(matrix[i][i] for i in range(len(matrix))) / n)
    assert sum(row["support"] for row in metrics["per_label"].values()) == n
    for key in (
        "eval_data",
        "training_seconds",
        "recipe",
        "train_data",
        "n_train",
        "base_model",
        "precision",
    ):
        assert key in metrics


def test_train_bert_with_held_out_split(
    tiny_bert_dir: Path, cfpb_small: tuple[Path, Path], tmp_path: Path
) -> None:
    train, _ = cfpb_small
    out = tmp_path / "model"
    result = train_classifier(train, out, base_model=tiny_bert_dir, recipe=FAST)
    assert result.output == out.resolve()
    check_model_dir(out, LABELS, 64)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(result.metrics))
    check_metrics(metrics, 15)  # a quarter of each label's 20 rows is held out
    assert metrics["n_train"] == 45
    assert metrics["eval_data"].endswith("(held-out 25%)")
    assert metrics["recipe"]["max_length"] == 64
    assert metrics["probe_rows"] == 45  # the default head is a linear probe on all training rows
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no build debris beside it


def test_train_modernbert_frozen_with_eval_file(
    tiny_modernbert_dir: Path, cfpb_small: tuple[Path, Path], tmp_path: Path
) -> None:
    train, test = cfpb_small
    recipe = TrainRecipe(
        max_length=48,
        batch_size=8,
        learning_rate=1e-3,
        freeze_layers=1,
        dropout=0.0,
        seed=1,
        truncation="head_tail",
    )
    result = train_classifier(
        train, tmp_path / "mb", base_model=tiny_modernbert_dir, eval_data=test, recipe=recipe
    )
    check_model_dir(result.output, LABELS, 48)
    check_metrics(result.metrics, 24)
    assert result.metrics["frozen_parameters"] > 0
    config = json.loads((result.output / "config.json").read_text())
    assert config["mlp_dropout"] == config["attention_dropout"] == config["embedding_dropout"] == 0.0
    # The server cuts long texts the way training did.
    assert config["batchlane_truncation"] == "head_tail"
    served = SequenceClassifier.load(result.output, ClassifierOptions(device="cpu"))
    assert (served.truncation, served.max_length) == ("head_tail", 48)
    assert result.metrics["n_train"] == 60
    # Evaluating the saved model reproduces the metrics computed in memory.
    again = evaluate_model(
        result.output, test, precision=result.metrics["precision"], output=tmp_path / "m.json"
    )
    assert again["confusion_matrix"] == result.metrics["confusion_matrix"]
    assert json.loads((tmp_path / "m.json").read_text())["macro_f1"] == again["macro_f1"]


def test_overwrite_replaces_existing_output(
    tiny_bert_dir: Path, cfpb_small: tuple[Path, Path], tmp_path: Path
) -> None:
    train, _ = cfpb_small
    out = tmp_path / "model"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    with pytest.raises(Conflict, match="already exists"):
        train_classifier(train, out, base_model=tiny_bert_dir, recipe=FAST)
    train_classifier(train, out, base_model=tiny_bert_dir, recipe=FAST, overwrite=True)
    assert not (out / "stale.txt").exists() and (out / "metrics.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_input_errors_fail_before_training(
    tiny_bert_dir: Path, cfpb_small: tuple[Path, Path], tmp_path: Path
) -> None:
    train, _ = cfpb_small
    out = tmp_path / "never"
    unknown = write_csv(
        tmp_path / "eval.csv", [{"text": "x", "label": "Mortgage"}, {"text": "y", "label": "Pets"}]
    )
    with pytest.raises(
        BadInput, match=r"eval\.csv, line 3, column 'label': label 'Pets' is not one the model knows"
    ):
        train_classifier(train, out, base_model=tiny_bert_dir, eval_data=unknown, recipe=FAST)
    one_label = write_csv(tmp_path / "one.csv", [{"text": "x", "label": "Mortgage"}] * 5)
    with pytest.raises(BadInput, match=r"one\.csv, column 'label': found 1 distinct label \('Mortgage'\)"):
        train_classifier(one_label, out, base_model=tiny_bert_dir, recipe=FAST)
    with pytest.raises(BadInput, match=r"line 1: no column 'body'"):
        train_classifier(train, out, base_model=tiny_bert_dir, text_column="body", recipe=FAST)
    with pytest.raises(NotFound, match="missing.csv: no such file"):
        train_classifier(tmp_path / "missing.csv", out, base_model=tiny_bert_dir, recipe=FAST)
    with pytest.raises(NotFound, match="not a model directory"):
        train_classifier(train, out, base_model=tmp_path, recipe=FAST)
    with pytest.raises(ValidationError, match="freeze_layers 5 exceeds the model's 2 layers"):
        train_classifier(train, out, base_model=tiny_bert_dir, recipe=TrainRecipe(freeze_layers=5))
    with pytest.raises(ValidationError, match="max_length 1024 exceeds"):
        train_classifier(train, out, base_model=tiny_bert_dir, recipe=TrainRecipe(max_length=1024))
    with pytest.raises(ValidationError, match="learning_rate must be"):
        train_classifier(train, out, base_model=tiny_bert_dir, recipe=TrainRecipe(learning_rate=0))
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.csv", "one.csv"]


def test_evaluate_rejects_unknown_label(tiny_bert_dir: Path, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "e.csv", [{"text": "a", "label": "fraud"}, {"text": "b", "label": "Pets"}])
    with pytest.raises(BadInput, match=r"e\.csv, line 3, column 'label': label 'Pets'"):
        evaluate_model(tiny_bert_dir, data)
    with pytest.raises(NotFound, match="not a model directory"):
        evaluate_model(tmp_path, data)
