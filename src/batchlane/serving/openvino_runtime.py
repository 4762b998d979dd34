"""OpenVINO for the default classifier (``--runtime openvino``, and ``auto`` on a CPU when it is installed).

The model folder's PyTorch weights are converted once with ``openvino.convert_model`` (dynamic batch and sequence
dimensions), optionally quantised to int8 with NNCF's post-training static quantisation calibrated on real texts,
and cached like the ONNX export (``batchlane.serving.onnx_runtime``):

* an ``openvino_model.xml`` (or ``openvino_model-int8.xml``) shipped in the model folder itself is used as is (the
  file names optimum-intel writes);
* otherwise ``<cache>/<key>/openvino_model.xml`` (+ ``.bin``), where ``<cache>`` is ``BATCHLANE_OPENVINO_CACHE`` or
  ``<BATCHLANE_HOME>/openvino`` and ``<key>`` hashes the config and weight files, the conversion recipe and (int8)
  the calibration texts. The ``.xml`` appears last, by atomic rename, so a concurrent start never reads half an IR.
  OpenVINO's own compiled-blob cache lives in the same folder, so a warm start skips most of the compile too.

The IR holds fp32 weights; the number format is a compile-time choice (``INFERENCE_PRECISION_HINT``): bf16 where the
CPU has bf16 dot products (AMX or AVX512-BF16), else fp32. OpenVINO may still run fp32 (it keeps fp32 on CPUs its
bf16 kernels do not support); ``OpenVinoModel.dtype`` is what it reports it runs.

A fresh fp32 conversion is checked against PyTorch before it is cached (same labels, logits within 1e-3, else
``ModelLoadError``); for int8 the agreement on the calibration texts is logged. ``openvino`` and ``nncf`` (the
``[openvino]`` extra) are imported only here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from batchlane.errors import ModelLoadError
from batchlane.serving import calibration as calibration_mod
from batchlane.serving.onnx_runtime import _sample_inputs

logger = logging.getLogger(__name__)

CONVERT_RECIPE = 2  # bump when the conversion or quantisation steps change
QUANTIZE = ("int8",)
MODES = ("throughput", "latency")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_FP32_TOLERANCE = 1e-3
# Node names of the pooler and the classification head in graphs converted from transformers' classifiers.
_HEAD_NODES = r".*(pooler|classifier|score|pre_classifier|head)\b.*"


def available() -> str | None:
    """None when OpenVINO can be used here, else why not (for ``--runtime auto``'s log line)."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return "openvino is not installed (pip install 'batchlane[openvino]')"
    return None


def file_name(quantize: str | None) -> str:
    return "openvino_model-int8.xml" if quantize == "int8" else "openvino_model.xml"


def model_key(model_dir: Path, quantize: str | None = None, calibration: Sequence[str] = ()) -> str:
    """A hash of the model's config and weights, the recipe and (int8) the calibration texts; not of the path."""
    import openvino

    digest = hashlib.sha256()
    digest.update(json.dumps([CONVERT_RECIPE, openvino.__version__.split("-")[0], quantize]).encode())
    for path in sorted(model_dir.iterdir()):
        if path.is_file() and (path.name == "config.json" or path.suffix in _WEIGHT_SUFFIXES):
            digest.update(path.name.encode() + b"\0")
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 22), b""):
                    digest.update(chunk)
    for text in calibration if quantize else ():
        digest.update(text.encode("utf-8", "replace") + b"\0")
    return digest.hexdigest()[:24]


def _load_torch_model(model_dir: Path) -> Any:
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(model_dir, local_files_only=True).float().eval()


def _convert(model: Any) -> Any:
    import openvino as ov
    import torch

    sample = {k: torch.from_numpy(v[:2, :16].copy()) for k, v in _sample_inputs(model.config).items()}
    dims = [("input_ids", [-1, -1], ov.Type.i64), ("attention_mask", [-1, -1], ov.Type.i64)]
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow in transformers' code
        return ov.convert_model(model, example_input=sample, input=dims)


