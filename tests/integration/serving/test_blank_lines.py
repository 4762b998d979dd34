"""`/invocations` of the default classifier with blank lines in the body: each blank line is a record answered with
the documented empty result (docs/serving.md), so a batch transform gets one result per line it sent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.servers import loaded_model_server

LABELS = {"billing", "fraud", "service"}


@pytest.fixture(scope="module")
def client(tiny_bert_dir: Path) -> Iterator[TestClient]:
    with loaded_model_server(tiny_bert_dir, timeout=30) as test_client:
        yield test_client


def _post(client: TestClient, body: str, content_type: str, accept: str) -> list[str]:
    response = client.post(
        "/invocations", content=body, headers={"content-type": content_type, "accept": accept}
    )
    assert response.status_code == 200, response.text
    assert response.text.endswith("\n")
    return response.text[:-1].split("\n")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ('"my card was charged twice"\n\n"hi"\n\n', "text/csv"),
        ('{"text": "my card was charged twice"}\n\n{"text": "hi"}\n   \n', "application/jsonlines"),
        ('{"text": "my card was charged twice"}\n\n{"text": "hi"}\n\n', "application/json"),
        ("my card was charged twice\n\nhi\n\n", "text/plain"),
    ],
)
@pytest.mark.parametrize("accept", ["application/jsonlines", "text/csv", "text/plain"])
def test_blank_lines_are_answered_in_place(
    client: TestClient, body: str, content_type: str, accept: str
) -> None:
    lines = _post(client, body, content_type, accept)

    assert len(lines) == 4
    empty = "null" if accept == "application/jsonlines" else ""
    assert lines[1] == lines[3] == empty
    assert any(label in lines[0] for label in LABELS) and any(label in lines[2] for label in LABELS)


@pytest.mark.parametrize(
    ("body", "content_type", "accept", "expected"),
    [
        ("\n", "text/csv", "text/csv", "\n"),
        ("\n", "application/jsonlines", "application/jsonlines", "null\n"),
        ("\n", "application/json", "application/json", "[null]"),
        ("\n", "text/plain", "text/plain", "\n"),
    ],
)
def test_a_lone_blank_record_is_answered_not_refused(
    client: TestClient, body: str, content_type: str, accept: str, expected: str
) -> None:
    # SingleRecord sends a blank line as its own request; before, this was a 400 "the payload holds no records".
    response = client.post(
        "/invocations", content=body, headers={"content-type": content_type, "accept": accept}
    )
    assert response.status_code == 200, response.text
    assert response.text == expected


def test_an_empty_body_still_holds_no_records(client: TestClient) -> None:
    response = client.post("/invocations", content="", headers={"content-type": "text/csv"})
    assert response.status_code == 400 and "no records" in response.json()["message"]
