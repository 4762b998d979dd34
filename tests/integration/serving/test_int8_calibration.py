"""``--quantize int8`` calibrates on real texts: ONNX Runtime's static int8 (the fallback when OpenVINO is missing),
the texts ``batchlane train`` saves beside a model (used with no flag), dynamic int8 when ONNX has no texts, and the
one-line error when OpenVINO has none."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

from batchlane.cli.main import main  # noqa: E402
from batchlane.serving import calibration, onnx_runtime  # noqa: E402
from batchlane.serving.classifier import ClassifierOptions, SequenceClassifier  # noqa: E402
from batchlane.testing import free_port  # noqa: E402
from tests.integration.training.test_classifier import cfpb_rows, write_csv  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(
    tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[str], list[str]]:
    """A tiny BERT trained by `batchlane train` on 60 real CFPB rows: (model folder, train texts, test texts)."""
    folder = tmp_path_factory.mktemp("trained")
    train_rows, test_rows = cfpb_rows("train.csv.gz", 20), cfpb_rows("test.csv.gz", 8)
    train, test = write_csv(folder / "train.csv", train_rows), write_csv(folder / "test.csv", test_rows)
    model = folder / "model"
    with pytest.raises(SystemExit) as exit_:
        main(
            ["train", "--data", str(train), "--eval-data", str(test), "--base-model", str(tiny_bert_dir),
             "--output", str(model), "--max-length", "64", "--batch-size", "8", "--learning-rate", "1e-3",
             "--epochs", "2", "--seed", "5", "--precision", "fp32"]
        )  # fmt: skip
    assert exit_.value.code == 0
    return model, [r["text"] for r in train_rows], [r["text"] for r in test_rows]


def _load(model_dir: Path, cache: Path, runtime: str = "onnx", **options: object) -> SequenceClassifier:
    return SequenceClassifier.load(
        model_dir,
        ClassifierOptions(
            device="cpu", runtime=runtime, quantize="int8", onnx_cache=cache, openvino_cache=cache, **options
        ),
    )


def test_train_saves_a_calibration_sample_of_its_training_texts(
    trained: tuple[Path, list[str], list[str]],
) -> None:
    model, train_texts, _ = trained
    lines = (model / calibration.CALIBRATION_FILE).read_text(encoding="utf-8").splitlines()
    texts = [json.loads(line)["text"] for line in lines]
    assert len(texts) == 60 and set(texts) == set(train_texts)  # fewer than 300 rows: all of them
    assert oct((model / calibration.CALIBRATION_FILE).stat().st_mode)[-3:] == "644"


def test_onnx_static_int8_calibrates_on_the_training_sample_without_a_flag(
    trained: tuple[Path, list[str], list[str]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import onnx

    model, _, test_texts = trained
    with caplog.at_level(logging.INFO, logger="batchlane.serving.onnx_runtime"):
        classifier = _load(model, tmp_path)
    assert (classifier.runtime, classifier.precision, classifier.model.mode) == ("onnx", "int8", "static")
    assert "calibrating on 60 texts from the model's training sample" in caplog.text
    own = calibration.read_calibration(model / calibration.CALIBRATION_FILE)
    assert classifier.model.path == tmp_path / onnx_runtime.model_key(model, "int8", own) / "model-int8.onnx"
    graph = onnx.load(str(classifier.model.path)).graph
    quantised_inputs = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    matmuls = [n for n in graph.node if n.op_type == "MatMul"]
    ffn_output = [n for n in matmuls if "/output/dense/" in n.name and "attention" not in n.name]
    quantised = [n for n in matmuls if n not in ffn_output]
    # Static: the encoder's MatMuls take int8 activations (a calibrated QuantizeLinear), not only int8 weights;
    # the feed-forward output projections, whose inputs have outliers, stay fp32.
    assert quantised and all(n.input[0] in quantised_inputs for n in quantised)
    assert ffn_output and not any(i in quantised_inputs for n in ffn_output for i in n.input)
    assert sum(n.op_type == "QuantizeLinear" for n in graph.node) >= len(quantised)
    # The pooler and the classification head stay fp32.
    head = [n for n in graph.node if "classifier" in n.name or "pooler" in n.name]
    assert head and not any(i in quantised_inputs for n in head for i in n.input)
    # Labels agree with PyTorch fp32 on the real test texts.
    reference = SequenceClassifier.load(
        model, ClassifierOptions(device="cpu", runtime="torch", precision="fp32")
    )
    expected = [r["label"] for r in reference.classify(test_texts)]
    got = [r["label"] for r in classifier.classify(test_texts)]
    agreement = sum(a == b for a, b in zip(got, expected, strict=True)) / len(expected)
    assert agreement >= 0.9, agreement


def test_calibration_data_wins_and_keys_the_cache(
    trained: tuple[Path, list[str], list[str]], tmp_path: Path
) -> None:
    model, _, test_texts = trained
    given = tmp_path / "texts.jsonl"
    given.write_text("".join(json.dumps({"text": text}) + "\n" for text in test_texts))
    classifier = _load(model, tmp_path / "cache", calibration_data=given)
    assert classifier.model.mode == "static"
    assert classifier.model.path.parent.name == onnx_runtime.model_key(model, "int8", test_texts)
    own = calibration.read_calibration(model / calibration.CALIBRATION_FILE)
    assert onnx_runtime.model_key(model, "int8", test_texts) != onnx_runtime.model_key(model, "int8", own)
    assert onnx_runtime.model_key(model, "int8") != onnx_runtime.model_key(model, "int8", own)  # dynamic


def test_onnx_without_calibration_texts_is_dynamic_and_says_why(
    tiny_bert_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="batchlane.serving.onnx_runtime"):
        classifier = _load(tiny_bert_dir, tmp_path)
    assert classifier.model.mode == "dynamic"
    assert classifier.model.path.parent.name == onnx_runtime.model_key(tiny_bert_dir, "int8")
    warning = next(r.getMessage() for r in caplog.records if "int8 (dynamic)" in r.getMessage())
    assert "no calibration.jsonl" in warning and "--calibration-data" in warning


def test_openvino_int8_uses_the_training_sample(
    trained: tuple[Path, list[str], list[str]], tmp_path: Path
) -> None:
    pytest.importorskip("openvino")
    model, _, test_texts = trained
    classifier = _load(model, tmp_path, runtime="openvino")
    assert classifier.model.path.name == "openvino_model-int8.xml"
    assert len(classifier.classify(test_texts)) == len(test_texts)


def test_serve_int8_without_calibration_texts_is_a_one_line_error(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    """The user's call: `batchlane serve --runtime openvino --quantize int8` on a model with no calibration.jsonl."""
    pytest.importorskip("openvino")
    env = {**os.environ, "BATCHLANE_OPENVINO_CACHE": str(tmp_path), "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(
        [sys.executable, "-m", "batchlane", "serve", "--model-dir", str(tiny_bert_dir), "--device", "cpu",
         "--runtime", "openvino", "--quantize", "int8", "--host", "127.0.0.1", "--port", str(free_port())],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "--calibration-data" in last and "calibration.jsonl" in last, last