def _quantize(ov_model: Any, batches: list[dict[str, np.ndarray]]) -> Any:
    """NNCF static int8 for a transformer: per-channel symmetric weights, activations calibrated on ``batches``.

    ``ModelType.TRANSFORMER`` keeps the numerically sensitive parts (softmax inputs, LayerNorm, GELU) in higher
    precision and applies SmoothQuant to the matmuls whose activations have outliers. The pooler and the
    classification head stay fp32: their error lands on the logits directly, and they cost almost nothing.
    """
    import nncf

    return nncf.quantize(
        ov_model,
        nncf.Dataset(batches),
        model_type=nncf.ModelType.TRANSFORMER,
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(batches),
        ignored_scope=nncf.IgnoredScope(patterns=[_HEAD_NODES], validate=False),
    )


def _check(model: Any, compiled: Any, batches: list[dict[str, np.ndarray]], quantized: bool) -> str:
    """Compare the IR with PyTorch; a wrong fp32 conversion is a ``ModelLoadError``."""
    import torch

    same = total = 0
    difference = 0.0
    for inputs in batches:
        with torch.inference_mode():
            expected = model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).logits.float().numpy()
        got = compiled(inputs)[0]
        difference = max(difference, float(np.abs(got - expected).max()))
        same += int((got.argmax(-1) == expected.argmax(-1)).sum())
        total += len(expected)
    summary = f"max |logit difference| {difference:.2e}, labels agree on {same}/{total} check texts"
    if not quantized and (difference > _FP32_TOLERANCE or same < total):
        raise ModelLoadError(
            f"the OpenVINO conversion does not match PyTorch: {summary}; serve with --runtime torch"
        )
    return summary


def build(
    model_dir: Path, target: Path, quantize: str | None, calibration: list[dict[str, np.ndarray]]
) -> Path:
    """Convert (and quantise) ``model_dir`` to the IR ``target`` (``.xml`` + ``.bin``), checked before renaming."""
    import openvino as ov

    target.parent.mkdir(parents=True, exist_ok=True)
    model = _load_torch_model(model_dir)
    try:
        ov_model = _convert(model)
    except Exception as exc:
        raise ModelLoadError(
            f"converting {model_dir} to OpenVINO failed ({type(exc).__name__}: "
            f"{(str(exc).splitlines() or [''])[0][:200]}); serve it with --runtime torch"
        ) from exc
    if quantize == "int8":
        ov_model = _quantize(ov_model, calibration)
    checks = calibration[:8] if calibration else [_sample_inputs(model.config)]
    compiled = ov.Core().compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    summary = _check(model, compiled, checks, quantized=quantize is not None)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".convert-") as scratch:
        partial = Path(scratch) / target.name
        ov.save_model(ov_model, partial, compress_to_fp16=False)  # fp16 weights would change fp32 results
        os.replace(partial.with_suffix(".bin"), target.with_suffix(".bin"))
        os.replace(partial, target)
    logger.info("converted %s to %s (%s)", model_dir, target, summary)
    return target


def _compile_config(precision: str, mode: str, threads: int, cache_dir: Path | None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
        "PERFORMANCE_HINT": mode.upper(),
        "INFERENCE_NUM_THREADS": threads,
    }
    if mode == "throughput":
        # One stream per core: each forward pass runs single-threaded with no synchronisation between cores,
        # and a second one keeps the other core busy while the first waits for its batch.
        config["NUM_STREAMS"] = threads
    if cache_dir is not None:
        config["CACHE_DIR"] = str(cache_dir)
    return config


