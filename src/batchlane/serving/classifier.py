"""The default handler: any Hugging Face sequence-classification model directory, served with token-budget batching.

Input records (what ``predict_fn`` accepts: the value the default ``input_fn`` decoded, see ``batchlane.codecs``):

* a JSON object ``{"inputs": str | [str], "parameters": {"top_k": k}}`` (the Hugging Face toolkit shape), or a single
  record ``{"text": str}``; a bare JSON string; a JSON list of strings or records;
* JSON Lines (also when sent as ``application/json``): one record per line, a string or ``{"text"|"inputs": str}``;
* CSV rows: the text is the first column, or the column named ``text`` (or ``inputs``) when the first row contains
  such a header cell (that row is then not a record);
* ``text/plain``: one record per line.

A blank record (a blank or whitespace-only line in any line-based format) never reaches the model and is answered
with an empty result: ``null`` in JSON and JSON Lines, an empty line in CSV and
text. A batch transform sends blank lines as records and expects one result line for each.

Output: one ``{"label", "score"}`` per record in input order; with top-k > 1 a list of k of them per record, best
first. ``output_fn`` writes CSV rows ``label,score`` (top-k: ``label,score,label,score…``) and text lines with the
label (top-k: the labels joined by commas).
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from batchlane import codecs, content_types, metrics
from batchlane import settings as settings_mod
from batchlane import truncation as truncation_mod
from batchlane.errors import BadInput, ModelError, ModelLoadError, ValidationError
from batchlane.serving import precision as precision_mod
from batchlane.serving import runtime as runtime_mod
from batchlane.serving.batching import pad_batch, plan_batches
from batchlane.settings import ServeSettings

logger = logging.getLogger(__name__)

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
# Records tokenized at a time: sorting within 1,024 records pads as little as sorting all of them, and the next
# window is tokenized in a thread while this one runs through the model.
WINDOW = 1024
# Position ids of these models start after the padding index, so two positions are unusable.
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "longformer", "bart", "mbart"}
_TEXT_FIELDS = ("text", "inputs")
# Hugging Face pipeline parameters a client may send that are meaningless here (we always truncate).
_IGNORED_PARAMETERS = {"truncation", "padding"}


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
    kept (default ``<BATCHLANE_HOME>/onnx`` and ``/openvino``); ``calibration_data`` is the texts file OpenVINO's
    int8 is calibrated on.
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


def _model_max_length(config: Any, tokenizer: Any) -> int:
    limit = DEFAULT_MAX_LENGTH
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        limit = min(limit, positions - (2 if getattr(config, "model_type", "") in _OFFSET_POSITIONS else 0))
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if (
        isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < 1_000_000
    ):  # transformers uses 1e30 for "none"
        limit = min(limit, tokenizer_limit)
    return limit


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


def _own_encoder(tokenizer: Any, max_length: int | None) -> Any | None:
    """A private copy of a fast tokenizer's Rust backend with truncation set once, or None for slow tokenizers.

    transformers re-applies truncation on the shared backend at every call, which PyO3 refuses while another thread
    is encoding ("Already borrowed", huggingface/tokenizers#537); a copy that is never reconfigured can be used by
    any number of threads at once, and skips transformers' per-call Python work.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not getattr(tokenizer, "is_fast", False):
        return None
    try:
        from tokenizers import Tokenizer

        encoder = Tokenizer.from_str(backend.to_str())
        encoder.no_padding()
        if max_length is None:  # the caller cuts the full encoding itself (head_tail)
            encoder.no_truncation()
        else:
            encoder.enable_truncation(max_length, direction=getattr(tokenizer, "truncation_side", "right"))
    except Exception as exc:  # an exotic tokenizer: the transformers call still works
        logger.debug("tokenizer backend copy failed (%s); using the transformers call", exc)
        return None
    return encoder


class SequenceClassifier:
    """A loaded classifier and its fast tokenizer; ``classify`` is safe to call from several threads.

    ``forward`` maps padded ``(input_ids, attention_mask)`` int64 arrays to logits (a tensor or an array); it
    defaults to running ``model`` with PyTorch. ``batcher`` is set when real-time dynamic batching is on.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        device: str,
        max_length: int,
        token_budget: int,
        max_batch_size: int,
        top_k: int = 1,
        forward: Callable[[np.ndarray, np.ndarray], Any] | None = None,
        precision: str = "fp32",
        runtime: str = "torch",
        batch_overhead: int | None = None,
    ) -> None:
        config = model.config
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.max_length = max_length
        self.token_budget = token_budget
        self.max_batch_size = max_batch_size
        self.batch_overhead = batch_overhead
        self.top_k = top_k
        self.forward = forward or TorchForward(model, device)
        self.precision = precision
        self.runtime = runtime
        self.batcher: Any = None
        self.labels = [str(config.id2label.get(i, f"LABEL_{i}")) for i in range(config.num_labels)]
        self._label_names = np.array(self.labels, dtype=object)
        # Same rule as the transformers text-classification pipeline: sigmoid for multi-label or single-logit heads.
        self.sigmoid = config.problem_type == "multi_label_classification" or config.num_labels == 1
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        # Every forward pass runs on this one thread: concurrent requests take turns (one payload is tokenized while
        # another runs), and torch keeps a single OpenMP team (each calling thread would get its own, whose idle
        # spinning competes with the working one for the cores).
        # A runtime with several inference streams (OpenVINO's throughput mode) takes that many batches at once.
        self.parallel = max(1, int(getattr(self.forward, "parallel", 1)))
        self._model_thread = ThreadPoolExecutor(self.parallel, thread_name_prefix="batchlane-model")
        truncation = getattr(config, truncation_mod.CONFIG_KEY, None) or "head"
        try:
            self.truncation = truncation_mod.check(truncation)
        except ValueError as exc:
            raise ModelLoadError(f"config.json {truncation_mod.CONFIG_KEY}: {exc}") from None
        self._encoder = _own_encoder(tokenizer, None if self.truncation == "head_tail" else max_length)
        self._tokenizer_lock = threading.Lock()  # only for tokenizers without a private backend copy

    @classmethod
    def load(cls, model_dir: str | Path, options: ClassifierOptions | None = None) -> SequenceClassifier:
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

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, cut to the max length the way the model was trained (thread-safe)."""
        head_tail = self.truncation == "head_tail"
        if self._encoder is not None:
            ids = [encoding.ids for encoding in self._encoder.encode_batch_fast(list(texts))]
        else:
            with self._tokenizer_lock:
                ids = self.tokenizer(
                    list(texts),
                    truncation=not head_tail,
                    max_length=None if head_tail else self.max_length,
                    padding=False,
                    return_attention_mask=False,
                    return_token_type_ids=False,
                    verbose=False,
                )["input_ids"]
        if head_tail:
            return [truncation_mod.cut_head_tail(row, self.max_length) for row in ids]
        return ids

    def predict_ids(self, ids: Sequence[Sequence[int]], k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, label indices)``, each ``len(ids) × k`` and best first, for tokenized records.

        Records run in length-sorted token-budget batches (``plan_batches``); the results land back in input order.
        """
        scores = np.empty((len(ids), k), dtype=np.float32)
        labels = np.empty((len(ids), k), dtype=np.int64)
        lengths = [len(row) for row in ids]
        batches = plan_batches(
            lengths, self.token_budget, self.max_batch_size, batch_overhead=self.batch_overhead
        )
        if self.parallel == 1:
            for batch in batches:
                input_ids, mask = pad_batch(ids, batch, self.pad_id)
                metrics.observe_batch(len(batch), int(mask.sum()), mask.size)
                scores[batch], labels[batch] = self._model_thread.submit(
                    self._top_k, input_ids, mask, k
                ).result()
            return scores, labels
        pending = [(batch, self._model_thread.submit(self._run, ids, batch, k)) for batch in batches]
        for batch, future in pending:
            scores[batch], labels[batch] = future.result()
        return scores, labels

    def _run(
        self, ids: Sequence[Sequence[int]], batch: Sequence[int], k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        input_ids, mask = pad_batch(ids, batch, self.pad_id)
        metrics.observe_batch(len(batch), int(mask.sum()), mask.size)
        return self._top_k(input_ids, mask, k)

    def _top_k(self, input_ids: np.ndarray, mask: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """One forward pass and its ``k`` best labels (runs on the model thread)."""
        import torch

        logits = self.forward(input_ids, mask)
        if isinstance(logits, np.ndarray):
            logits = torch.from_numpy(logits)
        probs = torch.sigmoid(logits) if self.sigmoid else torch.softmax(logits, dim=-1)
        top_scores, top_labels = torch.topk(probs, k, dim=-1)
        return top_scores.cpu().numpy(), top_labels.cpu().numpy()

    def format(self, scores: np.ndarray, labels: np.ndarray, k: int) -> list[Any]:
        """The response items for ``predict_ids``'s arrays: ``{"label", "score"}``, or ranked lists when ``k > 1``."""
        names = self._label_names[labels[:, :k]].tolist()
        values = scores[:, :k].tolist()
        if k == 1:
            return [{"label": row[0], "score": value[0]} for row, value in zip(names, values, strict=True)]
        return [
            [{"label": n, "score": s} for n, s in zip(row, value, strict=True)]
            for row, value in zip(names, values, strict=True)
        ]

    def classify(self, texts: Sequence[str], top_k: int | None = None) -> list[Any]:
        """One result per text, in order: ``{"label", "score"}``, or a list of ``top_k`` of them when ``top_k > 1``."""
        k = min(top_k or self.top_k, len(self.labels))
        texts = list(texts)
        if not texts:
            return []
        if len(texts) <= WINDOW:
            scores, labels = self.predict_ids(self.encode(texts), k)
            return self.format(scores, labels, k)
        windows = [texts[start : start + WINDOW] for start in range(0, len(texts), WINDOW)]
        parts = []
        with ThreadPoolExecutor(1, thread_name_prefix="batchlane-tokenize") as pool:
            pending = pool.submit(self.encode, windows[0])
            for index in range(len(windows)):
                ids = pending.result()
                if index + 1 < len(windows):
                    pending = pool.submit(self.encode, windows[index + 1])
                parts.append(self.predict_ids(ids, k))
        return self.format(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), k)

    def warmup(self) -> None:
        """One tiny forward pass so the first request does not pay for lazy initialisation."""
        self.classify(["warm up"])

    def close(self) -> None:
        """Stop the dynamic batcher's and the model's threads."""
        if self.batcher is not None:
            self.batcher.close()
        self._model_thread.shutdown(wait=True)


