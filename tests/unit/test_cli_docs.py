"""Every CLI command has help for itself and each option, and is mentioned in the README or docs/."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
import typer.main

from batchlane.cli.main import app

ROOT = Path(__file__).resolve().parents[2]


def _commands(
    group: click.Group, prefix: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], click.Command]]:
    found = []
    for name, command in sorted(group.commands.items()):
        path = (*prefix, name)
        found.append((path, command))
        # typer may bring its own copy of click, whose Group is not `click.Group`: recurse by shape.
        if isinstance(getattr(command, "commands", None), dict):
            found.extend(_commands(command, path))
    return found


COMMANDS = _commands(typer.main.get_command(app))
DOCS = (ROOT / "README.md").read_text() + "".join(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))


def test_the_main_groups_are_registered() -> None:
    names = {path[0] for path, _ in COMMANDS}
    assert {"serve", "package", "train", "demo", "models", "transform", "jobs", "queue"} <= names


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_command_and_options_have_help(path: tuple[str, ...], command: click.Command) -> None:
    assert (command.help or command.short_help or "").strip(), f"batchlane {' '.join(path)} has no help text"
    for param in command.params:
        if getattr(param, "param_type_name", None) == "option" and not param.hidden:
            assert (param.help or "").strip(), (
                f"batchlane {' '.join(path)} option {param.opts[0]} has no help"
            )


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_command_is_documented(path: tuple[str, ...], command: click.Command) -> None:
    assert f"batchlane {' '.join(path)}" in DOCS or (
        len(path) > 1 and f"batchlane {path[0]}" in DOCS and path[-1] in DOCS
    ), f"`batchlane {' '.join(path)}` is not mentioned in README.md or docs/"
