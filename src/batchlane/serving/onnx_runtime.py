"""ONNX Runtime for the default classifier (``--runtime onnx``, optionally ``--quantize int8``).

The model folder's PyTorch weights are exported once with ``torch.onnx.export``, fused with ONNX Runtime's
transformer optimizer where it knows the architecture (attention, GELU, skip-LayerNorm), optionally quantised to int8
(``batchlane.serving.onnx_quantize``: static, calibrated on texts from ``--calibration-data`` or the model's own
``calibration.jsonl``; dynamic when there are none, with a logged warning), and cached:

* a ``model.onnx`` (or ``model-int8.onnx``) shipped in the model folder itself is used as is;
* otherwise ``<cache>/<key>/model.onnx`` and ``model-int8.onnx``, where ``<cache>`` is ``BATCHLANE_ONNX_CACHE`` or
  ``<BATCHLANE_HOME>/onnx`` and ``<key>`` hashes the config and weight files with the export recipe (and, for
  static int8, the calibration texts), so a changed model, recipe or calibration set never reuses a stale graph. Files appear by atomic rename: a concurrent start never reads half
  of one.

A fresh export is checked against PyTorch on sample inputs before it is cached: fp32 must give the same labels and
logits within 1e-3 (else ``ModelLoadError``); for int8 the label agreement is logged. ``onnxruntime`` (the ``[onnx]``
extra) is imported only here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from batchlane.errors import ModelLoadError
from batchlane.serving import calibration as calibration_mod
from batchlane.serving import onnx_quantize

logger = logging.getLogger(__name__)

EXPORT_RECIPE = 3  # bump when the export, optimisation or quantisation steps change
OPSET = 17
QUANTIZE = ("int8",)
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
# Architectures ONNX Runtime's transformer optimizer fuses as BERT (the same encoder layout).
_OPTIMIZER_TYPES = {
    "bert": "bert",
    "roberta": "bert",
    "xlm-roberta": "bert",
    "camembert": "bert",
    "electra": "bert",
}
_FP32_TOLERANCE = 1e-3


def file_name(quantize: str | None) -> str:
    return "model-int8.onnx" if quantize == "int8" else "model.onnx"


def model_key(model_dir: Path, quantize: str | None = None, calibration: Sequence[str] = ()) -> str:
    """A hash of the model's config and weight files plus the export recipe and, for static int8, the calibration
    texts (``quantize`` with no texts is dynamic int8). Not of the path: copies share it."""
    import torch

    mode = (
        None
        if not quantize
        else ("static", calibration_mod.digest(calibration))
        if calibration
        else "dynamic"
    )
    digest = hashlib.sha256()
    digest.update(
        json.dumps([EXPORT_RECIPE, OPSET, torch.__version__.split("+")[0], quantize, mode]).encode()
    )
    for path in sorted(model_dir.iterdir()):
        if path.is_file() and (path.name == "config.json" or path.suffix in _WEIGHT_SUFFIXES):
            digest.update(path.name.encode() + b"\0")
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 22), b""):
                    digest.update(chunk)
    return digest.hexdigest()[:24]


def _sample_inputs(config: Any, rows: int = 4, width: int = 24, seed: int = 0) -> dict[str, np.ndarray]:
    """Random token ids with ragged padding, so the check covers the attention mask too."""
    rng = np.random.default_rng(seed)
    vocab = int(getattr(config, "vocab_size", 1000))
    low = min(1000, vocab // 2)
    input_ids = rng.integers(low, vocab, size=(rows, width), dtype=np.int64)
    mask = np.ones_like(input_ids)
    for row in range(1, rows):
        mask[row, width - row * (width // (rows + 1)) :] = 0
    pad = getattr(config, "pad_token_id", None)
    input_ids[mask == 0] = pad if isinstance(pad, int) else 0
    return {"input_ids": input_ids, "attention_mask": mask}


def _load_torch_model(model_dir: Path) -> Any:
    from transformers import AutoModelForSequenceClassification

    try:  # the eager attention graph is the one ONNX Runtime fuses into its Attention kernel
        model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, local_files_only=True, attn_implementation="eager"
        )
    except (ValueError, TypeError):
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, local_files_only=True)
    return model.float().eval()


def _export(model: Any, target: Path) -> None:
    import torch

    sample = {k: torch.from_numpy(v[:2, :16].copy()) for k, v in _sample_inputs(model.config).items()}
    dynamic = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow in transformers' code
        torch.onnx.export(
            model,
            (),
            str(target),
            kwargs=sample,
            input_names=list(sample),
            output_names=["logits"],
            dynamic_axes={**dynamic, "logits": {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,  # the TorchScript exporter: no onnxscript dependency, and a graph ORT knows how to fuse
        )


def _optimize(source: Path, target: Path, config: Any) -> bool:
    """Fuse attention/GELU/LayerNorm with ONNX Runtime's transformer optimizer; False when it does not apply."""
    kind = _OPTIMIZER_TYPES.get(getattr(config, "model_type", ""))
    if kind is None:
        return False
    try:
        from onnxruntime.transformers import optimizer

        optimized = optimizer.optimize_model(
            str(source),
            model_type=kind,
            num_heads=int(config.num_attention_heads),
            hidden_size=int(config.hidden_size),
            opt_level=1,
        )
        optimized.save_model_to_file(str(target))
    except Exception as exc:  # an unfused graph is still correct, only slower
        logger.warning("ONNX Runtime's optimizer failed (%s); using the unfused graph", exc)
        return False
    fused = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
    logger.info("ONNX graph fused: %s", fused or "nothing")
    return True


