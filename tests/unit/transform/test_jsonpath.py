"""The SageMaker JSONPath subset: parsing (with positions), inclusive slices, unions, errors."""

from __future__ import annotations

from typing import Any

import pytest

from batchlane.errors import BadInput, ValidationError
from batchlane.transform.jsonpath import parse

ROW = ["a", "b", "c", "d", "e", "f"]
SEVEN = list(range(7))
DOC = {
    "id": 7,
    "features": [1, 2, 3],
    "f": {"c1": 1, "c2": 2, "c3": 3},
    "SageMakerOutput": {"label": 1},
    "@timestamp": "t",
    "items": [{"a": 1}, {"a": 2}],
}


@pytest.mark.parametrize(
    ("expr", "value", "expected"),
    [
        # docs/transform.md / DG-DP: slice ends are inclusive.
        ("$[1:4]", ROW, ["b", "c", "d", "e"]),
        ("$[:5]", SEVEN, [0, 1, 2, 3, 4, 5]),
        ("$[2:]", ROW, ["c", "d", "e", "f"]),
        ("$[1:]", ROW, ["b", "c", "d", "e", "f"]),
        ("$[:]", ROW, ROW),
        ("$[2:2]", ROW, ["c"]),
        ("$[-2:]", ROW, ["e", "f"]),
        ("$[:-2]", ROW, ["a", "b", "c", "d", "e"]),
        ("$[-3:-2]", ROW, ["d", "e"]),
        ("$[0]", ROW, "a"),
        ("$[-1]", ROW, "f"),
        ("$[1,3,5]", ROW, ["b", "d", "f"]),
        ("$[0,-1]", ROW, ["a", "f"]),
        ("$[0, -1]", ROW, ["a", "f"]),
        ("$[0,0]", ROW, ["a", "a"]),
        # Unions of ranges (the service rejects these at run time; we accept them).
        ("$[0:2,4:]", ROW, ["a", "b", "c", "e", "f"]),
        ("$[0:1, 3, -1]", ROW, ["a", "b", "d", "f"]),
        ("$[*]", ROW, ROW),
        ("$", ROW, ROW),
        ("", ROW, ROW),
        ("$.id", DOC, 7),
        ("$['id']", DOC, 7),
        ('$["id"]', DOC, 7),
        ("$.features", DOC, [1, 2, 3]),
        ("$.features[1:]", DOC, [2, 3]),
        ("$.features[-1]", DOC, 3),
        ("$.f.*", DOC, [1, 2, 3]),
        ("$.f[*]", DOC, [1, 2, 3]),
        ("$.f.['c1','c2']", DOC, {"c1": 1, "c2": 2}),
        ("$['id','SageMakerOutput']", DOC, {"id": 7, "SageMakerOutput": {"label": 1}}),
        ("$['id', 'features']", DOC, {"id": 7, "features": [1, 2, 3]}),
        ("$.SageMakerOutput.label", DOC, 1),
        ("$.@timestamp", DOC, "t"),
        ("$.items[*].a", DOC, [1, 2]),
        ("$.items[0].a", DOC, 1),
        ("$[*]", [], []),
        ("$[:]", [], []),
        ("$.*", {}, []),
    ],
)
def test_apply(expr: str, value: Any, expected: Any) -> None:
    assert parse(expr).apply(value) == expected


@pytest.mark.parametrize(
    ("expr", "definite", "identity"),
    [
        ("$", True, True),
        ("", True, True),
        ("$.a[0]", True, False),
        ("$['a','b']", True, False),
        ("$[1:]", False, False),
        ("$[0,1]", False, False),
        ("$.*", False, False),
    ],
)
def test_path_kind(expr: str, definite: bool, identity: bool) -> None:
    path = parse(expr)
    assert (path.definite, path.is_identity) == (definite, identity)


@pytest.mark.parametrize(
    ("expr", "uses_names"),
    [("$", False), ("$[1:]", False), ("$[*]", False), ("$.id", True), ("$['a','b']", True), ("$[0].a", True)],
)
def test_uses_names(expr: str, uses_names: bool) -> None:
    assert parse(expr).uses_names is uses_names


@pytest.mark.parametrize(
    ("expr", "position", "reason"),
    [
        ("x", 0, "a path must begin with '\\$'"),
        ("a.b", 0, "a path must begin with '\\$'"),
        ("$..a", 1, "recursive descent"),
        ("$.", 2, "expected a name"),
        ("$a", 1, "unexpected 'a'"),
        ("$[", 2, "expected an index"),
        ("$[]", 2, "expected an index"),
        ("$[1", 3, "expected '\\]'"),
        ("$[1:", 4, "expected '\\]'"),
        ("$[1:2:3]", 5, "slice steps"),
        ("$[a]", 2, "expected an index"),
        ("$[?(@.a)]", 2, "filter and script"),
        ("$[(@.length-1)]", 2, "filter and script"),
        ("$['a'", 5, "expected '\\]'"),
        ("$['a", 2, "unterminated"),
        ("$['']", 2, "empty name"),
        ("$['c2.x']", 2, "nested paths inside brackets"),
        ("$.f.['c1','c2.grandchild']", 10, "nested paths inside brackets"),
        ("$['a',1]", 6, "expected a quoted name"),
        ("$[1,'a']", 4, "expected an index"),
        ("$[3:1]", 2, "slice start 3 comes after its end 1"),
        ("$[-1:-3]", 2, "slice start -1 comes after its end -3"),
        ("$[1]x", 4, "unexpected 'x'"),
        ("$[+1]", 2, "expected an index"),
    ],
)
def test_parse_errors_name_the_position(expr: str, position: int, reason: str) -> None:
    with pytest.raises(ValidationError, match=rf"Invalid JsonPath .* at position {position}: {reason}"):
        parse(expr)


def test_length_limit_is_63() -> None:
    assert parse("$." + "a" * 61).apply({"a" * 61: 1}) == 1
    with pytest.raises(ValidationError, match="64 characters, at most 63"):
        parse("$." + "a" * 62)


def test_not_a_string() -> None:
    with pytest.raises(ValidationError, match="must be a string"):
        parse(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("expr", "value", "match"),
    [
        ("$[6]", ROW, r"\$\[6\]: index 6 is outside the array of 6 elements"),
        ("$[-7]", ROW, "index -7 is outside"),
        ("$[0,9]", ROW, "index 9 is outside"),
        ("$[1:9]", ROW, "index 9 is outside"),
        ("$[9:]", ROW, "index 9 is outside"),
        ("$[:9]", ROW, "index 9 is outside"),
        ("$[0]", [], "index 0 is outside the array of 0 elements"),
        ("$[4:-3]", ROW, "slice start 4 comes after its end -3"),
        ("$.missing", DOC, r"no key 'missing'"),
        ("$['id','nope']", DOC, r"no key 'nope'"),
        ("$.id", ROW, "expected an object, got an array"),
        ("$[0]", DOC, "expected an array, got an object"),
        ("$.id.x", DOC, "expected an object, got a int value"),
        ("$.id.*", DOC, r"'\*' needs an object or an array"),
        ("$.items[*].b", DOC, r"\$\['items'\]\[\*\]\['b'\]: no key 'b'"),
    ],
)
def test_apply_errors_are_bad_input(expr: str, value: Any, match: str) -> None:
    with pytest.raises(BadInput, match=match):
        parse(expr).apply(value)


def test_str_is_the_expression() -> None:
    assert str(parse("$[0, -1]")) == "$[0, -1]"
