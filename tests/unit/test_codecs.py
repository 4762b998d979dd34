"""The codec registry: decode/encode per content type and Accept negotiation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from batchlane import codecs
from batchlane.errors import BadInput, ModelError, NotAcceptable, UnsupportedContentType


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b'{"inputs": ["a", "b"]}', "application/json", {"inputs": ["a", "b"]}),
        (b'"just text"', "application/json; charset=utf-8", "just text"),
        (b'{"text": "a"}\n{"text": "b"}\n', "application/json", [{"text": "a"}, {"text": "b"}]),
        # Blank lines are records (a transform sends them): None, [] and "" hold their place.
        (b'{"text": "a"}\n\n"b"\n', "application/jsonlines", [{"text": "a"}, None, "b"]),
        (b'{"text": "a"}\n\n', "application/json", [{"text": "a"}, None]),
        (b"\n", "application/json", [None]),
        (b'{\n  "a": 1\n\n}', "application/json", {"a": 1}),
        (b'{"text": "a"}\r\n{"text": "b"}', "application/x-ndjson", [{"text": "a"}, {"text": "b"}]),
        (b'a,b\n"x, y","say ""hi"""\n', "text/csv", [["a", "b"], ["x, y", 'say "hi"']]),
        (b'"line one\nline two",2\r\n\r\n3,4\r\n', "Text/CSV", [["line one\nline two", "2"], [], ["3", "4"]]),
        (b"first\n\nsecond\r\nthird", "text/plain", ["first", "", "second", "third"]),
        ("already text\n", "text/plain", ["already text"]),
        ("caf\u00e9\n".encode("latin-1"), "text/plain; charset=latin-1", ["caf\u00e9"]),
        (b"\xef\xbb\xbf[1, 2]", "application/json", [1, 2]),
    ],
)
def test_decode(body: bytes | str, content_type: str, expected: object) -> None:
    assert codecs.decode(body, content_type) == expected


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b'{"inputs": [1,', "application/json", "invalid JSON at line 1, column 15"),
        (b'{\n  "a": tru\n}', "application/json", "invalid JSON at line 2, column 8"),
        (b'{"a": 1} trailing', "application/json", "invalid JSON at line 1, column 10: Extra data"),
        (b'{"a": 1}\n{"a": }\n', "application/json", "invalid JSON Lines record 1 at line 2, column 7"),
        (b'{"a": 1}\n\n{"a": 2}\n[oops\n', "application/jsonlines", "record 3 at line 4"),
        (b'"unterminated,1\n', "text/csv", "invalid CSV"),
        (b"\xff\xfe", "text/plain", "not valid utf-8"),
    ],
)
def test_decode_errors_name_the_place(body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(BadInput) as info:
        codecs.decode(body, content_type)
    assert message in str(info.value)
    assert info.value.status == 400


@pytest.mark.parametrize("content_type", ["application/xml", "image/png", "", None])
def test_decode_unknown_type_is_415(content_type: str | None) -> None:
    with pytest.raises(UnsupportedContentType) as info:
        codecs.decode(b"x", content_type)
    assert info.value.status == 415
    assert "application/json" in str(info.value)


RESULTS = [{"label": "fraud", "score": 0.5}, {"label": "billing, misc", "score": 0.25}]


@pytest.mark.parametrize(
    ("value", "content_type", "expected"),
    [
        (
            RESULTS,
            "application/json",
            b'[{"label":"fraud","score":0.5},{"label":"billing, misc","score":0.25}]',
        ),
        (
            RESULTS,
            "application/jsonlines",
            b'{"label":"fraud","score":0.5}\n{"label":"billing, misc","score":0.25}\n',
        ),
        (RESULTS, "text/csv", b'fraud,0.5\n"billing, misc",0.25\n'),
        ([[{"label": "a", "score": 0.7}, {"label": "b", "score": 0.3}]], "text/csv", b"a,0.7,b,0.3\n"),
        ([1, 2], "text/csv", b"1\n2\n"),
        ({"a": 1}, "application/jsonlines", b'{"a":1}\n'),
        (["x", {"a": 1}], "text/plain", b'x\n{"a":1}\n'),
        ("done", "text/plain", b"done\n"),
        (np.array([[1.5, 2.0]]), "application/json", b"[[1.5,2.0]]"),
        (np.array([[1, 2], [3, 4]]), "text/csv", b"1,2\n3,4\n"),
        ({"v": np.float32(0.5)}, "application/json; charset=utf-8", b'{"v":0.5}'),
        ("caf\u00e9", "application/json", '"caf\u00e9"'.encode()),
    ],
)
def test_encode(value: object, content_type: str, expected: bytes) -> None:
    assert codecs.encode(value, content_type) == expected


def test_encode_unknown_type_is_406() -> None:
    with pytest.raises(NotAcceptable):
        codecs.encode([1], "application/x-npy")


def test_encode_nan_as_json_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="cannot encode"):
        codecs.encode([math.nan], "application/json")


@pytest.mark.parametrize(
    ("value", "content_type"),
    [
        ([{"text": "a, b"}, "plain", {"text": 'quote "x"'}], "application/jsonlines"),
        ([["a, b", 'quote "x"', "multi\nline"], ["1", "2", "3"]], "text/csv"),
        ({"inputs": ["a"], "parameters": {"top_k": 2}}, "application/json"),
        (["one", "two"], "text/plain"),
    ],
)
def test_round_trip(value: object, content_type: str) -> None:
    assert codecs.decode(codecs.encode(value, content_type), content_type) == value


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "application/json"),
        ("", "application/json"),
        ("*/*", "application/json"),
        ("text/csv", "text/csv"),
        ("Text/CSV; charset=utf-8", "text/csv"),
        ("application/x-jsonlines", "application/jsonlines"),
        ("application/xml, text/plain;q=0.5, text/csv;q=0.9", "text/csv"),
        ("image/png, */*;q=0.1", "application/json"),
        ("text/*", "text/csv"),
        ("application/json;q=0, text/plain", "text/plain"),
    ],
)
def test_negotiate(accept: str | None, expected: str) -> None:
    assert codecs.negotiate(accept, "application/json") == expected


def test_negotiate_uses_the_default_accept() -> None:
    assert codecs.negotiate(None, "text/csv") == "text/csv"
    assert codecs.negotiate("*/*", "application/jsonlines") == "application/jsonlines"


@pytest.mark.parametrize("accept", ["image/png", "application/xml, text/html", "image/*"])
def test_negotiate_unacceptable_is_406(accept: str) -> None:
    with pytest.raises(NotAcceptable) as info:
        codecs.negotiate(accept, "application/json")
    assert info.value.status == 406
    assert "supported: application/json" in str(info.value)


def test_registry_lists_the_four_types() -> None:
    assert codecs.supported_types() == ["application/json", "application/jsonlines", "text/csv", "text/plain"]
