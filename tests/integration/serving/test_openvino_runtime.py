"""``--runtime openvino`` (and ``auto`` on a CPU): the converted IR gives PyTorch's labels, is cached by model hash,
serves requests, calibrates int8 on real texts, and ``auto`` falls back to PyTorch when OpenVINO cannot load a model."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import pytest

pytest.importorskip("openvino")

from fastapi.testclient import TestClient  # noqa: E402

from batchlane.errors import ModelLoadError  # noqa: E402
from batchlane.serving import calibration, openvino_runtime  # noqa: E402
from batchlane.serving.app import create_app  # noqa: E402
from batchlane.serving.classifier import ClassifierOptions, SequenceClassifier  # noqa: E402
from batchlane.settings import ServeSettings  # noqa: E402

TEXTS = [
    "my card was charged twice for the same purchase",
    "hi",
    "someone opened an account in my name and I want it closed " * 30,
    "ok then",
    "the bank never answered my letters about the late fee",
]


def _openvino(
    model_dir: Path, cache: Path, runtime: str = "openvino", **options: object
) -> SequenceClassifier:
    return SequenceClassifier.load(
        model_dir, ClassifierOptions(device="cpu", runtime=runtime, openvino_cache=cache, **options)
    )


@pytest.mark.parametrize("arch", ["bert", "modernbert"])
def test_labels_agree_with_pytorch(arch: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    model_dir = request.getfixturevalue(f"tiny_{arch}_dir")
    torch_options = ClassifierOptions(device="cpu", precision="fp32", runtime="torch")
    expected = SequenceClassifier.load(model_dir, torch_options).classify(TEXTS, 3)
    classifier = _openvino(model_dir, tmp_path, precision="fp32")
    assert (classifier.runtime, classifier.precision) == ("openvino", "fp32")
    got = classifier.classify(TEXTS * 40, 3)  # several batches: they run on the streams at once
    assert [[x["label"] for x in row] for row in got] == [[x["label"] for x in row] for row in expected] * 40
    for row, reference in zip(got, expected * 40, strict=True):
        assert [x["score"] for x in row] == pytest.approx([x["score"] for x in reference], abs=1e-4)


def test_auto_picks_openvino_on_a_cpu_and_caches_the_ir(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _openvino(tiny_bert_dir, tmp_path, runtime="auto")
    assert first.runtime == "openvino"
    key = openvino_runtime.model_key(tiny_bert_dir)
    assert first.model.path == tmp_path / key / "openvino_model.xml"
    assert first.model.path.with_suffix(".bin").is_file()

    def no_conversion(*args: object) -> None:
        raise AssertionError("converted again although the cache holds the IR")

    monkeypatch.setattr(openvino_runtime, "build", no_conversion)
    second = _openvino(tiny_bert_dir, tmp_path, runtime="auto")
    assert second.model.path == first.model.path
    assert second.classify(TEXTS) == first.classify(TEXTS)


def test_an_ir_shipped_with_the_model_is_used(tiny_bert_dir: Path, tmp_path: Path) -> None:
    built = _openvino(tiny_bert_dir, tmp_path / "cache").model.path
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, model_dir)
    shutil.copyfile(built, model_dir / "openvino_model.xml")
    shutil.copyfile(built.with_suffix(".bin"), model_dir / "openvino_model.bin")
    shipped = _openvino(model_dir, tmp_path / "other-cache")
    assert shipped.model.path == model_dir / "openvino_model.xml"
    assert not (tmp_path / "other-cache" / openvino_runtime.model_key(model_dir)).exists()


def test_auto_falls_back_to_pytorch_with_the_reason(
    tiny_bert_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A model OpenVINO cannot read (here a broken IR shipped with it) is served by PyTorch under auto."""
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, model_dir)
    (model_dir / "openvino_model.xml").write_text("<net>not an IR")
    with caplog.at_level(logging.WARNING, logger="batchlane.serving.classifier"):
        classifier = _openvino(model_dir, tmp_path / "cache", runtime="auto")
    assert classifier.runtime == "torch"
    assert "OpenVINO cannot run" in caplog.text and "falling back to torch" in caplog.text
    assert [r["label"] for r in classifier.classify(TEXTS)]
    with pytest.raises(
        ModelLoadError, match="OpenVINO cannot compile"
    ):  # asked for: the failure is the answer
        _openvino(model_dir, tmp_path / "cache", runtime="openvino")


def test_int8_needs_calibration_texts_and_uses_them(tiny_bert_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="--calibration-data"):
        _openvino(tiny_bert_dir, tmp_path, quantize="int8")
    calibration = tmp_path / "calibration.txt"
    calibration.write_text("\n".join(f"{text} {i}" for i in range(8) for text in TEXTS))
    classifier = _openvino(tiny_bert_dir, tmp_path, quantize="int8", calibration_data=calibration)
    assert classifier.model.path.name == "openvino_model-int8.xml"
    assert classifier.precision.startswith("int8")
    assert len(classifier.classify(TEXTS)) == len(TEXTS)


def test_calibration_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "calibration.jsonl"
    path.write_text('{"text": "fine"}\n{"body": "no text"}\n')
    with pytest.raises(ModelLoadError, match=r"calibration.jsonl line 2: no string 'text' field"):
        calibration.read_calibration(path)


def test_served_through_the_app_by_default(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """No --runtime: a CPU server runs OpenVINO (auto)."""
    app = create_app(
        ServeSettings.from_env({}, model_dir=tiny_bert_dir, device="cpu", openvino_cache=tmp_path)
    )
    with TestClient(app) as client:
        deadline = time.monotonic() + 120
        while client.get("/ping").status_code != 200:
            assert time.monotonic() < deadline, "the OpenVINO model did not load"
            time.sleep(0.05)
        answer = client.post("/invocations", json={"inputs": TEXTS}, headers={"Accept": "application/json"})
    assert answer.status_code == 200, answer.text
    assert app.state.handler.model.runtime == "openvino"
    assert [item["label"] for item in answer.json()] == [
        item["label"] for item in _openvino(tiny_bert_dir, tmp_path).classify(TEXTS)
    ]
