"""``/invocations`` with hostile JSON: nesting deeper than the parser goes, and lone UTF-16 surrogates.

Both used to be 500s (``RecursionError``, and a ``TypeError`` from the tokenizer); they must be 400s naming the
problem, for the default handler and for user code (``input_fn`` and ``transform_fn``) alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from batchlane.examples.user_code import make_model_dir
from tests.servers import loaded_model_server

DEEP_JSON = "[" * 100_000 + "]" * 100_000
DEEP_OBJECT = '{"inputs":' * 5_000 + '"x"' + "}" * 5_000
LONE_SURROGATE = '{"inputs": ["fine", "bad \\ud800 text"]}'
CASES = {
    "deep array": ("application/json", DEEP_JSON, "nested deeper than the parser's limit"),
    "deep object": ("application/json", DEEP_OBJECT, "nested deeper than the parser's limit"),
    "deep JSON Lines record": (
        "application/jsonlines",
        '{"text": "ok"}\n' + DEEP_JSON + "\n",
        "JSON Lines record 1 nested deeper",
    ),
    "lone surrogate": ("application/json", LONE_SURROGATE, "lone surrogate \\ud800 at line 1, column 26"),
    "lone low surrogate in JSON Lines": (
        "application/jsonlines",
        '{"text": "ok"}\n{"text": "\\udc00"}\n',
        "lone surrogate \\udc00 at line 2, column 11",
    ),
}


@pytest.fixture(scope="module")
def default_handler(tiny_bert_dir: Path) -> Iterator[TestClient]:
    with loaded_model_server(tiny_bert_dir) as client:
        yield client


@pytest.fixture(scope="module", params=["with_context", "transform_fn"])
def user_handler(
    request: pytest.FixtureRequest, tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    # with_context: the user's input_fn calls json.loads; transform_fn: the user decodes in transform_fn.
    model_dir = make_model_dir(request.param, tiny_bert_dir, tmp_path_factory.mktemp(request.param))
    with loaded_model_server(model_dir) as client:
        yield client


def _assert_bad_request(client: TestClient, content_type: str, body: str, message: str) -> None:
    response = client.post("/invocations", content=body.encode(), headers={"content-type": content_type})
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["type"] == "BadInput"
    assert message in error["message"], error["message"]
    assert "\n" not in error["message"]


@pytest.mark.parametrize("case", CASES)
def test_default_handler_answers_400(default_handler: TestClient, case: str) -> None:
    _assert_bad_request(default_handler, *CASES[case])
    pair = '{"inputs": ["an escaped pair \\ud83d\\ude00 is fine"]}'
    ok = default_handler.post("/invocations", content=pair, headers={"content-type": "application/json"})
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        ("application/json", DEEP_JSON, "nested too deeply"),
        (
            "application/json",
            json.dumps({"inputs": ["x"]})[:-1] + ', "y": "\\ud800"}',
            "lone surrogate \\ud800",
        ),
    ],
    ids=["deep", "lone surrogate"],
)
def test_user_handlers_answer_400(
    user_handler: TestClient, content_type: str, body: str, message: str
) -> None:
    _assert_bad_request(user_handler, content_type, body, message)
