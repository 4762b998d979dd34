"""Option types shared by several command groups (one definition, one help text)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db",
        envvar="BATCHLANE_DB",
        help="The embedded SQLite job store (jobs, file checkpoints, models). Default: ~/.batchlane/batchlane.db "
        "(or $BATCHLANE_HOME/batchlane.db).",
        show_default=False,
    ),
]


def open_job_store(db: Path | None):
    """The JobStore at ``db`` or the default location (ARN region/account from the environment)."""
    import os

    from batchlane.jobs.store import JobStore
    from batchlane.settings import BATCHLANE_DB

    return JobStore.from_env({**os.environ, BATCHLANE_DB: str(db)} if db else None)


def parse_env_pairs(pairs: list[str] | None, option: str = "--env") -> dict[str, str]:
    """``["K=V", ...]`` → dict; a pair without ``=`` is a ValidationError naming the option."""
    from batchlane.errors import ValidationError

    env: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValidationError(f"{option} expects KEY=VALUE, got {pair!r}", field=option)
        env[key] = value
    return env