def _text_of(record: Any, index: int, column: int) -> str | None:
    """The record's text, or None for a blank record (module docstring): a blank line of the payload. An explicit
    record with an empty text (``{"text": ""}``) is classified like any other."""
    cells = [record] if isinstance(record, str) else record if isinstance(record, list) else None
    if record is None or (cells is not None and not any(str(cell).strip() for cell in cells)):
        return None
    return _raw_text(record, index, column)


def _raw_text(record: Any, index: int, column: int) -> str:
    if isinstance(record, str):
        return record
    if isinstance(record, dict):
        if "text_pair" in record:
            raise BadInput(f"record {index} is a sentence pair; the default handler classifies single texts")
        for name in _TEXT_FIELDS:
            if isinstance(record.get(name), str):
                return record[name]
        raise BadInput(f"record {index} has no string 'text' or 'inputs' field (keys: {', '.join(record)})")
    if isinstance(record, list):  # a CSV row
        if len(record) <= column or not isinstance(record[column], str):
            raise BadInput(f"record {index} has no text in column {column + 1}")
        return record[column]
    raise BadInput(
        f"record {index} is a {type(record).__name__}; expected a string or an object with a 'text' field"
    )


def payload_texts(data: Any) -> tuple[list[str | None], dict[str, Any]]:
    """The texts to classify (None for a blank record) and the request parameters, from a decoded payload (see the
    module docstring)."""
    parameters: dict[str, Any] = {}
    if isinstance(data, dict) and "inputs" in data:
        parameters = data.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise BadInput("'parameters' must be a JSON object")
        inputs = data["inputs"]
        records = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(records, list):
            raise BadInput("'inputs' must be a string or a list of strings")
    elif isinstance(data, dict | str) or data is None:
        records = [data]
    elif isinstance(data, list):
        records = data
    else:
        raise BadInput(f"cannot find texts in a {type(data).__name__} payload")
    column = 0
    if records and records[0] and all(isinstance(r, list) for r in records):
        header = [str(cell).strip().lower() for cell in records[0]]
        for name in _TEXT_FIELDS:
            if name in header:
                column, records = header.index(name), records[1:]
                break
    if not records:
        raise BadInput("the payload holds no records")
    return [_text_of(record, i, column) for i, record in enumerate(records)], parameters