def _check(model: Any, session: Any, quantized: bool, checks: list[dict[str, np.ndarray]]) -> str:
    """Compare the new graph with PyTorch on ``checks`` (sample inputs, or calibration batches); a wrong fp32 export
    is a ``ModelLoadError``."""
    import torch

    same = total = 0
    difference = 0.0
    for inputs in checks:
        with torch.inference_mode():
            expected = model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).logits.float().numpy()
        got = session.run([session.get_outputs()[0].name], _feed(session, inputs))[0]
        difference = max(difference, float(np.abs(got - expected).max()))
        same += int((got.argmax(-1) == expected.argmax(-1)).sum())
        total += len(expected)
    agree = same / total
    summary = f"max |logit difference| {difference:.2e}, labels agree on {same}/{total} check inputs"
    if not quantized and (difference > _FP32_TOLERANCE or agree < 1.0):
        raise ModelLoadError(f"the ONNX export does not match PyTorch: {summary}; serve with --runtime torch")
    return summary


def _feed(session: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = {i.name for i in session.get_inputs()}
    feed = {k: v for k, v in inputs.items() if k in names}
    if "token_type_ids" in names:  # graphs exported by other tools (optimum) take it explicitly
        feed["token_type_ids"] = np.zeros_like(inputs["input_ids"])
    return feed


def session_options(threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # ORT's warnings about unused initializers are noise here
    return options


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])


def build(
    model_dir: Path,
    target_dir: Path,
    quantize: str | None,
    threads: int,
    calibration: list[dict[str, np.ndarray]] | None = None,
) -> Path:
    """Export (and quantise: static int8 with ``calibration`` batches, else dynamic) ``model_dir`` into
    ``target_dir``; returns the graph path. Checked against PyTorch before renaming."""
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / file_name(quantize)
    model = _load_torch_model(model_dir)
    with tempfile.TemporaryDirectory(dir=target_dir, prefix=".export-") as scratch:
        raw, fused = Path(scratch) / "raw.onnx", Path(scratch) / "fused.onnx"
        try:
            _export(model, raw)
        except Exception as exc:
            raise ModelLoadError(
                f"exporting {model_dir} to ONNX failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                "serve it with --runtime torch"
            ) from exc
        graph = fused if _optimize(raw, fused, model.config) else raw
        if quantize == "int8" and calibration:
            onnx_quantize.quantize_static(graph, Path(scratch) / "int8.onnx", calibration)
            graph = Path(scratch) / "int8.onnx"
        elif quantize == "int8":
            onnx_quantize.quantize_dynamic(graph, Path(scratch) / "int8.onnx")
            graph = Path(scratch) / "int8.onnx"
        checks = calibration[:8] if calibration else [_sample_inputs(model.config)]
        summary = _check(model, _session(graph, threads), quantize is not None, checks)
        partial = Path(scratch) / "final.onnx"
        shutil.copyfile(graph, partial)
        os.replace(partial, target)
    logger.info("exported %s to %s (%s)", model_dir, target, summary)
    return target


