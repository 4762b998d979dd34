"""``--runtime auto|torch|onnx|openvino``: which engine runs the default classifier (``serving.runtime.choose``)."""

from __future__ import annotations

import pytest

from batchlane.serving.runtime import choose

MISSING = "openvino is not installed"


@pytest.mark.parametrize(
    ("requested", "device", "precision", "quantize", "missing", "expected"),
    [
        ("auto", "cpu", "auto", None, None, ("openvino", "torch")),
        ("auto", "cpu", "bf16", None, None, ("openvino", "torch")),
        ("auto", "cpu", "auto", "int8", None, ("openvino", None)),  # asked for int8: no silent fp32
        ("auto", "cpu", "auto", None, MISSING, ("torch", None)),
        ("auto", "cpu", "auto", "int8", MISSING, ("onnx", None)),
        ("auto", "cpu", "fp16", None, None, ("torch", None)),
        ("auto", "cuda", "auto", None, None, ("torch", None)),
        ("auto", "cuda:1", "auto", None, None, ("torch", None)),
        ("torch", "cpu", "auto", None, None, ("torch", None)),
        ("openvino", "cpu", "fp32", None, None, ("openvino", None)),
        ("openvino", "cpu", "auto", "int8", None, ("openvino", None)),
        ("onnx", "cpu", "auto", "int8", None, ("onnx", None)),
    ],
)
def test_choose(
    requested: str, device: str, precision: str, quantize: str | None, missing: str | None, expected: tuple
) -> None:
    choice = choose(requested, device, precision, quantize, missing)
    assert (choice.name, choice.fallback) == expected
    assert choice.reason


def test_auto_says_why_it_did_not_pick_openvino() -> None:
    assert MISSING in choose("auto", "cpu", "auto", None, MISSING).reason


@pytest.mark.parametrize(
    ("requested", "device", "precision", "quantize", "message"),
    [
        ("openvino", "cuda", "auto", None, "--runtime openvino runs on the CPU"),
        ("onnx", "cuda", "auto", None, "--runtime onnx runs on the CPU"),
        ("openvino", "cpu", "fp16", None, "--runtime openvino runs fp32 or bf16"),
        ("torch", "cpu", "auto", "int8", "--quantize int8 needs --runtime openvino, onnx"),
        ("auto", "cuda", "auto", "int8", "--quantize int8 runs on the CPU"),
    ],
)
def test_impossible_combinations_name_the_flags(
    requested: str, device: str, precision: str, quantize: str | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        choose(requested, device, precision, quantize, None)
