"""The default handler: any Hugging Face sequence-classification model directory, served with token-budget batching.

Input records (what ``predict_fn`` accepts: the value the default ``input_fn`` decoded, see ``batchlane.codecs``):

* a JSON object ``{"inputs": str | [str], "parameters": {"top_k": k}}`` (the Hugging Face toolkit shape), or a single
  record ``{"text": str}``; a bare JSON string; a JSON list of strings or records;
* JSON Lines (also when sent as ``application/json``): one record per line, a string or ``{"text"|"inputs": str}``;
* CSV rows: the text is the first column, or the column named ``text`` (or ``inputs``) when the first row contains
  such a header cell (that row is then not a record);
* ``text/plain``: one record per non-blank line.

Output: one ``{"label", "score"}`` per record in input order; with top-k > 1 a list of k of them per record, best
first. ``output_fn`` writes CSV rows ``label,score`` (top-k: ``label,score,label,score…``) and text lines with the
label (top-k: the labels joined by commas).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchlane import codecs, content_types
from batchlane.errors import BadInput, ModelError, ModelLoadError, ValidationError
from batchlane.serving.batching import plan_batches
from batchlane.settings import ServeSettings

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# Padded tokens per forward pass: enough to keep a CPU busy without large padding waste; GPUs take more.
DEFAULT_TOKEN_BUDGET = {"cpu": 8192, "cuda": 65536}
DEFAULT_MAX_BATCH_SIZE = {"cpu": 128, "cuda": 1024}
DEFAULT_MAX_LENGTH = 512
# Position ids of these models start after the padding index, so two positions are unusable.
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "longformer", "bart", "mbart"}
_TEXT_FIELDS = ("text", "inputs")
# Hugging Face pipeline parameters a client may send that are meaningless here (we always truncate).
_IGNORED_PARAMETERS = {"truncation", "padding"}


@dataclass(frozen=True)
class ClassifierOptions:
    """How the default model is loaded and run; ``None`` means "pick a default for the device"."""

    max_length: int | None = None
    token_budget: int | None = None
    max_batch_size: int | None = None
    device: str | None = None
    precision: str = "auto"
    top_k: int = 1
    threads: int | None = None

    @classmethod
    def from_settings(cls, settings: ServeSettings) -> ClassifierOptions:
        """The classifier part of the serve settings, validated (``ValidationError`` names the flag)."""
        options = cls(
            max_length=settings.max_length,
            token_budget=settings.token_budget,
            max_batch_size=settings.max_batch_size,
            device=settings.device if settings.device not in (None, "", "auto") else None,
            precision=(settings.precision or "auto").lower(),
            top_k=settings.top_k,
            threads=settings.threads,
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
        return options


def _dtype(precision: str, device: str) -> Any:
    import torch

    if precision == "fp32" or (precision == "auto" and not device.startswith("cuda")):
        return torch.float32
    if precision == "bf16" or (precision == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


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


class SequenceClassifier:
    """A loaded classifier and its fast tokenizer; ``classify`` is safe to call from several threads."""

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
    ) -> None:
        config = model.config
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.max_length = max_length
        self.token_budget = token_budget
        self.max_batch_size = max_batch_size
        self.top_k = top_k
        self.labels = [str(config.id2label.get(i, f"LABEL_{i}")) for i in range(config.num_labels)]
        # Same rule as the transformers text-classification pipeline: sigmoid for multi-label or single-logit heads.
        self.sigmoid = config.problem_type == "multi_label_classification" or config.num_labels == 1
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        # Forward passes of concurrent requests take turns; one payload is tokenized while another runs.
        self._lock = threading.Lock()
        # Fast tokenizers re-set truncation on their shared Rust object at every call, and PyO3 refuses that while
        # another thread is encoding ("RuntimeError: Already borrowed", huggingface/tokenizers#537).
        self._tokenizer_lock = threading.Lock()

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
        if options.threads:
            torch.set_num_threads(options.threads)
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
        dtype = _dtype(options.precision, device)
        model = AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True, dtype=dtype)
        model.to(device).eval()
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        if not getattr(tokenizer, "is_fast", False):
            logger.warning("%s has no fast tokenizer; tokenizing will be slower", path)
        limit = _model_max_length(config, tokenizer)
        max_length = options.max_length or limit
        if max_length > limit:
            logger.warning("max length %d exceeds what the model supports; using %d", max_length, limit)
            max_length = limit
        kind = "cuda" if device.startswith("cuda") else "cpu"
        classifier = cls(
            model,
            tokenizer,
            device=device,
            max_length=max_length,
            token_budget=options.token_budget or DEFAULT_TOKEN_BUDGET[kind],
            max_batch_size=options.max_batch_size or DEFAULT_MAX_BATCH_SIZE[kind],
            top_k=options.top_k,
        )
        logger.info(
            "loaded %s (%s) on %s in %s: %d labels, max length %d, token budget %d",
            path,
            architectures[0] if architectures else config.model_type,
            device,
            str(dtype).removeprefix("torch."),
            len(classifier.labels),
            max_length,
            classifier.token_budget,
        )
        return classifier

    def classify(self, texts: Sequence[str], top_k: int | None = None) -> list[Any]:
        """One result per text, in order: ``{"label", "score"}``, or a list of ``top_k`` of them when ``top_k > 1``."""
        import numpy as np
        import torch

        k = min(top_k or self.top_k, len(self.labels))
        if not texts:
            return []
        with self._tokenizer_lock:
            ids = self.tokenizer(
                list(texts),
                truncation=True,
                max_length=self.max_length,
                padding=False,
                return_attention_mask=False,
                return_token_type_ids=False,
            )["input_ids"]
        lengths = [len(row) for row in ids]
        results: list[Any] = [None] * len(texts)
        for batch in plan_batches(lengths, self.token_budget, self.max_batch_size):
            width = lengths[batch[0]]  # the planner puts the longest record first
            input_ids = np.full((len(batch), width), self.pad_id, dtype=np.int64)
            for row, index in enumerate(batch):
                input_ids[row, : lengths[index]] = ids[index]
            batch_lengths = np.array([lengths[i] for i in batch], dtype=np.int64)
            mask = (np.arange(width)[None, :] < batch_lengths[:, None]).astype(np.int64)
            with self._lock, torch.inference_mode():
                logits = self.model(
                    input_ids=torch.from_numpy(input_ids).to(self.device),
                    attention_mask=torch.from_numpy(mask).to(self.device),
                ).logits.float()
                probs = torch.sigmoid(logits) if self.sigmoid else torch.softmax(logits, dim=-1)
                scores, labels = torch.topk(probs, k, dim=-1)
                scores_list, labels_list = scores.cpu().tolist(), labels.cpu().tolist()
            for index, row_scores, row_labels in zip(batch, scores_list, labels_list, strict=True):
                ranked = [
                    {"label": self.labels[j], "score": s} for j, s in zip(row_labels, row_scores, strict=True)
                ]
                results[index] = ranked[0] if k == 1 else ranked
        return results

    def warmup(self) -> None:
        """One tiny forward pass so the first request does not pay for lazy initialisation."""
        self.classify(["warm up"])


def _text_of(record: Any, index: int, column: int) -> str:
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


def payload_texts(data: Any) -> tuple[list[str], dict[str, Any]]:
    """The texts to classify and the request parameters, from a decoded payload (see the module docstring)."""
    parameters: dict[str, Any] = {}
    if isinstance(data, dict) and "inputs" in data:
        parameters = data.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise BadInput("'parameters' must be a JSON object")
        inputs = data["inputs"]
        records = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(records, list):
            raise BadInput("'inputs' must be a string or a list of strings")
    elif isinstance(data, dict | str):
        records = [data]
    elif isinstance(data, list):
        records = data
    else:
        raise BadInput(f"cannot find texts in a {type(data).__name__} payload")
    column = 0
    if records and all(isinstance(r, list) for r in records):
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
        results = model.classify(texts, _top_k(parameters, model.top_k, len(model.labels)))
        if len(results) != len(texts):
            raise ModelError(f"the model returned {len(results)} results for {len(texts)} records")
        return results

    def output_fn(self, prediction: Any, accept: str) -> tuple[bytes, str]:
        media = codecs.negotiate(accept, self.default_accept)
        if media == content_types.TEXT and isinstance(prediction, list):
            prediction = [_label_line(item) for item in prediction]
        return codecs.encode(prediction, media), media
