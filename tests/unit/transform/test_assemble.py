"""Output assembly (AssembleWith None/Line), error rows, consolidated JSON Lines entries."""

from __future__ import annotations

import json

import pytest

from batchlane.transform.assemble import Assembler, consolidated_line, error_row
from batchlane.transform.split import Record


@pytest.mark.parametrize(
    ("assemble_with", "chunks", "expected"),
    [
        ("None", [b'{"a":1}', b'{"a":2}'], b'{"a":1}{"a":2}'),
        (None, [b"1\n", b"2"], b"1\n2"),
        ("Line", [b'{"a":1}', b'{"a":2}'], b'{"a":1}\n{"a":2}\n'),
        # Never doubled (SDK local mode would write 1\n2\n\n3\n\n).
        ("Line", [b"1\n2\n", b"3\n"], b"1\n2\n3\n"),
        ("Line", [b"1\n2", b"3"], b"1\n2\n3\n"),
        ("Line", [b"a\r\n", b"b"], b"a\r\nb\n"),
        ("Line", [b"", b"x"], b"\nx\n"),  # an empty result keeps its line
        ("Line", [], b""),
        ("None", [], b""),
        ("Line", ["é".encode()], "é\n".encode()),
    ],
)
def test_assembly(assemble_with: str | None, chunks: list[bytes], expected: bytes) -> None:
    assembler = Assembler(assemble_with)
    assert b"".join(assembler.feed(chunks)) == expected
    assert b"".join(assembler.add(c) for c in chunks) == expected


def test_invalid_assemble_with() -> None:
    with pytest.raises(ValueError, match="AssembleWith"):
        Assembler("Lines")


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/json", b'{"SageMakerError":{"line":3,"message":"bad input, really"}}'),
        ("application/jsonlines", b'{"SageMakerError":{"line":3,"message":"bad input, really"}}'),
        ("application/json; charset=utf-8", b'{"SageMakerError":{"line":3,"message":"bad input, really"}}'),
        ("text/csv", b'ERROR,"line 3: bad input, really"'),
        ("text/plain", b"ERROR: line 3: bad input, really"),
        (None, b"ERROR: line 3: bad input, really"),
    ],
)
def test_error_row(content_type: str | None, expected: bytes) -> None:
    assert error_row(3, "bad input,\n   really", content_type) == expected


def test_error_row_message_is_cut_and_unicode_safe() -> None:
    row = json.loads(error_row(1, "ü" * 5000, "application/json"))
    assert len(row["SageMakerError"]["message"]) == 1000
    assert row["SageMakerError"]["message"].endswith("...")


@pytest.mark.parametrize(
    ("assemble_with", "expected"),
    [("Line", b"ERROR,line 7: model said 500\n"), ("None", b"ERROR,line 7: model said 500")],
)
def test_assembler_error(assemble_with: str, expected: bytes) -> None:
    assembler = Assembler(assemble_with, "text/csv")
    assert assembler.error(Record(b"x", 6, 7, 0), "model said 500") == expected
    assert assembler.error(7, "model said 500") == expected


@pytest.mark.parametrize(
    ("output", "content_type", "value"),
    [
        (b'{"label":"billing"}', "application/json", {"label": "billing"}),
        (b'{"label":"billing"}\n', "application/jsonlines", {"label": "billing"}),
        (b"not json", "application/json", "not json"),
        (b'id1,"a, b",0.9', "text/csv", ["id1", "a, b", "0.9"]),
        (b"plain text\n", "text/plain", "plain text"),
        ("ü".encode(), None, "ü"),
    ],
)
def test_consolidated_line(output: bytes, content_type: str | None, value: object) -> None:
    line = consolidated_line("in/a.csv", Record(b"x", 4, 5, 10), output=output, content_type=content_type)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"input_key": "in/a.csv", "record_index": 4, "line": 5, "output": value}


def test_consolidated_error_line() -> None:
    line = consolidated_line("k", Record(b"x", 0, 1, 0), error="boom\nagain")
    assert json.loads(line) == {"input_key": "k", "record_index": 0, "line": 1, "error": "boom again"}
