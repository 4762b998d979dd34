"""The default classifier's options (``batchlane serve`` flags and ``BATCHLANE_*`` variables), validated once, and
the per-device batching defaults."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from batchlane.errors import ValidationError
from batchlane.serving import precision as precision_mod
from batchlane.serving import runtime as runtime_mod
from batchlane.settings import ServeSettings

PRECISIONS = precision_mod.PRECISIONS
RUNTIMES = runtime_mod.RUNTIMES
QUANTIZE = ("int8",)
# Padded tokens per forward pass: enough to keep a CPU busy without large padding waste; GPUs take more.
DEFAULT_TOKEN_BUDGET = {"cpu": 8192, "cuda": 65536}
DEFAULT_MAX_BATCH_SIZE = {"cpu": 128, "cuda": 1024}
# The fixed cost of one forward pass in tokens, for cutting length-sorted records into batches (plan_batches): on a
# CPU a forward costs little beyond its tokens, so batches follow the lengths closely (16 % padding with greedy
# 8k-token batches, 3 % with these cuts, on the benchmark corpus); a GPU needs big batches to be busy.
DEFAULT_BATCH_OVERHEAD = {"cpu": 64, "cuda": 4096}
DEFAULT_MAX_LENGTH = 512


def _optional_choice(value: str | None, allowed: tuple[str, ...], flag: str) -> str | None:
    value = (value or "").strip().lower()
    if value in ("", "none", "off"):
        return None
    if value not in allowed:
        raise ValidationError(f"{flag} must be one of {', '.join(allowed)}, got {value!r}", field=flag)
    return value


@dataclass(frozen=True)
class ClassifierOptions:
    """How the default model is loaded and run; ``None`` means "pick a default for the device".

    ``runtime`` is ``auto``, ``torch``, ``onnx`` or ``openvino`` (``batchlane.serving.runtime``; ``quantize="int8"``
    needs ``openvino``, ``onnx`` or ``auto``); ``max_batch_delay_ms`` turns on real-time dynamic batching
    (``batchlane.serving.dynamic_batching``); ``onnx_cache`` and ``openvino_cache`` are where exported graphs are
    kept (default ``<BATCHLANE_HOME>/onnx`` and ``/openvino``); ``calibration_data`` is the texts file int8 is
    calibrated on (default the model's ``calibration.jsonl``; ``batchlane.serving.calibration``).
    """

    max_length: int | None = None
    token_budget: int | None = None
    max_batch_size: int | None = None
    device: str | None = None
    precision: str = "auto"
    top_k: int = 1
    threads: int | None = None
    runtime: str = "auto"
    quantize: str | None = None
    max_batch_delay_ms: float | None = None
    onnx_cache: Path | None = None
    openvino_cache: Path | None = None
    calibration_data: Path | None = None

    @classmethod
    def from_settings(cls, settings: ServeSettings) -> ClassifierOptions:
        """The classifier part of the serve settings, validated (``ValidationError`` names the flag)."""
        delay_text = settings.max_batch_delay_ms
        try:
            delay = float(delay_text) if delay_text else None
        except ValueError:
            raise ValidationError(
                f"--max-batch-delay-ms must be a number of milliseconds, got {delay_text!r}",
                field="max_batch_delay_ms",
            ) from None
        runtime = _optional_choice(settings.runtime, RUNTIMES, "--runtime")
        options = cls(
            max_length=settings.max_length,
            token_budget=settings.token_budget,
            max_batch_size=settings.max_batch_size,
            device=settings.device if settings.device not in (None, "", "auto") else None,
            precision=(settings.precision or "auto").lower(),
            top_k=settings.top_k,
            threads=settings.threads,
            runtime=runtime or "auto",
            quantize=_optional_choice(settings.quantize, QUANTIZE, "--quantize"),
            max_batch_delay_ms=delay,
            onnx_cache=settings.onnx_cache,
            openvino_cache=settings.openvino_cache,
            calibration_data=settings.calibration_data,
        )
        if options.precision not in PRECISIONS:
            raise ValidationError(
                f"--precision must be one of {', '.join(PRECISIONS)}, got {options.precision!r}"
            )
        for name in ("max_length", "token_budget", "max_batch_size", "top_k", "threads"):
            value = getattr(options, name)
            if value is not None and value < 1:
                raise ValidationError(
                    f"--{name.replace('_', '-')} must be at least 1, got {value}", field=name
                )
        if options.max_batch_delay_ms is not None and not 0 <= options.max_batch_delay_ms <= 60_000:
            raise ValidationError(
                f"--max-batch-delay-ms must be between 0 and 60000, got {options.max_batch_delay_ms:g}",
                field="max_batch_delay_ms",
            )
        if options.quantize and options.runtime == "torch":
            raise ValidationError("--quantize int8 needs --runtime openvino, onnx or auto", field="quantize")
        if options.calibration_data is not None and not options.calibration_data.is_file():
            raise ValidationError(
                f"--calibration-data {options.calibration_data} is not a file", field="calibration_data"
            )
        return options
