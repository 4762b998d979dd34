"""Hardware detection and the precision/thread choice, tested with plain tables (no hardware needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchlane.errors import ValidationError
from batchlane.serving.classifier import ClassifierOptions, SequenceClassifier
from batchlane.serving.precision import (
    Hardware,
    cgroup_cpu_limit,
    choose_precision,
    default_threads,
    parse_cpuinfo,
)
from batchlane.settings import ServeSettings

AMX = Hardware("Intel Xeon", 2, 4, frozenset({"avx512f", "avx512_bf16", "amx_bf16", "amx_int8"}))
ZEN4 = Hardware("AMD EPYC", 2, 2, frozenset({"avx512f", "avx512_bf16", "avx512_vnni"}))
AVX2 = Hardware("old Xeon", 4, 8, frozenset({"avx2", "fma"}))
GPU = Hardware("AMD EPYC", 16, 16, frozenset(), cuda_name="NVIDIA H100", cuda_bf16=True)
OLD_GPU = Hardware("Xeon", 8, 8, frozenset(), cuda_name="Tesla T4", cuda_bf16=False)


@pytest.mark.parametrize(
    ("requested", "device", "hardware", "name", "slow"),
    [
        # auto: bf16 where the CPU has bf16 dot products (AMX tiles or AVX512-BF16), fp32 elsewhere.
        ("auto", "cpu", AMX, "bf16", False),
        ("auto", "cpu", ZEN4, "bf16", False),
        ("auto", "cpu", AVX2, "fp32", False),
        ("auto", "cuda", GPU, "bf16", False),
        ("auto", "cuda:1", OLD_GPU, "fp16", False),
        # Explicit choices are honoured; the slow ones say so.
        ("fp32", "cpu", AMX, "fp32", False),
        ("FP32", "cuda", GPU, "fp32", False),
        ("bf16", "cpu", ZEN4, "bf16", False),
        ("bf16", "cpu", AVX2, "bf16", True),
        ("bf16", "cuda", OLD_GPU, "bf16", True),
        ("fp16", "cpu", AMX, "fp16", True),
        ("fp16", "cuda", GPU, "fp16", False),
    ],
)
def test_choose_precision(requested: str, device: str, hardware: Hardware, name: str, slow: bool) -> None:
    choice = choose_precision(requested, device, hardware)
    assert (choice.name, choice.slow) == (name, slow)
    assert choice.reason


def test_choose_precision_refuses_unknown_names() -> None:
    with pytest.raises(ValueError, match="precision must be one of"):
        choose_precision("fp8", "cpu", ZEN4)


def test_precision_dtype() -> None:
    import torch

    assert choose_precision("auto", "cpu", ZEN4).dtype is torch.bfloat16
    assert choose_precision("auto", "cpu", AVX2).dtype is torch.float32


CPUINFO_SMT = "\n\n".join(
    f"processor\t: {p}\nmodel name\t: Intel(R) Xeon(R) Platinum 8488C\nphysical id\t: 0\ncore id\t\t: {p // 2}\n"
    "flags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile"
    for p in range(4)
)
CPUINFO_VM = (
    "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: avx2\n\nprocessor\t: 1\nmodel name\t: AMD EPYC\n"
)


@pytest.mark.parametrize(
    ("text", "allowed", "expected"),
    [
        # Two SMT siblings per core count once.
        (CPUINFO_SMT, None, ("Intel(R) Xeon(R) Platinum 8488C", 2, 4)),
        # Only the CPUs this process may run on count.
        (CPUINFO_SMT, {0, 1}, ("Intel(R) Xeon(R) Platinum 8488C", 1, 2)),
        # No core ids (some VMs): each processor is a core.
        (CPUINFO_VM, None, ("AMD EPYC", 2, 2)),
        ("", None, ("unknown CPU", 1, 1)),
    ],
)
def test_parse_cpuinfo(text: str, allowed: set[int] | None, expected: tuple[str, int, int]) -> None:
    model, physical, logical, flags = parse_cpuinfo(text, allowed)
    assert (model, physical, logical) == expected
    if text == CPUINFO_SMT:
        assert {"amx_bf16", "avx512_bf16"} <= flags


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("max 100000", None),
        ("200000 100000", 2),
        ("150000 100000", 2),
        ("50000 100000", 1),
        ("", None),
        ("x", None),
    ],
)
def test_cgroup_cpu_limit(text: str, expected: int | None) -> None:
    assert cgroup_cpu_limit(text) == expected


@pytest.mark.parametrize(
    ("env", "expected"), [({}, 2), ({"OMP_NUM_THREADS": "1"}, 1), ({"OMP_NUM_THREADS": "x"}, 2)]
)
def test_default_threads(env: dict[str, str], expected: int) -> None:
    assert default_threads(ZEN4, env) == expected


def test_hardware_description_names_the_bf16_units() -> None:
    assert AMX.describe() == "Intel Xeon, 2 cores / 4 threads (amx_bf16, amx_int8, avx512_bf16)"
    assert GPU.describe().endswith("; GPU NVIDIA H100")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, ("auto", None, None)),
        ({"BATCHLANE_RUNTIME": "ONNX", "BATCHLANE_QUANTIZE": "int8"}, ("onnx", "int8", None)),
        ({"BATCHLANE_RUNTIME": "openvino", "BATCHLANE_QUANTIZE": "int8"}, ("openvino", "int8", None)),
        ({"BATCHLANE_QUANTIZE": "none", "BATCHLANE_MAX_BATCH_DELAY_MS": "2.5"}, ("auto", None, 2.5)),
    ],
)
def test_runtime_options_from_env(env: dict[str, str], expected: tuple) -> None:
    options = ClassifierOptions.from_settings(ServeSettings.from_env(env))
    assert (options.runtime, options.quantize, options.max_batch_delay_ms) == expected


def test_onnx_cache_defaults_under_home(tmp_path: Path) -> None:
    options = ClassifierOptions.from_settings(ServeSettings.from_env({"BATCHLANE_HOME": str(tmp_path)}))
    assert options.onnx_cache == tmp_path / "onnx"
    env = {"BATCHLANE_ONNX_CACHE": str(tmp_path / "graphs")}
    assert ClassifierOptions.from_settings(ServeSettings.from_env(env)).onnx_cache == tmp_path / "graphs"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BATCHLANE_RUNTIME": "tensorrt"}, "--runtime must be one of auto, torch, onnx, openvino"),
        ({"BATCHLANE_QUANTIZE": "int4", "BATCHLANE_RUNTIME": "onnx"}, "--quantize must be one of int8"),
        (
            {"BATCHLANE_QUANTIZE": "int8", "BATCHLANE_RUNTIME": "torch"},
            "--quantize int8 needs --runtime openvino",
        ),
        (
            {"BATCHLANE_CALIBRATION_DATA": "/no/such/file.txt"},
            "--calibration-data /no/such/file.txt is not a file",
        ),
        ({"BATCHLANE_MAX_BATCH_DELAY_MS": "soon"}, "--max-batch-delay-ms must be a number"),
        ({"BATCHLANE_MAX_BATCH_DELAY_MS": "-1"}, "--max-batch-delay-ms must be between 0 and 60000"),
    ],
)
def test_runtime_options_are_validated(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ClassifierOptions.from_settings(ServeSettings.from_env(env))


def test_fp32_can_be_forced(tiny_bert_dir: Path) -> None:
    """``--precision fp32`` turns reduced precision off whatever the hardware."""
    options = ClassifierOptions(precision="fp32", device="cpu", runtime="torch")
    classifier = SequenceClassifier.load(tiny_bert_dir, options)
    assert (classifier.precision, str(classifier.model.dtype)) == ("fp32", "torch.float32")


def test_auto_precision_follows_the_hardware(tiny_bert_dir: Path) -> None:
    from batchlane.serving.precision import detect

    expected = choose_precision("auto", "cpu", detect()).name
    classifier = SequenceClassifier.load(tiny_bert_dir, ClassifierOptions(device="cpu"))
    assert classifier.precision == expected
    assert classifier.classify(["my card was charged twice"])[0]["label"] in {"billing", "fraud", "service"}
