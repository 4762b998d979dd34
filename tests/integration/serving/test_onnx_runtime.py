"""``--runtime onnx``: the exported graph gives PyTorch's labels, is cached by model hash, and serves requests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

from fastapi.testclient import TestClient  # noqa: E402

from batchlane.errors import ModelLoadError  # noqa: E402
from batchlane.serving import onnx_runtime  # noqa: E402
from batchlane.serving.app import create_app  # noqa: E402
from batchlane.serving.classifier import ClassifierOptions, SequenceClassifier  # noqa: E402
from batchlane.settings import ServeSettings  # noqa: E402

# Each test starts a `batchlane serve` process or loads a real model: `make test-fast` skips them.
pytestmark = pytest.mark.slow

TEXTS = [
    "my card was charged twice for the same purchase",
    "hi",
    "someone opened an account in my name and I want it closed " * 30,
    "ok then",
    "the bank never answered my letters about the late fee",
]


def _onnx(model_dir: Path, cache: Path, quantize: str | None = None) -> SequenceClassifier:
    options = ClassifierOptions(device="cpu", runtime="onnx", quantize=quantize, onnx_cache=cache)
    return SequenceClassifier.load(model_dir, options)


@pytest.mark.parametrize("arch", ["bert", "modernbert"])
def test_labels_agree_with_pytorch(arch: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    model_dir = request.getfixturevalue(f"tiny_{arch}_dir")
    expected = SequenceClassifier.load(
        model_dir, ClassifierOptions(device="cpu", precision="fp32", runtime="torch")
    ).classify(TEXTS, 3)
    got = _onnx(model_dir, tmp_path).classify(TEXTS, 3)
    assert [[x["label"] for x in row] for row in got] == [[x["label"] for x in row] for row in expected]
    for row, reference in zip(got, expected, strict=True):
        assert [x["score"] for x in row] == pytest.approx([x["score"] for x in reference], abs=1e-4)


def test_export_is_cached_by_model_hash(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _onnx(tiny_bert_dir, tmp_path)
    key = onnx_runtime.model_key(tiny_bert_dir)
    assert first.model.path == tmp_path / key / "model.onnx"

    def no_export(*args: object) -> None:
        raise AssertionError("exported again although the cache holds the graph")

    monkeypatch.setattr(onnx_runtime, "build", no_export)
    second = _onnx(tiny_bert_dir, tmp_path)
    assert second.model.path == first.model.path
    assert second.classify(TEXTS) == first.classify(TEXTS)


def test_changed_weights_change_the_key(tiny_bert_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_bert_dir, copy)
    assert onnx_runtime.model_key(copy) == onnx_runtime.model_key(tiny_bert_dir)  # content, not path
    assert onnx_runtime.model_key(copy, "int8") != onnx_runtime.model_key(copy)
    weights = next(p for p in copy.iterdir() if p.suffix == ".safetensors")
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\1")
    assert onnx_runtime.model_key(copy) != onnx_runtime.model_key(tiny_bert_dir)


def test_a_graph_shipped_with_the_model_is_used(tiny_bert_dir: Path, tmp_path: Path) -> None:
    built = _onnx(tiny_bert_dir, tmp_path / "cache").model.path
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, model_dir)
    shutil.copyfile(built, model_dir / "model.onnx")
    shipped = _onnx(model_dir, tmp_path / "other-cache")
    assert shipped.model.path == model_dir / "model.onnx"
    assert not (tmp_path / "other-cache").exists()


def test_int8_quantisation(tiny_bert_dir: Path, tmp_path: Path) -> None:
    classifier = _onnx(tiny_bert_dir, tmp_path, quantize="int8")
    assert classifier.model.path.name == "model-int8.onnx" and classifier.precision == "int8"
    # Random tiny weights have tiny logit margins, so only validity is checked here; agreement on a trained
    # classifier is measured by the benchmark (docs/performance.md).
    results = classifier.classify(TEXTS)
    assert len(results) == len(TEXTS) and all(r["label"] in {"billing", "fraud", "service"} for r in results)
    assert all(0 <= r["score"] <= 1 for r in results)


def test_a_wrong_export_is_refused(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fresh graph is compared with PyTorch before it is cached."""
    import numpy as np

    real_session = onnx_runtime._session

    class Skewed:
        def __init__(self, session: object) -> None:
            self.session = session

        def __getattr__(self, name: str) -> object:
            return getattr(self.session, name)

        def run(self, names: list[str], feed: dict) -> list:
            return [out + np.float32(0.5) for out in self.session.run(names, feed)]

    monkeypatch.setattr(onnx_runtime, "_session", lambda path, threads: Skewed(real_session(path, threads)))
    with pytest.raises(ModelLoadError, match="does not match PyTorch"):
        _onnx(tiny_bert_dir, tmp_path)
    assert not list(tmp_path.rglob("*.onnx"))


def test_served_through_the_app(tiny_bert_dir: Path, tmp_path: Path) -> None:
    env = {"BATCHLANE_RUNTIME": "onnx", "BATCHLANE_ONNX_CACHE": str(tmp_path)}
    app = create_app(ServeSettings.from_env(env, model_dir=tiny_bert_dir, device="cpu"))
    expected = SequenceClassifier.load(
        tiny_bert_dir, ClassifierOptions(device="cpu", precision="fp32", runtime="torch")
    )
    with TestClient(app) as client:
        import time

        deadline = time.monotonic() + 60
        while client.get("/ping").status_code != 200:
            assert time.monotonic() < deadline, "the ONNX model did not load"
            time.sleep(0.05)
        answer = client.post("/invocations", content="\n".join(TEXTS), headers={"content-type": "text/plain"})
    assert answer.status_code == 200
    assert [r["label"] for r in answer.json()] == [r["label"] for r in expected.classify(TEXTS)]
    assert app.state.handler.model.runtime == "onnx"
