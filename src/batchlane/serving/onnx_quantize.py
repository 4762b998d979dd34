"""int8 for ONNX Runtime graphs (``--runtime onnx --quantize int8``): static when there are calibration texts, else
dynamic.

* **static** (``quantize_static``): QDQ format, int8 weights per output channel, activation ranges calibrated
  (min/max) on the tokenised calibration texts (``batchlane.serving.calibration``). The pooler and the
  classification head stay fp32: their error lands on the logits directly and they cost almost nothing. So does each
  feed-forward block's output projection, whose input has outliers (``_FFN_OUTPUT``). Only ``MatMul`` is quantised:
  LayerNorm, Softmax, GELU and the embedding lookup keep fp32, where int8 would cost labels and buy little time.
* **dynamic** (``quantize_dynamic``): int8 weights per channel, activations quantised per batch at run time; no
  calibration needed, but it changes more labels (``docs/performance.md``).

``onnxruntime`` (the ``[onnx]`` extra) is imported only inside the functions.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

MODES = ("static", "dynamic")
# Node names of the pooler and the classification head in graphs exported from transformers' classifiers
# (``/bert/pooler/dense/Gemm``, ``/classifier/MatMul``, ModernBERT's ``/head/dense/MatMul``).
_HEAD_NODES = re.compile(r"(pooler|classifier|score|pre_classifier|/head/)")
# The second projection of each feed-forward block (BERT's ``layer.N/output/dense``, not ``attention/output/dense``;
# ModernBERT's ``mlp/Wo``; DistilBERT's ``ffn/lin2``): its input, the GELU output, has outlier channels that one
# per-tensor uint8 range cannot hold. Quantised, the demo classifier kept 95.0 % of its fp32 labels; kept fp32, 99.0 %
# (400 CFPB test texts; docs/performance.md).
_FFN_OUTPUT = re.compile(r"(?<!attention)/output/dense/|/mlp/Wo/|/ffn/lin2/")
# What static int8 quantises: the dense layers, where the time is.
_STATIC_OPS = ["MatMul"]


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    # The quantizer logs every skipped tensor on the root logger.
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def kept_fp32(path: Path) -> list[str]:
    """The names of the nodes static int8 leaves in fp32: the pooler, the classification head and the
    feed-forward output projections."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return [
        node.name for node in graph.node if _HEAD_NODES.search(node.name) or _FFN_OUTPUT.search(node.name)
    ]


def quantize_dynamic(source: Path, target: Path) -> None:
    """Dynamic int8: weights per channel, activations per batch."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_root_logger():
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=True,
            # Fused graphs hold contrib ops whose output types shape inference cannot tell.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )


def _reader(batches: list[dict[str, np.ndarray]], input_names: set[str]) -> Any:
    """An ONNX Runtime ``CalibrationDataReader`` over tokenised batches (``calibration.batches``)."""
    from onnxruntime.quantization import CalibrationDataReader

    class BatchReader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            if batch is None:
                return None
            feed = {k: v for k, v in batch.items() if k in input_names}
            if "token_type_ids" in input_names:
                feed["token_type_ids"] = np.zeros_like(batch["input_ids"])
            return feed

        def rewind(self) -> None:
            self._batches = iter(batches)

    return BatchReader()


def quantize_static(source: Path, target: Path, batches: list[dict[str, np.ndarray]]) -> None:
    """Static int8 (QDQ, per-channel weights, min/max activation ranges over ``batches``); ``kept_fp32`` nodes
    stay fp32."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    inputs = {
        i.name for i in ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).get_inputs()
    }
    excluded = kept_fp32(source)
    logger.info("static int8: calibrating on %d batches; kept fp32: %s", len(batches), excluded or "nothing")
    typed = target.with_name(target.stem + "-typed.onnx")
    with _quiet_root_logger():
        # The quantizer needs every activation's type; the fused graph's contrib ops (Attention, SkipLayerNorm)
        # defeat ONNX's own shape inference, so ONNX Runtime's symbolic inference types them first. Without it only
        # the weights would be quantised and every MatMul would still run in fp32.
        quant_pre_process(str(source), str(typed), skip_optimization=True, auto_merge=True)
        quantize_static(
            str(typed),
            str(target),
            _reader(batches, inputs),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=_STATIC_OPS,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
