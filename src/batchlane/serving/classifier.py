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

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from batchlane import codecs, content_types, metrics
from batchlane import truncation as truncation_mod
from batchlane.errors import ModelError, ModelLoadError
from batchlane.serving.batching import pad_batch, plan_batches

# The pieces of the default handler live in their own modules; these names stay importable from here.
from batchlane.serving.classifier_loader import TorchForward
from batchlane.serving.classifier_options import (  # noqa: F401
    DEFAULT_BATCH_OVERHEAD,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_LENGTH,
    DEFAULT_TOKEN_BUDGET,
    PRECISIONS,
    QUANTIZE,
    RUNTIMES,
    ClassifierOptions,
)
from batchlane.serving.payload import _label_line, _top_k, payload_texts
from batchlane.serving.tokenizer import _model_max_length, _own_encoder  # noqa: F401
from batchlane.settings import ServeSettings

# Records tokenized at a time: sorting within 1,024 records pads as little as sorting all of them, and the next
# window is tokenized in a thread while this one runs through the model.
WINDOW = 1024


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
        from batchlane.serving import classifier_loader

        return classifier_loader.load(cls, model_dir, options)

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