def resolve(
    model_dir: Path,
    cache_dir: Path,
    quantize: str | None,
    threads: int,
    *,
    tokenizer: Any = None,
    calibration_texts: Sequence[str] = (),
    max_length: int = 512,
) -> Path:
    """The ONNX graph to serve: shipped in the model folder, else cached, else built now (int8: static when
    ``calibration_texts`` are given, tokenised with ``tokenizer`` as the server does, else dynamic)."""
    shipped = model_dir / file_name(quantize)
    if shipped.is_file():
        logger.info("using the ONNX graph shipped with the model: %s", shipped)
        return shipped
    texts = calibration_texts if quantize else ()
    cached = cache_dir / model_key(model_dir, quantize, texts) / file_name(quantize)
    if cached.is_file():
        logger.info("using the cached ONNX graph %s", cached)
        return cached
    batches = calibration_mod.batches(tokenizer, texts, max_length) if texts else None
    return build(model_dir, cached.parent, quantize, threads, batches)


class OnnxModel:
    """An ONNX Runtime session with the call shape of the PyTorch path: int64 arrays in, fp32 logits out."""

    def __init__(
        self, path: Path, config: Any, threads: int, quantize: str | None = None, mode: str | None = None
    ) -> None:
        self.path = path
        self.config = config
        self.quantize = quantize
        self.mode = mode  # static or dynamic int8; None for fp32 (or a graph shipped with the model)
        self.session = _session(path, threads)
        self.dtype = "int8" if quantize else "fp32"
        self._output = [self.session.get_outputs()[0].name]

    @classmethod
    def load(
        cls,
        model_dir: Path,
        config: Any,
        *,
        cache_dir: Path,
        quantize: str | None,
        threads: int,
        tokenizer: Any = None,
        calibration_data: Path | None = None,
        max_length: int = 512,
    ) -> OnnxModel:
        """Export, quantise or reuse the graph of ``model_dir``; ``ModelLoadError`` says why it cannot be used.

        int8 is static when calibration texts are found (``calibration.find``: ``calibration_data``, else the
        model's ``calibration.jsonl``), else dynamic, with a warning that says how to get static.
        """
        if quantize is not None and quantize not in QUANTIZE:
            raise ModelLoadError(f"--quantize must be one of {', '.join(QUANTIZE)}, got {quantize!r}")
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise ModelLoadError(
                "--runtime onnx needs onnxruntime; install batchlane[onnx] or serve with --runtime torch"
            ) from exc
        texts: list[str] = []
        mode = None
        if quantize and not (model_dir / file_name(quantize)).is_file():
            found = calibration_mod.find(model_dir, calibration_data)
            if found is not None:
                texts, mode = found.texts, "static"
                logger.info("int8 (static): calibrating on %d texts from %s", len(texts), found.source)
            else:
                mode = "dynamic"
                logger.warning(
                    "int8 (dynamic): no calibration texts (%s has no %s and no --calibration-data was given), so "
                    "activations are quantised per batch, which changes more labels than static int8",
                    model_dir,
                    calibration_mod.CALIBRATION_FILE,
                )
        path = resolve(
            model_dir,
            cache_dir,
            quantize,
            threads,
            tokenizer=tokenizer,
            calibration_texts=texts,
            max_length=max_length,
        )
        return cls(path, config, threads, quantize, mode)

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feed = _feed(self.session, {"input_ids": input_ids, "attention_mask": attention_mask})
        return self.session.run(self._output, feed)[0]
