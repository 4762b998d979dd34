"""Loading the default classifier: read the model folder, pick the runtime (``batchlane.serving.runtime``) and the
number format, and build the ``SequenceClassifier`` with its forward function."""

from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from batchlane import settings as settings_mod
from batchlane.errors import ModelLoadError
from batchlane.serving import precision as precision_mod
from batchlane.serving import runtime as runtime_mod
from batchlane.serving.classifier_options import (
    DEFAULT_BATCH_OVERHEAD,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_TOKEN_BUDGET,
    ClassifierOptions,
)
from batchlane.serving.tokenizer import _model_max_length

if TYPE_CHECKING:
    from batchlane.serving.classifier import SequenceClassifier

# The load log lines keep the logger they always had, so logging configured for the classifier still shows them.
logger = logging.getLogger("batchlane.serving.classifier")

_LOAD_LOCK = threading.RLock()


def _choose_runtime(options: ClassifierOptions, device: str) -> runtime_mod.RuntimeChoice:
    from batchlane.serving import openvino_runtime

    missing = openvino_runtime.available() if options.runtime == "auto" else None
    try:
        return runtime_mod.choose(options.runtime, device, options.precision, options.quantize, missing)
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from None


def _load_openvino(
    path: Path,
    config: Any,
    tokenizer: Any,
    options: ClassifierOptions,
    chosen: runtime_mod.RuntimeChoice,
    hardware: precision_mod.Hardware,
    threads: int,
    max_length: int,
) -> Any | None:
    """The compiled OpenVINO model, or None when ``chosen`` allows falling back and OpenVINO cannot load it."""
    from batchlane.serving import openvino_runtime

    number = precision_mod.choose_precision(options.precision, "cpu", hardware)
    try:
        return openvino_runtime.load(
            path,
            config,
            tokenizer=tokenizer,
            cache_dir=options.openvino_cache or settings_mod.openvino_cache_dir(),
            precision=number.name,
            threads=threads,
            quantize=options.quantize,
            calibration_data=options.calibration_data,
            max_length=max_length,
        )
    except Exception as exc:
        if chosen.fallback is None:
            raise
        logger.warning("OpenVINO cannot run %s (%s); falling back to %s", path, exc, chosen.fallback)
        return None


class TorchForward:
    """A PyTorch classifier called on padded int64 arrays; returns fp32 logits (a tensor on the model's device).

    On a GPU the arrays go through pinned host memory, so the copy runs asynchronously.
    """

    def __init__(self, model: Any, device: str) -> None:
        self.model = model
        self.device = device
        self.cuda = device.startswith("cuda")

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> Any:
        import torch

        ids, mask = torch.from_numpy(input_ids), torch.from_numpy(attention_mask)
        if self.cuda:
            ids = ids.pin_memory().to(self.device, non_blocking=True)
            mask = mask.pin_memory().to(self.device, non_blocking=True)
        with torch.inference_mode():
            return self.model(input_ids=ids, attention_mask=mask).logits.float()


def load(
    cls: type[SequenceClassifier], model_dir: str | Path, options: ClassifierOptions | None = None
) -> SequenceClassifier:
    """Load from local files only (never the Hub). ``ModelLoadError`` says what is wrong with the directory."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    options = options or ClassifierOptions()
    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise ModelLoadError(
            f"{path} has no config.json, so it is not a Hugging Face model directory; "
            "serve a model directory, or define model_fn and predict_fn in code/inference.py"
        )
    hardware = precision_mod.detect()
    threads = options.threads or precision_mod.default_threads(hardware)
    precision_mod.configure_threads(threads)
    device = options.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"--device {device} was requested but CUDA is not available")
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    architectures = getattr(config, "architectures", None) or []
    if architectures and not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise ModelLoadError(
            f"{path} holds a {', '.join(architectures)}, not a sequence classifier; "
            "fine-tune it first (batchlane train) or serve it with your own model_fn/predict_fn"
        )
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if not getattr(tokenizer, "is_fast", False):
        logger.warning("%s has no fast tokenizer; tokenizing will be slower", path)
    limit = _model_max_length(config, tokenizer)
    max_length = options.max_length or limit
    if max_length > limit:
        logger.warning("max length %d exceeds what the model supports; using %d", max_length, limit)
        max_length = limit
    chosen = _choose_runtime(options, device)
    runtime, model = chosen.name, None
    if runtime == "openvino":
        model = _load_openvino(path, config, tokenizer, options, chosen, hardware, threads, max_length)
        if model is None:
            runtime = "torch"
        else:
            forward, number_format, reason = model, model.dtype, f"{chosen.reason}; IR {model.path}"
    if runtime == "onnx":
        from batchlane.serving.onnx_runtime import OnnxModel

        model: Any = OnnxModel.load(
            path,
            config,
            cache_dir=options.onnx_cache or settings_mod.onnx_cache_dir(),
            quantize=options.quantize,
            threads=threads,
            tokenizer=tokenizer,
            calibration_data=options.calibration_data,
            max_length=max_length,
        )
        forward, number_format, reason = model, model.dtype, f"{chosen.reason}; ONNX graph {model.path}"
    elif runtime == "torch":
        choice = precision_mod.choose_precision(options.precision, device, hardware)
        if choice.name != "fp32" and not device.startswith("cuda"):
            precision_mod.bound_kernel_caches()
        extra: dict[str, Any] = {}
        if (
            device.startswith("cuda")
            and config.model_type == "modernbert"
            and importlib.util.find_spec("flash_attn") is not None
        ):
            extra["attn_implementation"] = "flash_attention_2"  # ModernBERT's unpadded path
        # from_pretrained switches torch's process-wide default dtype while it builds the model, so two loads
        # at once in one process (two apps, or a test's app still loading when the next starts) can leave
        # each other's layers in the wrong dtype: one load at a time.
        with _LOAD_LOCK:
            model = AutoModelForSequenceClassification.from_pretrained(
                path, local_files_only=True, dtype=choice.dtype, **extra
            )
        model.to(device).eval()
        forward, number_format, reason = TorchForward(model, device), choice.name, choice.reason
        (logger.warning if choice.slow else logger.info)("precision %s: %s", choice.name, choice.reason)
        reason = f"{chosen.reason}; {choice.reason}"
    kind = "cuda" if device.startswith("cuda") else "cpu"
    classifier = cls(
        model,
        tokenizer,
        device=device,
        max_length=max_length,
        token_budget=options.token_budget or DEFAULT_TOKEN_BUDGET[kind],
        max_batch_size=options.max_batch_size or DEFAULT_MAX_BATCH_SIZE[kind],
        top_k=options.top_k,
        forward=forward,
        precision=number_format,
        runtime=runtime,
        batch_overhead=DEFAULT_BATCH_OVERHEAD[kind],
    )
    if options.max_batch_delay_ms is not None:
        from batchlane.serving.dynamic_batching import DynamicBatcher

        classifier.batcher = DynamicBatcher(classifier, max_delay_ms=options.max_batch_delay_ms)
    logger.info(
        "loaded %s (%s) on %s (%s, %d threads) with %s in %s (%s): %d labels, max length %d (%s truncation), "
        "token budget %d%s",
        path,
        architectures[0] if architectures else config.model_type,
        device,
        hardware.describe(),
        threads,
        runtime,
        number_format,
        reason,
        len(classifier.labels),
        max_length,
        classifier.truncation,
        classifier.token_budget,
        f", dynamic batching within {options.max_batch_delay_ms:g} ms" if classifier.batcher else "",
    )
    return classifier
