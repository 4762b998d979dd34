"""``batchlane models``: the model registry (CreateModel / DescribeModel / ListModels / DeleteModel)."""

from __future__ import annotations

import json
import shlex
from typing import Annotated

import typer

from batchlane.cli.options import DbOption, open_job_store, parse_env_pairs

models_app = typer.Typer(
    help="Register the models transform jobs run (like SageMaker CreateModel).", no_args_is_help=True
)


def _json(data: object) -> str:
    return json.dumps(data, indent=2, default=str)


@models_app.command("create")
def create(
    name: Annotated[
        str, typer.Argument(help="Model name: letters, digits and hyphens (SageMaker ModelName rules).")
    ],
    model_data: Annotated[
        str | None,
        typer.Option(
            help="A model folder, a model.tar.gz, or an s3:// URI of either; served by `batchlane serve`."
        ),
    ] = None,
    serve_command: Annotated[
        str | None,
        typer.Option(
            help="Your own model server command (quoted); {port} is replaced and SAGEMAKER_BIND_TO_PORT is set."
        ),
    ] = None,
    serve_url: Annotated[
        str | None, typer.Option(help="The URL of an already running model server (SageMaker contract).")
    ] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", help="Container environment variable KEY=VALUE (repeatable).")
    ] = None,
    image: Annotated[
        str | None,
        typer.Option(
            help="PrimaryContainer.Image. With --model-data, a real image runs in Docker as SageMaker runs it; "
            "none, 'local' or 'batchlane:local' mean batchlane's built-in server (docs/containers.md)."
        ),
    ] = None,
    exist_ok: Annotated[
        bool,
        typer.Option(
            "--exist-ok", help="Succeed when the same model already exists (a different one is an error)."
        ),
    ] = False,
    db: DbOption = None,
) -> None:
    """Register a model. Exactly one of --model-data, --serve-command or --serve-url, or only an --image that
    holds its model."""
    from batchlane.models import ModelRegistry, ModelSpec

    spec = ModelSpec.parse(
        {
            "name": name,
            "model_data": model_data,
            "serve_command": shlex.split(serve_command) if serve_command else None,
            "serve_url": serve_url,
            "environment": parse_env_pairs(env),
            "image": image,
        }
    )
    model = ModelRegistry(open_job_store(db)).create(spec, exist_ok=exist_ok)
    typer.echo(model.arn)


@models_app.command("describe")
def describe(name: Annotated[str, typer.Argument(help="Model name.")], db: DbOption = None) -> None:
    """Show a model as DescribeModel would."""
    from batchlane.models import ModelRegistry

    typer.echo(_json(ModelRegistry(open_job_store(db)).describe(name)))


@models_app.command("list")
def list_models(
    name_contains: Annotated[
        str | None, typer.Option(help="Only models whose name contains this text.")
    ] = None,
    max_results: Annotated[int, typer.Option(help="How many models to show (1-100).")] = 100,
    db: DbOption = None,
) -> None:
    """List registered models, newest first."""
    from rich.console import Console
    from rich.table import Table

    from batchlane.models import ModelRegistry

    models, _ = ModelRegistry(open_job_store(db)).list(name_contains=name_contains, max_results=max_results)
    table = Table("Name", "Created", "Source")
    for model in models:
        source = model.spec.model_data or model.spec.serve_url or " ".join(model.spec.serve_command or [])
        table.add_row(model.name, model.creation_time.isoformat(timespec="seconds"), source)
    Console().print(table)


@models_app.command("delete")
def delete(name: Annotated[str, typer.Argument(help="Model name.")], db: DbOption = None) -> None:
    """Delete a model (jobs already created keep their own snapshot of it)."""
    from batchlane.models import ModelRegistry

    ModelRegistry(open_job_store(db)).delete(name)
    typer.echo(f"deleted model {name}")


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
