"""Which engine runs the default classifier: ``--runtime auto`` (the default), ``torch``, ``onnx`` or ``openvino``.

``choose`` is a pure function of the request, the device and whether OpenVINO is importable, so every rule is tested
with plain tables. The rule (measured, ``docs/performance.md``): on a CPU OpenVINO runs this model faster than PyTorch
at the same precision and with the same labels, so ``auto`` picks it when it is installed; on a GPU, with
``--precision fp16`` (which OpenVINO's CPU plugin does not run) or without OpenVINO, PyTorch. ``auto`` never picks
ONNX Runtime (slower than OpenVINO on the CPUs we measured). A model OpenVINO cannot convert falls back to PyTorch
under ``auto`` (``SequenceClassifier.load`` logs why); an explicit ``--runtime openvino`` fails instead.
"""

from __future__ import annotations

from dataclasses import dataclass

RUNTIMES = ("auto", "torch", "onnx", "openvino")


@dataclass(frozen=True)
class RuntimeChoice:
    """``name`` is ``torch``, ``onnx`` or ``openvino``; ``reason`` says why (for the log); ``fallback`` is the
    runtime to use if ``name`` cannot load the model (None: the failure is the answer)."""

    name: str
    reason: str
    fallback: str | None = None


def choose(
    requested: str, device: str, precision: str, quantize: str | None, openvino_missing: str | None
) -> RuntimeChoice:
    """The runtime for ``requested`` on ``device``; ``openvino_missing`` is None when OpenVINO is importable, else
    why not. Raises ``ValueError`` for a combination that cannot run (the message names the flags)."""
    gpu = device.startswith("cuda")
    if requested in ("onnx", "openvino") and gpu:
        raise ValueError(
            f"--runtime {requested} runs on the CPU; use --device cpu, or --runtime torch on a GPU"
        )
    if requested == "openvino" and precision == "fp16":
        raise ValueError("--runtime openvino runs fp32 or bf16 on a CPU; use --precision auto, fp32 or bf16")
    if requested == "torch" and quantize:
        raise ValueError("--quantize int8 needs --runtime openvino, onnx or auto")
    if requested != "auto":
        return RuntimeChoice(requested, "requested")
    if gpu:
        if quantize:
            raise ValueError("--quantize int8 runs on the CPU; use --device cpu")
        return RuntimeChoice("torch", "auto: PyTorch on the GPU")
    if precision == "fp16":
        return RuntimeChoice("torch", "auto: --precision fp16 runs only with PyTorch")
    if openvino_missing is not None:
        if quantize:
            return RuntimeChoice("onnx", f"auto: {openvino_missing}; int8 with ONNX Runtime instead")
        return RuntimeChoice("torch", f"auto: {openvino_missing}")
    return RuntimeChoice(
        "openvino", "auto: OpenVINO is installed (the fastest CPU runtime)", None if quantize else "torch"
    )
