"""Real-time dynamic batching: batch assembly with a plain queue, the batcher with a real tiny model, and the server
merging concurrent HTTP requests (uvicorn on a free loopback port)."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn

from batchlane.serving import classifier as classifier_mod
from batchlane.serving.app import create_app
from batchlane.serving.batching import pad_batch
from batchlane.serving.classifier import ClassifierOptions, SequenceClassifier
from batchlane.serving.dynamic_batching import (
    DynamicBatcher,
    Pending,
    is_full,
    request_concurrency,
    take_batch,
)
from batchlane.settings import ServeSettings
from batchlane.testing import free_port, wait_for_http

TEXTS = [
    "my card was charged twice",
    "hi",
    "someone opened an account in my name and I want it closed",
    "ok then",
    "the fee was charged twice on my statement and nobody answers the phone",
    "they never answered my calls",
]


def _pending(*lengths: int) -> Pending:
    return Pending([[1] * n for n in lengths])


@pytest.mark.parametrize(
    ("requests", "max_records", "budget", "taken"),
    [
        ([], 8, 100, 0),
        ([(3,), (4, 4), (5,)], 8, 100, 3),
        # The request cap counts records, not requests.
        ([(3, 3), (3, 3), (3, 3)], 4, 100, 2),
        # Padded cost: the longest record so far × all records.
        ([(10,), (10,), (50,)], 8, 100, 2),
        ([(10,), (10,), (30,)], 8, 100, 3),
        # The oldest request is always taken, even when it alone exceeds a limit; nothing overtakes it.
        ([(500,), (1,)], 8, 100, 1),
        ([(1,) * 9, (1,)], 8, 100, 1),
    ],
)
def test_take_batch(requests: list[tuple[int, ...]], max_records: int, budget: int, taken: int) -> None:
    queue = deque(_pending(*lengths) for lengths in requests)
    original = list(queue)
    batch = take_batch(queue, max_records, budget)
    assert batch == original[:taken]
    assert list(queue) == original[taken:]


def test_is_full() -> None:
    assert not is_full([_pending(3), _pending(3)], max_records=4, token_budget=100)
    assert is_full([_pending(3, 3), _pending(3, 3)], max_records=4, token_budget=100)
    assert is_full([_pending(60), _pending(1)], max_records=8, token_budget=100)


def test_pad_batch_keeps_rows_and_masks_padding() -> None:
    ids, mask = pad_batch([[5, 6, 7], [8], [9, 10]], [0, 2, 1], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [9, 10, 0], [8, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 1, 0], [1, 0, 0]]
    assert ids.dtype == mask.dtype == np.int64


@pytest.fixture(scope="module")
def model(tiny_bert_dir: Path) -> SequenceClassifier:
    return SequenceClassifier.load(tiny_bert_dir, ClassifierOptions(device="cpu", precision="fp32"))


def test_concurrent_requests_share_forward_passes(model: SequenceClassifier) -> None:
    expected = model.classify(TEXTS, 2)
    batcher = DynamicBatcher(model, max_delay_ms=300)
    try:
        with ThreadPoolExecutor(len(TEXTS)) as pool:
            results = list(pool.map(lambda text: batcher.classify([text], 2)[0], TEXTS))
    finally:
        batcher.close()
    assert [[x["label"] for x in r] for r in results] == [[x["label"] for x in r] for r in expected]
    for got, want in zip(results, expected, strict=True):
        assert [x["score"] for x in got] == pytest.approx([x["score"] for x in want], abs=1e-5)
    assert batcher.requests == len(TEXTS)
    assert batcher.batches < len(TEXTS)


def test_merged_requests_keep_their_own_top_k_and_order(model: SequenceClassifier) -> None:
    batcher = DynamicBatcher(model, max_delay_ms=200)
    try:
        with ThreadPoolExecutor(3) as pool:
            one = pool.submit(batcher.classify, TEXTS[:2], 1)
            three = pool.submit(batcher.classify, TEXTS[2:5], 3)
            default = pool.submit(batcher.classify, TEXTS[5:])
            results = one.result(), three.result(), default.result()
    finally:
        batcher.close()
    alone = model.classify(TEXTS[:2], 1)
    assert [r["label"] for r in results[0]] == [r["label"] for r in alone]
    assert [r["score"] for r in results[0]] == pytest.approx([r["score"] for r in alone], abs=1e-5)
    assert [[x["label"] for x in r] for r in results[1]] == [
        [x["label"] for x in r] for r in model.classify(TEXTS[2:5], 3)
    ]
    assert [r["label"] for r in results[2]] == [r["label"] for r in model.classify(TEXTS[5:])]


def test_a_request_that_fills_a_batch_runs_directly(model: SequenceClassifier) -> None:
    batcher = DynamicBatcher(model, max_delay_ms=10_000, max_records=4)
    try:
        started = time.monotonic()
        assert batcher.classify(TEXTS) == model.classify(TEXTS)
        assert time.monotonic() - started < 5  # did not wait for the 10 s delay
        assert batcher.batches == 0
    finally:
        batcher.close()


def test_a_failing_forward_fails_every_request_of_the_batch(model: SequenceClassifier) -> None:
    class Broken:
        def __getattr__(self, name: str) -> object:
            return getattr(model, name)

        def predict_ids(self, ids: object, k: int) -> object:
            raise RuntimeError("out of memory")

    batcher = DynamicBatcher(Broken(), max_delay_ms=100)  # type: ignore[arg-type]
    try:
        with ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(batcher.classify, [text]) for text in TEXTS[:3]]
            for future in futures:
                with pytest.raises(RuntimeError, match="out of memory"):
                    future.result()
        # The worker survives and serves the next batch once the model works again.
        batcher.classifier = model
        assert batcher.classify(["hi"]) == model.classify(["hi"])
    finally:
        batcher.close()


def test_large_inputs_are_tokenized_a_window_ahead(
    model: SequenceClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``WINDOW`` records, windows are tokenized in a thread while the previous one runs: same answers."""
    texts = [f"{text} {i}" for i in range(9) for text in TEXTS]
    expected = model.classify(texts)
    monkeypatch.setattr(classifier_mod, "WINDOW", 7)
    got = model.classify(texts)
    # Batches are composed differently, so scores may differ in the last float digits.
    assert [r["label"] for r in got] == [r["label"] for r in expected]
    assert [r["score"] for r in got] == pytest.approx([r["score"] for r in expected], abs=1e-5)


