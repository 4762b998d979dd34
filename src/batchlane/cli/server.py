"""`batchlane server` (placeholder until its issue lands; registers nothing)."""

import typer


def register(app: typer.Typer) -> None:
    return None
