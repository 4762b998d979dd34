"""Entry point of the ``batchlane`` command.

Each command module exposes ``register(app)``; heavy libraries are imported inside the commands, so ``--help`` is
fast. Domain errors (``BatchlaneError``) end as one line on stderr with the error's exit code, never a traceback.
"""

from __future__ import annotations

import importlib
import logging
import sys

import typer

from batchlane import __version__
from batchlane.errors import BatchlaneError

COMMAND_MODULES = (
    "serve",
    "package",
    "train",
    "demo",
    "models",
    "transform",
    "jobs",
    "queue",
    "worker",
    "server",
)

app = typer.Typer(
    name="batchlane",
    help="SageMaker-compatible batch transform and inference serving for transformer text classifiers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"batchlane {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
    log_level: str = typer.Option("INFO", "--log-level", envvar="BATCHLANE_LOG_LEVEL", help="Logging level."),
) -> None:
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # One line per HTTP request drowns everything else; the job's own lines go to its log file.
    logging.getLogger("httpx").setLevel(logging.WARNING)


for _name in COMMAND_MODULES:
    importlib.import_module(f"batchlane.cli.{_name}").register(app)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; a ``BatchlaneError`` becomes ``error: <message>`` and its exit code."""
    try:
        app(args=argv, standalone_mode=False) if argv is not None else app(standalone_mode=False)
    except BatchlaneError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except Exception as exc:  # click usage errors arrive here with standalone_mode=False
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
