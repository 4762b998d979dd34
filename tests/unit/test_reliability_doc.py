"""docs/reliability.md names the tests that cover each fault; every name must still exist, so the page cannot drift
from the suite when a test is renamed or removed."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reliability.md"

# `tests/x/test_y.py` or `tests/x/test_y.py::name`, `::Class::method`, `::name[param id]` inside backticks.
REFERENCE = re.compile(r"`(?P<path>tests/[\w/]+\.py)(?P<names>(?:::\w+)*)(?:\[[^\]`]*\])?`")


def references(text: str) -> list[tuple[str, list[str]]]:
    """Each ``(path, [name, ...])`` the text cites; the parametrize id in ``[...]`` is dropped."""
    return [
        (match["path"], [name for name in match["names"].split("::") if name])
        for match in REFERENCE.finditer(text)
    ]


def defined_names(path: Path) -> dict[str, set[str]]:
    """Top-level functions and classes of a test module, each class with the names of its methods."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names[node.name] = set()
        elif isinstance(node, ast.ClassDef):
            names[node.name] = {
                item.name for item in node.body if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
            }
    return names


def missing(reference: tuple[str, list[str]]) -> str | None:
    """Why a reference names nothing that exists, or None when it does."""
    path, names = reference
    module = ROOT / path
    if not module.is_file():
        return f"{path}: no such test file"
    if not names:
        return None
    defined = defined_names(module)
    first, *rest = names
    if first not in defined:
        return f"{path}::{first}: no such test in the file"
    if rest and (len(rest) > 1 or rest[0] not in defined[first]):
        return f"{path}::{'::'.join(names)}: no such method"
    return None


def test_the_parser_reads_every_form_of_reference() -> None:
    text = (
        "`tests/unit/transform/test_split.py::test_line_split[non-UTF-8 bytes]`, `tests/e2e/test_blank_lines.py`, "
        "`tests/a/test_b.py::TestC::test_d`, `tests/README.md`, `src/x.py::f`"
    )
    assert references(text) == [
        ("tests/unit/transform/test_split.py", ["test_line_split"]),
        ("tests/e2e/test_blank_lines.py", []),
        ("tests/a/test_b.py", ["TestC", "test_d"]),
    ]


def test_a_renamed_test_is_caught() -> None:
    assert missing(("tests/unit/transform/test_split.py", ["test_line_split"])) is None
    assert missing(("tests/unit/transform/test_split.py", ["test_no_longer_here"])) == (
        "tests/unit/transform/test_split.py::test_no_longer_here: no such test in the file"
    )
    assert missing(("tests/unit/test_gone.py", [])) == "tests/unit/test_gone.py: no such test file"


def test_the_page_cites_many_tests() -> None:
    # A guard on the guard: if the reference format changed, the check below would pass on nothing.
    assert len(references(DOC.read_text(encoding="utf-8"))) > 100


@pytest.mark.slow
def test_every_test_the_page_names_exists() -> None:
    problems = [problem for ref in references(DOC.read_text(encoding="utf-8")) if (problem := missing(ref))]
    assert problems == [], "docs/reliability.md names tests that do not exist:\n" + "\n".join(problems)