class OpenVinoModel:
    """A compiled OpenVINO model with the call shape of the PyTorch path: int64 arrays in, fp32 logits out.

    Safe to call from ``parallel`` threads at once (one infer request each): in throughput mode that is one per
    stream, which is how the classifier keeps every core busy.
    """

    def __init__(
        self,
        path: Path,
        config: Any,
        *,
        precision: str,
        threads: int,
        mode: str = "throughput",
        quantize: str | None = None,
        blob_cache: Path | None = None,
    ) -> None:
        import openvino as ov

        self.path = path
        self.config = config
        self.quantize = quantize
        core = ov.Core()
        self.compiled = core.compile_model(path, "CPU", _compile_config(precision, mode, threads, blob_cache))
        runs = self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        runs = {"f32": "fp32"}.get(runs, runs)
        self.dtype = f"int8 + {runs}" if quantize else runs
        self.parallel = max(1, int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self.streams = int(self.compiled.get_property("NUM_STREAMS"))
        self._inputs = {i.get_any_name() for i in self.compiled.inputs}
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        tiny = np.ones((1, 2), dtype=np.int64)
        for _ in range(self.parallel):
            request = self.compiled.create_infer_request()
            # The first infer() of a process initialises static state in OpenVINO's Python binding while holding
            # the GIL; two threads doing it at once deadlocked. One call per request here, on one thread, first.
            request.infer(self._feed(tiny, tiny))
            self._requests.put(request)

    def _feed(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]:
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self._inputs:  # IRs written by other tools (optimum) take it explicitly
            feed["token_type_ids"] = np.zeros_like(input_ids)
        return feed

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feed = self._feed(input_ids, attention_mask)
        request = self._requests.get()
        try:
            # infer() releases the GIL while it runs, so the other streams' requests run at the same time.
            return request.infer(feed)[0].copy()
        finally:
            self._requests.put(request)


def resolve(
    model_dir: Path,
    cache_dir: Path,
    quantize: str | None,
    *,
    tokenizer: Any = None,
    calibration_texts: Sequence[str] = (),
    max_length: int = 512,
) -> Path:
    """The IR to serve: shipped in the model folder, else cached, else built now."""
    shipped = model_dir / file_name(quantize)
    if shipped.is_file():
        logger.info("using the OpenVINO IR shipped with the model: %s", shipped)
        return shipped
    cached = cache_dir / model_key(model_dir, quantize, calibration_texts) / file_name(quantize)
    if cached.is_file() and cached.with_suffix(".bin").is_file():
        logger.info("using the cached OpenVINO IR %s", cached)
        return cached
    if quantize and not calibration_texts:
        raise ModelLoadError(calibration_mod.missing_message(model_dir))
    calibration = (
        calibration_mod.batches(tokenizer, calibration_texts, max_length) if calibration_texts else []
    )
    return build(model_dir, cached, quantize, calibration)


def load(
    model_dir: Path,
    config: Any,
    *,
    tokenizer: Any,
    cache_dir: Path,
    precision: str,
    threads: int,
    quantize: str | None = None,
    calibration_data: Path | None = None,
    mode: str = "throughput",
    max_length: int = 512,
) -> OpenVinoModel:
    """Convert or reuse the IR of ``model_dir`` and compile it; ``ModelLoadError`` says why it cannot be used."""
    reason = available()
    if reason is not None:
        raise ModelLoadError(f"--runtime openvino needs OpenVINO: {reason}")
    if quantize is not None and quantize not in QUANTIZE:
        raise ModelLoadError(f"--quantize must be one of {', '.join(QUANTIZE)}, got {quantize!r}")
    texts: list[str] = []
    if quantize:
        found = calibration_mod.find(model_dir, calibration_data)
        if found is not None:
            texts = found.texts
            logger.info("int8 calibration: %d texts from %s", len(texts), found.source)
    path = resolve(
        model_dir, cache_dir, quantize, tokenizer=tokenizer, calibration_texts=texts, max_length=max_length
    )
    try:
        return OpenVinoModel(
            path,
            config,
            precision=precision,
            threads=threads,
            mode=mode,
            quantize=quantize,
            blob_cache=cache_dir / "compiled",
        )
    except RuntimeError as exc:  # OpenVINO's own errors: an unreadable IR, an unsupported operation
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ModelLoadError(f"OpenVINO cannot compile {path}: {first}") from exc
