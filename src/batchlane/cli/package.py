"""`batchlane package`: build a SageMaker-layout model.tar.gz (thin over ``batchlane.serving.archive``)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("package")
    def package(
        model_dir: Path = typer.Option(
            ..., "--model-dir", help="Folder with the model files (archive root)."
        ),
        output: Path = typer.Option(..., "--output", "-o", help="Archive to write, e.g. model.tar.gz."),
        code: list[Path] = typer.Option(
            None, "--code", help="A file or folder to put under code/ (repeatable), e.g. inference.py."
        ),
        requirements: Path = typer.Option(
            None,
            "--requirements",
            help="A requirements.txt to store as code/requirements.txt.",
            show_default=False,
        ),
    ) -> None:
        """Build a SageMaker-layout model archive: model files at the root, user code under code/."""
        from batchlane.serving.archive import package_model

        written = package_model(model_dir, output, code=code or (), requirements=requirements)
        typer.echo(str(written))
