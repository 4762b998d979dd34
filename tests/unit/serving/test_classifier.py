"""The default sequence-classification handler: payload shapes, batching invariance, top-k, load errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchlane.errors import BadInput, ModelLoadError, ValidationError
from batchlane.serving.classifier import (
    ClassifierHandler,
    ClassifierOptions,
    SequenceClassifier,
    payload_texts,
)
from batchlane.settings import ServeSettings

# Each test starts a `batchlane serve` process or loads a real model: `make test-fast` skips them.
pytestmark = pytest.mark.slow

LABELS = {"billing", "fraud", "service"}
# Different lengths, so even a model that only sees [UNK] tokens gives distinguishable rows.
TEXTS = ["short", "a somewhat longer complaint about my bank", "x", "two words", "the longest text " * 30]


@pytest.mark.parametrize(
    ("data", "texts", "parameters"),
    [
        ({"inputs": "one"}, ["one"], {}),
        ({"inputs": ["a", "b"], "parameters": {"top_k": 2}}, ["a", "b"], {"top_k": 2}),
        ({"text": "single record"}, ["single record"], {}),
        ("bare string", ["bare string"], {}),
        (["a", {"text": "b"}, {"inputs": "c"}], ["a", "b", "c"], {}),
        ([["first col", "x"], ["second", "y"]], ["first col", "second"], {}),
        ([["id", "Text"], ["1", "hello"], ["2", "bye"]], ["hello", "bye"], {}),
        ([["inputs"], ["hello"]], ["hello"], {}),
        # Blank records (a blank JSON line, CSV row or text line) hold their place as None; an explicit record with
        # an empty text is classified like any other.
        (["a", None, "", "  ", {"text": ""}], ["a", None, None, None, ""], {}),
        ([["x"], [], ["  "]], ["x", None, None], {}),
        ([["text"], [], ["hi"]], [None, "hi"], {}),
        (None, [None], {}),
    ],
)
def test_payload_texts(data: object, texts: list[str], parameters: dict) -> None:
    assert payload_texts(data) == (texts, parameters)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "no records"),
        ([["text"]], "no records"),
        ({"other": 1}, "record 0 has no string 'text' or 'inputs' field"),
        (["ok", 5], "record 1 is a int"),
        ([{"text": "a", "text_pair": "b"}], "sentence pair"),
        ({"inputs": {"a": 1}}, "'inputs' must be a string or a list"),
        ({"inputs": ["a"], "parameters": [1]}, "'parameters' must be a JSON object"),
        ([["id", "text"], ["1"]], "record 0 has no text in column 2"),
        (42, "cannot find texts in a int payload"),
    ],
)
def test_payload_texts_errors(data: object, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        payload_texts(data)


@pytest.fixture(scope="module", params=["bert", "modernbert"])
def classifier(request: pytest.FixtureRequest) -> SequenceClassifier:
    model_dir = request.getfixturevalue(f"tiny_{request.param}_dir")
    return SequenceClassifier.load(model_dir, ClassifierOptions(token_budget=64, max_batch_size=3))


def test_one_result_per_text_in_input_order(classifier: SequenceClassifier) -> None:
    batched = classifier.classify(TEXTS)
    assert len(batched) == len(TEXTS)
    assert all(set(r) == {"label", "score"} and r["label"] in LABELS for r in batched)
    # Padding and length-sorted batches must not change any result: compare with one text at a time.
    for text, result in zip(TEXTS, batched, strict=True):
        alone = classifier.classify([text])[0]
        assert alone["label"] == result["label"]
        assert alone["score"] == pytest.approx(result["score"], abs=1e-4)


def test_top_k_ranks_labels(classifier: SequenceClassifier) -> None:
    results = classifier.classify(TEXTS[:2], top_k=3)
    for ranked in results:
        assert [r["label"] for r in ranked] and {r["label"] for r in ranked} == LABELS
        scores = [r["score"] for r in ranked]
        assert scores == sorted(scores, reverse=True)
        assert sum(scores) == pytest.approx(1.0, abs=1e-4)
    # A batch of one pads differently from a batch of two, so bf16 scores may differ in the last digits.
    alone = classifier.classify(TEXTS[:1], top_k=10)[0][0]
    assert alone["label"] == results[0][0]["label"]
    assert alone["score"] == pytest.approx(results[0][0]["score"], abs=1e-3)


def test_truncates_to_max_length(tiny_bert_dir: Path) -> None:
    classifier = SequenceClassifier.load(tiny_bert_dir, ClassifierOptions(max_length=8))
    assert classifier.max_length == 8
    long, truncated = "word " * 200, "word " * 6  # 6 words + [CLS] + [SEP] = 8 tokens
    assert classifier.classify([long])[0]["score"] == pytest.approx(
        classifier.classify([truncated])[0]["score"]
    )


def test_max_length_defaults_to_the_model_limit(tiny_modernbert_dir: Path) -> None:
    assert SequenceClassifier.load(tiny_modernbert_dir).max_length == 512
    assert SequenceClassifier.load(tiny_modernbert_dir, ClassifierOptions(max_length=4096)).max_length == 512


def test_predict_fn_applies_parameters(tiny_bert_dir: Path) -> None:
    handler = ClassifierHandler(ServeSettings.from_env({}, model_dir=tiny_bert_dir))
    model = handler.model_fn(str(tiny_bert_dir))
    assert isinstance(handler.predict_fn({"inputs": ["a", "b"], "parameters": {"top_k": 2}}, model)[0], list)
    assert len(handler.predict_fn({"inputs": "a", "parameters": {"top_k": None}}, model)[0]) == 3
    assert isinstance(handler.predict_fn({"inputs": "a", "parameters": {"truncation": True}}, model)[0], dict)
    with pytest.raises(BadInput, match="unsupported parameter"):
        handler.predict_fn({"inputs": "a", "parameters": {"temperature": 2}}, model)
    with pytest.raises(BadInput, match="top_k must be a positive integer"):
        handler.predict_fn({"inputs": "a", "parameters": {"top_k": 0}}, model)


def test_output_fn_shapes_text_and_csv(tiny_bert_dir: Path) -> None:
    handler = ClassifierHandler(ServeSettings.from_env({}, model_dir=tiny_bert_dir))
    single = [{"label": "fraud", "score": 0.75}]
    ranked = [[{"label": "fraud", "score": 0.75}, {"label": "billing", "score": 0.25}]]
    assert handler.output_fn(single, "text/plain") == (b"fraud\n", "text/plain")
    assert handler.output_fn(ranked, "text/plain") == (b"fraud,billing\n", "text/plain")
    assert handler.output_fn(ranked, "text/csv") == (b"fraud,0.75,billing,0.25\n", "text/csv")
    assert handler.output_fn(single, "*/*") == (b'[{"label":"fraud","score":0.75}]', "application/json")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"precision": "fp8"}, "--precision must be one of"),
        ({"token_budget": 0}, "--token-budget must be at least 1"),
    ],
)
def test_options_are_validated(overrides: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ClassifierOptions.from_settings(ServeSettings.from_env({}, **overrides))


def test_options_from_env() -> None:
    env = {"BATCHLANE_TOKEN_BUDGET": "1024", "BATCHLANE_PRECISION": "BF16", "BATCHLANE_TOP_K": "2"}
    options = ClassifierOptions.from_settings(ServeSettings.from_env(env, device="auto"))
    assert (options.token_budget, options.precision, options.top_k, options.device) == (1024, "bf16", 2, None)


def test_folder_without_config_is_a_clear_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="has no config.json"):
        SequenceClassifier.load(tmp_path)


def test_base_encoder_without_head_is_refused(tiny_bert_dir: Path, tmp_path: Path) -> None:
    for item in tiny_bert_dir.iterdir():
        (tmp_path / item.name).symlink_to(item)
    config = json.loads((tiny_bert_dir / "config.json").read_text())
    (tmp_path / "config.json").unlink()
    (tmp_path / "config.json").write_text(json.dumps(dict(config, architectures=["BertModel"])))
    with pytest.raises(ModelLoadError, match="BertModel, not a sequence classifier"):
        SequenceClassifier.load(tmp_path)


def test_bf16_on_cpu_still_classifies(tiny_bert_dir: Path) -> None:
    options = ClassifierOptions(precision="bf16", device="cpu", runtime="torch")
    classifier = SequenceClassifier.load(tiny_bert_dir, options)
    assert str(classifier.model.dtype) == "torch.bfloat16"
    assert classifier.classify(["hello"])[0]["label"] in LABELS


def test_classify_from_many_threads(classifier: SequenceClassifier) -> None:
    """Concurrent requests share one tokenizer and model (MaxConcurrentTransforms > 1)."""
    from concurrent.futures import ThreadPoolExecutor

    expected = classifier.classify(TEXTS)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: classifier.classify(TEXTS), range(32)))
    assert all([r["label"] for r in result] == [e["label"] for e in expected] for result in results)


def test_concurrent_loads_keep_their_own_precision(tiny_bert_dir: Path) -> None:
    """from_pretrained flips torch's process-wide default dtype while it builds a model; loads must not interleave."""
    from concurrent.futures import ThreadPoolExecutor

    precisions = ["bf16", "fp32"] * 4
    with ThreadPoolExecutor(max_workers=len(precisions)) as pool:
        loaded = list(
            pool.map(
                lambda p: SequenceClassifier.load(
                    tiny_bert_dir, ClassifierOptions(precision=p, device="cpu", runtime="torch")
                ),
                precisions,
            )
        )
    for precision, classifier in zip(precisions, loaded, strict=True):
        wanted = "torch.bfloat16" if precision == "bf16" else "torch.float32"
        assert {str(p.dtype) for p in classifier.model.parameters()} == {wanted}, precision
        assert classifier.classify(["hello"])[0]["label"] in LABELS