def test_request_concurrency() -> None:
    assert request_concurrency(ServeSettings.from_env({}), 2) == 2
    assert request_concurrency(ServeSettings.from_env({"BATCHLANE_MAX_BATCH_DELAY_MS": "5"}), 2) == 256
    settings = ServeSettings.from_env({"BATCHLANE_MAX_BATCH_DELAY_MS": "5"}, max_batch_size=8)
    assert request_concurrency(settings, 2) == 16


@contextmanager
def serving(model_dir: Path, env: dict[str, str]) -> Iterator[tuple[str, object]]:
    port = free_port()
    app = create_app(
        ServeSettings.from_env(env, model_dir=model_dir, host="127.0.0.1", port=port, device="cpu")
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/ping", timeout=60)
        yield url, app
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_the_server_merges_concurrent_single_record_requests(
    tiny_bert_dir: Path, model: SequenceClassifier
) -> None:
    env = {"BATCHLANE_MAX_BATCH_DELAY_MS": "200", "BATCHLANE_PRECISION": "fp32"}
    texts = TEXTS * 4
    with serving(tiny_bert_dir, env) as (url, app):

        def post(text: str) -> list:
            answer = httpx.post(
                f"{url}/invocations",
                content=json.dumps({"inputs": text}),
                headers={"content-type": "application/json"},
            )
            assert answer.status_code == 200, answer.text
            return answer.json()

        with ThreadPoolExecutor(len(texts)) as pool:
            results = list(pool.map(post, texts))
        batcher = app.state.handler.model.batcher  # type: ignore[attr-defined]
    assert [r[0]["label"] for r in results] == [r["label"] for r in model.classify(texts)]
    assert batcher.requests == len(texts)
    # More requests than MaxConcurrentTransforms (2) were admitted at once, and they shared forward passes.
    assert batcher.batches < len(texts) // 2


@pytest.mark.slow
def test_serve_help_lists_the_performance_options() -> None:
    from typer.testing import CliRunner

    from batchlane.cli.main import app

    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--max-batch-size", "--max-batch-delay-ms", "--runtime", "--quantize", "--precision"):
        assert option in result.output


def test_serve_flags_turn_on_dynamic_batching_and_choose_the_runtime(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    """The real command: `--max-batch-delay-ms` and `--runtime` reach the classifier (as the variables do)."""
    import os
    import subprocess
    import sys

    port = free_port()
    log = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHLANE_MAX_BATCH")}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "batchlane", "serve", "--model-dir", str(tiny_bert_dir), "--host", "127.0.0.1",
             "--port", str(port), "--max-batch-delay-ms", "5", "--runtime", "torch", "--precision", "fp32"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_for_http(f"http://127.0.0.1:{port}/ping", timeout=60)
            answer = httpx.post(
                f"http://127.0.0.1:{port}/invocations",
                content="hello\n",
                headers={"content-type": "text/csv"},
            )
        finally:
            process.terminate()
            process.wait(timeout=30)
    assert answer.status_code == 200, answer.text
    text = log.read_text()
    assert "with torch in fp32" in text and "dynamic batching within 5 ms" in text