def _top_k(parameters: dict[str, Any], default: int, labels: int) -> int:
    unknown = set(parameters) - {"top_k"} - _IGNORED_PARAMETERS
    if unknown:
        raise BadInput(
            f"unsupported parameter(s) {', '.join(sorted(unknown))}; the default handler takes top_k"
        )
    if "top_k" not in parameters:
        return default
    value = parameters["top_k"]
    if value is None:  # the transformers pipeline's spelling of "all labels"
        return labels
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadInput(f"top_k must be a positive integer or null, got {value!r}")
    return value


def _label_line(item: Any) -> Any:
    if item is None:
        return ""
    if isinstance(item, dict) and "label" in item:
        return str(item["label"])
    if isinstance(item, list) and item and all(isinstance(x, dict) and "label" in x for x in item):
        return ",".join(str(x["label"]) for x in item)
    return item


class ClassifierHandler:
    """The default hooks (``handler.DefaultHooks``) for a sequence-classification model directory."""

    def __init__(self, settings: ServeSettings) -> None:
        self.options = ClassifierOptions.from_settings(settings)
        self.default_accept = settings.default_accept

    def check_model(self, model: Any) -> None:
        if not isinstance(model, SequenceClassifier):
            raise ModelLoadError(
                f"the default predict_fn needs the default model_fn's model, but model_fn returned a "
                f"{type(model).__name__}; define predict_fn in code/inference.py (or return "
                "batchlane.serving.classifier.SequenceClassifier.load(model_dir) from model_fn)"
            )

    def model_fn(self, model_dir: str) -> SequenceClassifier:
        return SequenceClassifier.load(model_dir, self.options)

    def model_warmup_fn(self, model_dir: str, model: Any) -> None:
        if isinstance(model, SequenceClassifier):
            model.warmup()

    def input_fn(self, input_data: bytes | str, content_type: str) -> Any:
        return codecs.decode(input_data, content_type)

    def predict_fn(self, data: Any, model: SequenceClassifier) -> list[Any]:
        self.check_model(model)
        texts, parameters = payload_texts(data)
        k = _top_k(parameters, model.top_k, len(model.labels))
        present = [text for text in texts if text is not None]
        # With dynamic batching on, concurrent requests share forward passes; the results are the same.
        classify = model.batcher.classify if model.batcher is not None else model.classify
        results = classify(present, k) if present else []
        if len(results) != len(present):
            raise ModelError(f"the model returned {len(results)} results for {len(present)} records")
        answers = iter(results)
        return [None if text is None else next(answers) for text in texts]

    def output_fn(self, prediction: Any, accept: str) -> tuple[bytes, str]:
        media = codecs.negotiate(accept, self.default_accept)
        if media == content_types.TEXT and isinstance(prediction, list):
            prediction = [_label_line(item) for item in prediction]
        elif media == content_types.CSV and isinstance(prediction, list):
            prediction = [[] if item is None else item for item in prediction]  # an empty line, not ""
        return codecs.encode(prediction, media), media
