"""docs/architecture.md names every package and every top-level module under src/batchlane, so it cannot silently
fall behind the code (as it once left out api/, queue/, aws/, models.py and demo.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "batchlane"
DOC = (ROOT / "docs" / "architecture.md").read_text()


def _packages() -> list[str]:
    """Every package under src/batchlane, as its path relative to it with a trailing slash (``serving/``)."""
    return sorted(
        f"{init.parent.relative_to(SRC).as_posix()}/"
        for init in SRC.rglob("__init__.py")
        if init.parent != SRC
    )


def _top_level_modules() -> list[str]:
    return sorted(path.name for path in SRC.glob("*.py"))


def _named(name: str) -> bool:
    # A package is named by its own name plus "/" (``jobs/``) on a line of the tree, or by its full path.
    leaf = name.rstrip("/").rsplit("/", 1)[-1]
    return name in DOC or re.search(rf"(?m)^\s+{re.escape(leaf)}(/|\.py)\s", DOC) is not None


def test_the_source_tree_is_found() -> None:
    assert {"api/", "engines/", "transform/"} <= set(_packages())
    assert "errors.py" in _top_level_modules()


@pytest.mark.parametrize("name", _packages() + _top_level_modules())
def test_architecture_doc_names_it(name: str) -> None:
    assert _named(name), f"docs/architecture.md does not mention src/batchlane/{name}"
