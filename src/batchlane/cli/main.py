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
    "monitor",
    "deploy",
    "container",
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
    """Run the CLI and exit with its status (see docs/transform.md, "Exit codes").

    A ``BatchlaneError`` becomes ``error: <message>`` and its exit code; a usage error (an unknown option or command,
    a bad value) becomes one line with click's hint and exit 2; Ctrl-C that reaches here exits 130.
    """
    try:
        code = app(args=argv, prog_name="batchlane", standalone_mode=False)
    except BatchlaneError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        code = exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(130)
    except typer.TyperException as exc:  # click's usage errors (typer vendors click as typer._click)
        sys.exit(_usage_error(exc))
    # With standalone_mode=False click returns what the command returned, or the code of a typer.Exit it caught.
    sys.exit(code if isinstance(code, int) else 0)


def _usage_error(exc: Exception) -> int:
    """Print a click exception as one line (``error: <message> Try '<command> --help' for help.``); return its exit
    code."""
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError":  # `batchlane` or `batchlane jobs` alone: show the help
        exc.show()  # type: ignore[attr-defined]
        return 0
    format_message = getattr(exc, "format_message", None)
    message = (format_message() if format_message else str(exc)).strip()
    if not message.endswith((".", "?", "!")):
        message += "."
    hint = f" Try '{ctx.command_path} --help' for help." if ctx is not None else ""
    typer.echo(f"error: {message}{hint}", err=True)
    return int(getattr(exc, "exit_code", 2))


if __name__ == "__main__":
    main()