def _with_truncation(model_dir: Path, target: Path, truncation: str) -> Path:
    import shutil

    shutil.copytree(model_dir, target)
    config = json.loads((target / "config.json").read_text())
    (target / "config.json").write_text(json.dumps(dict(config, batchlane_truncation=truncation)))
    return target


def test_serves_with_the_truncation_it_was_trained_with(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """A model trained with --truncation head_tail is served with the same cut, or serving would see other tokens."""
    from transformers import AutoTokenizer

    from batchlane.training.encoding import encode_texts

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    words = [w for w in tokenizer.get_vocab() if w.isalpha() and len(w) > 2][:60]
    texts = [" ".join(words), "short text", " ".join(reversed(words))]
    # The cut is the tokenizer's, whatever the runtime: torch spares converting the copied model for OpenVINO.
    options = ClassifierOptions(max_length=16, device="cpu", precision="fp32", runtime="torch")
    head_tail = SequenceClassifier.load(
        _with_truncation(tiny_bert_dir, tmp_path / "ht", "head_tail"), options
    )
    head = SequenceClassifier.load(tiny_bert_dir, options)

    assert head_tail.truncation == "head_tail" and head.truncation == "head"
    served = head_tail.encode(texts)
    assert served == encode_texts(tokenizer, texts, 16, "head_tail")
    assert head.encode(texts) == encode_texts(tokenizer, texts, 16, "head")
    assert served[0] != head.encode(texts)[0] and len(served[0]) == 16
    assert served[0][-2] == tokenizer.convert_tokens_to_ids(words[-1])  # the end of the text survives the cut
    assert served[1] == head.encode(texts)[1]  # short texts are not cut at all
    assert len(head_tail.classify(texts)) == 3


def test_unknown_truncation_in_config_is_a_load_error(tiny_bert_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(
        ModelLoadError, match="batchlane_truncation: truncation must be one of head, head_tail"
    ):
        SequenceClassifier.load(
            _with_truncation(tiny_bert_dir, tmp_path / "bad", "middle"), ClassifierOptions(runtime="torch")
        )
