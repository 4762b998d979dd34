"""`batchlane train` and `batchlane evaluate` through the real CLI entry point (exit codes, one-line errors)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer

from batchlane.cli.main import app, main
from tests.integration.training.test_classifier import (
    LABELS,
    cfpb_small,
    check_metrics,
    check_model_dir,
    write_csv,
)

__all__ = ["cfpb_small"]  # the module-scoped fixture, shared with the library tests


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``batchlane <argv>``."""
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_train_then_evaluate(
    tiny_bert_dir: Path, cfpb_small: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train, test = cfpb_small
    out = tmp_path / "model"
    code, stdout, stderr = run_cli(
        ["train", "--data", str(train), "--eval-data", str(test), "--base-model", str(tiny_bert_dir),
         "--output", str(out), "--max-length", "64", "--batch-size", "8", "--learning-rate", "1e-3",
         "--epochs", "1", "--seed", "5", "--precision", "fp32", "--head-init", "random",
         "--class-weighting", "none"],
        capsys,
    )  # fmt: skip
    assert code == 0, stderr
    assert "macro-F1" in stdout and f"wrote {out}" in stdout
    check_model_dir(out, LABELS, 64)
    metrics = json.loads((out / "metrics.json").read_text())
    check_metrics(metrics, 24)
    assert metrics["precision"] == "fp32" and metrics["recipe"]["seed"] == 5
    assert metrics["recipe"]["head_init"] == "random" and "probe_rows" not in metrics

    code, stdout, stderr = run_cli(
        ["evaluate", "--model", str(out), "--data", str(test), "--precision", "fp32", "--json"], capsys
    )
    assert code == 0, stderr
    report = json.loads(stdout)
    assert report["confusion_matrix"] == metrics["confusion_matrix"]
    assert report["model"] == str(out)


def test_held_out_fraction_and_jsonl(
    tiny_modernbert_dir: Path,
    cfpb_small: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import csv

    train, _ = cfpb_small
    jsonl = tmp_path / "train.jsonl"
    with train.open(encoding="utf-8", newline="") as stream:
        jsonl.write_text(
            "".join(
                json.dumps({"body": r["text"], "product": r["label"]}) + "\n" for r in csv.DictReader(stream)
            )
        )
    out = tmp_path / "mb"
    code, _, stderr = run_cli(
        ["train", "--data", str(jsonl), "--text-column", "body", "--label-column", "product", "--eval-fraction",
         "0.2", "--base-model", str(tiny_modernbert_dir), "-o", str(out), "--max-length", "32", "--batch-size",
         "16", "--freeze-layers", "1", "--max-train-rows", "40", "--probe-rows", "30",
         "--class-weighting", "balanced", "--dropout", "0.05"],
        capsys,
    )  # fmt: skip
    assert code == 0, stderr
    metrics = json.loads((out / "metrics.json").read_text())
    check_metrics(metrics, 12)
    assert metrics["n_train"] == 40 and metrics["recipe"]["freeze_layers"] == 1
    assert metrics["probe_rows"] == 30 and metrics["recipe"]["class_weighting"] == "balanced"
    assert json.loads((out / "config.json").read_text())["mlp_dropout"] == 0.05


def test_errors_are_one_line_with_exit_codes(
    tiny_bert_dir: Path, cfpb_small: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train, test = cfpb_small
    base = ["--base-model", str(tiny_bert_dir), "--output", str(tmp_path / "out")]

    code, _, stderr = run_cli(["train", "--data", str(tmp_path / "nope.csv"), *base], capsys)
    assert code == 1 and stderr.startswith("error: ") and "nope.csv: no such file" in stderr
    assert "Traceback" not in stderr

    code, _, stderr = run_cli(["train", "--data", str(train), "--label-column", "product", *base], capsys)
    assert code == 1 and "line 1: no column 'product'" in stderr

    code, _, stderr = run_cli(
        ["train", "--data", str(train), "--eval-data", str(test), "--eval-fraction", "0.2", *base], capsys
    )
    assert code == 2 and "either --eval-data or --eval-fraction" in stderr

    code, _, stderr = run_cli(["train", "--data", str(train), "--precision", "fp8", *base], capsys)
    assert code == 2 and "precision must be one of" in stderr

    empty = write_csv(tmp_path / "empty.csv", [])
    code, _, stderr = run_cli(["train", "--data", str(empty), *base], capsys)
    assert code == 1 and "empty.csv: no records" in stderr

    odd = write_csv(
        tmp_path / "odd.csv", [{"text": "a", "label": "Mortgage"}, {"text": "b", "label": "Pets"}]
    )
    code, _, stderr = run_cli(["evaluate", "--model", str(tiny_bert_dir), "--data", str(odd)], capsys)
    assert (
        code == 1 and "odd.csv, line 2, column 'label': label 'Mortgage' is not one the model knows" in stderr
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_every_option_has_help(command: str) -> None:
    click_command = typer.main.get_command(app).commands[command]
    assert click_command.help
    for param in click_command.params:
        assert getattr(param, "help", None), f"{command} {param.opts} has no help"
