"""The container app at the ASGI level: the SageMaker contract, codecs, user code and the error table."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from batchlane.errors import ModelLoadError
from batchlane.examples.user_code import example_path, make_model_dir
from batchlane.serving.app import create_app
from batchlane.serving.archive import package_model
from batchlane.serving.classifier import ClassifierOptions, SequenceClassifier
from batchlane.settings import ServeSettings

LABELS = {"billing", "fraud", "service"}
TEXTS = [
    "my card was charged twice",
    "hi",
    "someone opened an account in my name and I want it closed",
    "ok then",
]


def _app(model_dir: Path, env: dict[str, str] | None = None, **overrides: object) -> FastAPI:
    return create_app(ServeSettings.from_env(env or {}, model_dir=model_dir, **overrides))


def _wait_ready(client: TestClient, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/ping").status_code != 200:
        assert time.monotonic() < deadline, "model did not load"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def client(tiny_bert_dir: Path) -> Iterator[TestClient]:
    with TestClient(_app(tiny_bert_dir)) as test_client:
        _wait_ready(test_client)
        yield test_client


def _post(
    client: TestClient, body: str | bytes, content_type: str | None, accept: str | None = None
) -> httpx.Response:
    headers = {k: v for k, v in (("content-type", content_type), ("accept", accept)) if v is not None}
    return client.post("/invocations", content=body, headers=headers)


def _records(response: httpx.Response) -> list:
    """Parse a response body back into one item per record, whatever its content type."""
    media = response.headers["content-type"].split(";")[0]
    text = response.text
    if media == "application/json":
        return response.json()
    if media == "application/jsonlines":
        return [json.loads(line) for line in text.splitlines()]
    if media == "text/csv":
        return [{"label": row[0], "score": float(row[1])} for row in csv.reader(io.StringIO(text))]
    return [{"label": line} for line in text.splitlines()]


BODIES = {
    "application/json": json.dumps({"inputs": TEXTS}),
    "application/jsonlines": "".join(json.dumps({"text": t}) + "\n" for t in TEXTS),
    "text/csv": "".join(f'"{t}"\n' for t in TEXTS),
    "text/plain": "\n".join(TEXTS) + "\n",
}
ACCEPTS = ["application/json", "application/jsonlines", "text/csv", "text/plain"]


@pytest.fixture(scope="module")
def expected(tiny_bert_dir: Path) -> list[dict]:
    classifier = SequenceClassifier.load(tiny_bert_dir, ClassifierOptions())
    return [classifier.classify([text])[0] for text in TEXTS]


@pytest.mark.parametrize("accept", ACCEPTS)
@pytest.mark.parametrize("content_type", list(BODIES))
def test_each_content_type_in_and_out(
    client: TestClient, expected: list[dict], content_type: str, accept: str
) -> None:
    response = _post(client, BODIES[content_type], content_type, accept)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(accept)
    records = _records(response)
    assert [r["label"] for r in records] == [e["label"] for e in expected]
    if accept != "text/plain":
        assert [r["score"] for r in records] == pytest.approx([e["score"] for e in expected], abs=1e-4)


@pytest.mark.parametrize("accept", [None, "*/*", "application/xml, */*;q=0.1"])
def test_missing_or_wildcard_accept_gives_json(client: TestClient, accept: str | None) -> None:
    response = _post(client, BODIES["text/plain"], "text/plain", accept)
    assert response.headers["content-type"] == "application/json"
    assert len(response.json()) == len(TEXTS)


def test_default_accept_comes_from_the_environment(tiny_bert_dir: Path) -> None:
    app = _app(tiny_bert_dir, {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv"})
    with TestClient(app) as test_client:
        _wait_ready(test_client)
        response = _post(test_client, "a\nb\n", "text/plain", "*/*")
    assert response.headers["content-type"].startswith("text/csv")
    assert len(response.text.splitlines()) == 2


def test_json_lines_sent_as_json_works(client: TestClient) -> None:
    """A MultiRecord mini-batch of a .jsonl file arrives as application/json with one record per line."""
    response = _post(client, BODIES["application/jsonlines"], "application/json", "application/jsonlines")
    assert response.status_code == 200
    assert len(response.text.splitlines()) == len(TEXTS)


def test_csv_header_selects_the_text_column(client: TestClient, expected: list[dict]) -> None:
    body = "id,text\n" + "".join(f'{i},"{t}"\n' for i, t in enumerate(TEXTS))
    records = _post(client, body, "text/csv; charset=utf-8").json()
    assert [r["label"] for r in records] == [e["label"] for e in expected]


def test_top_k_parameter(client: TestClient) -> None:
    body = json.dumps({"inputs": TEXTS[:2], "parameters": {"top_k": 2}})
    records = _post(client, body, "application/json").json()
    assert len(records) == 2 and all(len(r) == 2 and r[0]["score"] >= r[1]["score"] for r in records)
    csv_rows = _post(client, body, "application/json", "text/csv").text.splitlines()
    assert len(csv_rows) == 2 and all(len(row.split(",")) == 4 for row in csv_rows)


def test_top_k_setting(tiny_modernbert_dir: Path) -> None:
    with TestClient(_app(tiny_modernbert_dir, top_k=3)) as test_client:
        _wait_ready(test_client)
        records = _post(test_client, "a\nb\nc\n", "text/plain").json()
    assert [{r["label"] for r in ranked} for ranked in records] == [LABELS] * 3


def test_modernbert_one_result_per_record_in_order(tiny_modernbert_dir: Path) -> None:
    texts = [("word " * n).strip() for n in (40, 1, 7, 120, 3, 60, 2)]
    classifier = SequenceClassifier.load(tiny_modernbert_dir, ClassifierOptions())
    expected = [classifier.classify([text])[0] for text in texts]
    with TestClient(_app(tiny_modernbert_dir, token_budget=128)) as test_client:
        _wait_ready(test_client)
        records = _post(test_client, json.dumps(texts), "application/json").json()
    assert [r["label"] for r in records] == [e["label"] for e in expected]
    assert [r["score"] for r in records] == pytest.approx([e["score"] for e in expected], abs=1e-4)


def test_ping_is_503_until_the_model_loads(tiny_bert_dir: Path, tmp_path: Path) -> None:
    model_dir = make_model_dir("slow_load", tiny_bert_dir, tmp_path / "slow")
    with TestClient(_app(model_dir)) as test_client:
        not_ready = test_client.get("/ping")
        assert not_ready.status_code == 503
        assert not_ready.json()["type"] == "ModelNotReady"
        early = _post(test_client, '["x"]', "application/json")
        assert early.status_code == 503 and "still loading" in early.json()["message"]
        assert test_client.get("/execution-parameters").status_code == 200  # answers while loading
        (model_dir / "release").touch()
        _wait_ready(test_client)
        ready = test_client.get("/ping")
        assert (ready.status_code, ready.content) == (200, b"")
        assert _post(test_client, '["x", "y"]', "application/json").json() == ["loaded", "loaded"]


def test_load_failure_keeps_ping_503_and_reports(tiny_bert_dir: Path, tmp_path: Path) -> None:
    failures: list[BaseException] = []
    model_dir = make_model_dir("broken_model_fn", tiny_bert_dir, tmp_path / "broken")
    app = create_app(ServeSettings.from_env({}, model_dir=model_dir), on_load_failure=failures.append)
    with TestClient(app) as test_client:
        deadline = time.monotonic() + 10
        while not failures and time.monotonic() < deadline:
            time.sleep(0.02)
        assert test_client.get("/ping").status_code == 503
        response = _post(test_client, '["x"]', "application/json")
    assert "weights are corrupt" in str(failures[0])
    assert response.status_code == 503 and "failed to load" in response.json()["message"]


@pytest.mark.parametrize(
    ("body", "content_type", "accept", "status", "error_type", "message"),
    [
        ('{"inputs": ["a",', "application/json", None, 400, "BadInput", "invalid JSON at line 1, column 17"),
        ('{"text": "a"}\n{"text": }\n', "application/jsonlines", None, 400, "BadInput", "record 1 at line 2"),
        ('{"other": 1}', "application/json", None, 400, "BadInput", "no string 'text' or 'inputs'"),
        ("", "text/plain", None, 400, "BadInput", "no records"),
        (
            "<a/>",
            "application/xml",
            None,
            415,
            "UnsupportedContentType",
            "'application/xml' is not supported",
        ),
        ("x", None, None, 415, "UnsupportedContentType", "no Content-Type"),
        ("x", "text/plain", "image/png", 406, "NotAcceptable", "supported: application/json"),
    ],
)
def test_error_table(
    client: TestClient,
    body: str,
    content_type: str | None,
    accept: str | None,
    status: int,
    error_type: str,
    message: str,
) -> None:
    response = _post(client, body, content_type, accept)
    assert response.status_code == status
    payload = response.json()
    assert (payload["code"], payload["type"]) == (status, error_type)
    assert message in payload["message"]


def test_payload_limit_by_content_length(tiny_bert_dir: Path) -> None:
    with TestClient(_app(tiny_bert_dir, {"SAGEMAKER_MAX_PAYLOAD_IN_MB": "1"})) as test_client:
        response = _post(test_client, "a" * (1024 * 1024 + 1), "text/plain")
    assert response.status_code == 413
    message = response.json()["message"]
    assert "1 MB" in message and "SAGEMAKER_MAX_PAYLOAD_IN_MB" in message and "1048577 bytes" in message


def test_payload_limit_while_streaming(tiny_bert_dir: Path) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the size is only known while reading
        for _ in range(40):
            yield b"b" * 32768

    with TestClient(_app(tiny_bert_dir, {"SAGEMAKER_MAX_PAYLOAD_IN_MB": "1"})) as test_client:
        _wait_ready(test_client)
        response = test_client.post("/invocations", content=chunks(), headers={"content-type": "text/plain"})
    assert response.status_code == 413
    assert "more than 1048576 bytes" in response.json()["message"]


def test_model_error_is_a_short_500(tiny_bert_dir: Path, tmp_path: Path) -> None:
    with TestClient(_app(make_model_dir("raises", tiny_bert_dir, tmp_path / "raises"))) as test_client:
        _wait_ready(test_client)
        response = _post(test_client, '["x"]', "application/json")
    assert response.status_code == 500
    assert response.json() == {
        "code": 500,
        "type": "ModelError",
        "message": "predict_fn raised ValueError: the model exploded on purpose",
    }
    assert "Traceback" not in response.text and "second line" not in response.text


def test_user_code_with_context(tiny_bert_dir: Path, tmp_path: Path) -> None:
    with TestClient(_app(make_model_dir("with_context", tiny_bert_dir, tmp_path / "ctx"))) as test_client:
        _wait_ready(test_client)
        response = test_client.post(
            "/invocations",
            content=json.dumps({"inputs": TEXTS}),
            headers={"content-type": "application/json", "X-Amzn-SageMaker-Custom-Attributes": "job=42"},
        )
    body = response.json()
    assert response.status_code == 200 and body["attributes"] == "job=42"
    assert len(body["predictions"]) == len(TEXTS) and {p["label"] for p in body["predictions"]} <= LABELS


def test_user_code_without_context(tiny_bert_dir: Path, tmp_path: Path) -> None:
    with TestClient(
        _app(make_model_dir("without_context", tiny_bert_dir, tmp_path / "plain"))
    ) as test_client:
        _wait_ready(test_client)
        as_csv = _post(test_client, "fraud on my card\nthanks\n", "text/csv", "text/csv")
        as_json = _post(test_client, '{"inputs": ["service was slow"]}', "application/json")
        refused = _post(test_client, "x", "text/plain")
    assert (as_csv.text, as_csv.headers["content-type"].split(";")[0]) == ("fraud\nbilling\n", "text/csv")
    assert as_json.json() == ["service"]
    assert refused.status_code == 500 and "input_fn raised ValueError" in refused.json()["message"]


def test_user_transform_fn(tiny_bert_dir: Path, tmp_path: Path) -> None:
    with TestClient(_app(make_model_dir("transform_fn", tiny_bert_dir, tmp_path / "tf"))) as test_client:
        _wait_ready(test_client)
        response = _post(test_client, "fraud\nbilling\nhello\n", "text/plain", "text/csv")
    assert response.headers["content-type"] == "application/jsonlines"
    assert [json.loads(line)["label"] for line in response.text.splitlines()] == [
        "fraud",
        "billing",
        "billing",
    ]
    assert json.loads(response.text.splitlines()[0])["accept"] == "text/csv"


def test_user_predict_fn_with_default_model_and_codecs(tiny_bert_dir: Path, tmp_path: Path) -> None:
    with TestClient(_app(make_model_dir("predict_only", tiny_bert_dir, tmp_path / "po"))) as test_client:
        _wait_ready(test_client)
        records = _post(test_client, "abc\nde\n", "text/plain", "application/jsonlines").text.splitlines()
    assert [json.loads(r)["chars"] for r in records] == [3, 2]


@pytest.mark.parametrize(
    ("example", "message"), [("mixed", "transform_fn and predict_fn"), ("bad_signature", "predict_fn")]
)
def test_contract_violations_fail_at_start_up(
    tiny_bert_dir: Path, tmp_path: Path, example: str, message: str
) -> None:
    with pytest.raises(ModelLoadError, match=message):
        _app(make_model_dir(example, tiny_bert_dir, tmp_path / example))


def test_execution_parameters_from_env(tiny_bert_dir: Path) -> None:
    env = {
        "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "4",
        "SAGEMAKER_BATCH_STRATEGY": "SINGLE_RECORD",
        "SAGEMAKER_MAX_PAYLOAD_IN_MB": "12",
    }
    with TestClient(_app(tiny_bert_dir, env)) as test_client:
        parameters = test_client.get("/execution-parameters").json()
    assert parameters == {
        "MaxConcurrentTransforms": 4,
        "BatchStrategy": "SINGLE_RECORD",
        "MaxPayloadInMB": 12,
    }


def test_serves_a_model_archive(tiny_bert_dir: Path, tmp_path: Path) -> None:
    archive = package_model(tiny_bert_dir, tmp_path / "model.tar.gz", code=[example_path("without_context")])
    app = create_app(ServeSettings.from_env({}, model_dir=archive), cache_dir=tmp_path / "cache")
    with TestClient(app) as test_client:
        _wait_ready(test_client)
        assert _post(test_client, '["fraud alert"]', "application/json").json() == ["fraud"]


@pytest.mark.anyio
async def test_concurrent_requests_without_lifespan(tiny_bert_dir: Path) -> None:
    """Through httpx's ASGI transport (no lifespan events): loading starts on the first request."""
    import anyio

    app = _app(tiny_bert_dir, {"SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "2"})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://container") as http:
        deadline = time.monotonic() + 30
        while (await http.get("/ping")).status_code != 200:
            assert time.monotonic() < deadline
            await anyio.sleep(0.02)
        results: dict[int, list] = {}

        async def call(n: int) -> None:
            body = "\n".join(f"{'w ' * (i + n)}" for i in range(1, 6))
            response = await http.post("/invocations", content=body, headers={"content-type": "text/plain"})
            results[n] = response.json()

        async with anyio.create_task_group() as tasks:
            for n in range(6):
                tasks.start_soon(call, n)
    assert sorted(results) == list(range(6)) and all(len(r) == 5 for r in results.values())
    # Text i of request n equals text i-1 of request n+1: same input, same answer despite the concurrency.
    for n in range(5):
        assert [r["label"] for r in results[n][1:]] == [r["label"] for r in results[n + 1][:-1]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
