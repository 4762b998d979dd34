"""The handler contract: hook binding and arity, user-module resolution, the per-request flow and the context."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchlane.errors import BadInput, ModelError, ModelLoadError
from batchlane.examples.user_code import EXAMPLES, make_model_dir
from batchlane.serving.classifier import ClassifierHandler
from batchlane.serving.context import Context, Headers
from batchlane.serving.handler import Handler, bind, hook_error, resolve_hooks
from batchlane.settings import ServeSettings


def _settings(model_dir: Path, **env: str) -> ServeSettings:
    return ServeSettings.from_env(env, model_dir=model_dir)


def _handler(model_dir: Path, **env: str) -> Handler:
    settings = _settings(model_dir, **env)
    defaults = ClassifierHandler(settings)
    return Handler(resolve_hooks(settings, model_dir, defaults), settings, model_dir, defaults)


@pytest.fixture(scope="module")
def config_only_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with just a config.json: enough for the keyword-model examples, no weights needed."""
    base = tmp_path_factory.mktemp("config-only")
    (base / "config.json").write_text(
        json.dumps({"id2label": {"0": "billing", "1": "fraud", "2": "service"}})
    )
    return base


def _example(name: str, base: Path, tmp_path: Path) -> Path:
    return make_model_dir(name, base, tmp_path / name)


def plain(a, b):
    return (a, b)


def with_context(a, b, context):
    return (a, b, context)


def with_context_default(a, b, context=None):
    return (a, b, context)


def star_args(*args):
    return args


def too_many(a, b, c, d):
    return a


def too_few(a):
    return a


def keyword_only(a, b, *, required):
    return a


@pytest.mark.parametrize(
    ("func", "takes_context"),
    [(plain, False), (with_context, True), (with_context_default, True), (star_args, False)],
)
def test_bind_decides_context_by_arity(func, takes_context: bool) -> None:
    assert bind("predict_fn", func, user=True).takes_context is takes_context


@pytest.mark.parametrize("func", [too_many, too_few, keyword_only])
def test_bind_refuses_other_arities_with_a_fix(func) -> None:
    with pytest.raises(ModelLoadError) as info:
        bind("predict_fn", func, user=True, source="inference.py")
    message = str(info.value)
    assert "predict_fn in inference.py" in message
    assert "predict_fn(data, model) or predict_fn(data, model, context)" in message


def test_hook_call_passes_context_only_when_taken() -> None:
    context = Context("m", "/m")
    assert bind("predict_fn", plain, user=True)(1, 2, context=context) == (1, 2)
    assert bind("predict_fn", with_context, user=True)(1, 2, context=context) == (1, 2, context)


def test_no_code_dir_uses_the_defaults(config_only_dir: Path) -> None:
    hooks = resolve_hooks(
        _settings(config_only_dir), config_only_dir, ClassifierHandler(_settings(config_only_dir))
    )
    assert hooks.module_file is None
    assert hooks.user_hooks == []
    assert hooks.transform_fn is None


@pytest.mark.parametrize(
    ("example", "user_hooks"),
    [
        ("without_context", ["model_fn", "input_fn", "predict_fn", "output_fn"]),
        # This example imports torch and transformers, seconds on a busy machine.
        pytest.param(
            "with_context", ["model_fn", "input_fn", "predict_fn", "output_fn"], marks=pytest.mark.slow
        ),
        ("transform_fn", ["model_fn", "transform_fn"]),
        ("predict_only", ["predict_fn"]),
    ],
)
def test_user_hooks_override_defaults(
    example: str, user_hooks: list[str], config_only_dir: Path, tmp_path: Path
) -> None:
    model_dir = _example(example, config_only_dir, tmp_path)
    settings = _settings(model_dir)
    hooks = resolve_hooks(settings, model_dir, ClassifierHandler(settings))
    assert sorted(hooks.user_hooks) == sorted(user_hooks)
    assert hooks.module_file == model_dir / "code" / "inference.py"
    assert hooks.predict_fn.takes_context is (example == "with_context")


def test_transform_fn_with_predict_fn_is_refused(config_only_dir: Path, tmp_path: Path) -> None:
    model_dir = _example("mixed", config_only_dir, tmp_path)
    with pytest.raises(ModelLoadError, match="defines transform_fn and predict_fn"):
        _handler(model_dir)


def test_bad_signature_is_refused_at_start_up(config_only_dir: Path, tmp_path: Path) -> None:
    model_dir = _example("bad_signature", config_only_dir, tmp_path)
    with pytest.raises(ModelLoadError, match=r"predict_fn in .*inference.py takes \(data\)"):
        _handler(model_dir)


def test_missing_named_program_fails(config_only_dir: Path, tmp_path: Path) -> None:
    model_dir = _example("without_context", config_only_dir, tmp_path)
    with pytest.raises(
        ModelLoadError, match="SAGEMAKER_PROGRAM=serve_me.py but .*serve_me.py does not exist"
    ):
        _handler(model_dir, SAGEMAKER_PROGRAM="serve_me.py")


def test_program_and_submit_directory_pick_the_module(config_only_dir: Path, tmp_path: Path) -> None:
    code = tmp_path / "elsewhere"
    code.mkdir()
    (code / "custom.py").write_text("def predict_fn(data, model):\n    return data\n")
    hooks = resolve_hooks(
        _settings(config_only_dir, SAGEMAKER_PROGRAM="custom", SAGEMAKER_SUBMIT_DIRECTORY=f"file://{code}"),
        config_only_dir,
        ClassifierHandler(_settings(config_only_dir)),
    )
    assert hooks.module_file == code / "custom.py"
    assert hooks.user_hooks == ["predict_fn"]


def test_import_error_names_the_file(config_only_dir: Path, tmp_path: Path) -> None:
    model_dir = _example("without_context", config_only_dir, tmp_path)
    (model_dir / "code" / "inference.py").write_text("import module_that_does_not_exist\n")
    with pytest.raises(ModelLoadError, match="importing .*inference.py failed: ModuleNotFoundError"):
        _handler(model_dir)


def test_sibling_modules_import(config_only_dir: Path, tmp_path: Path) -> None:
    model_dir = _example("without_context", config_only_dir, tmp_path)
    (model_dir / "code" / "helpers_for_test_sibling.py").write_text("VALUE = 42\n")
    (model_dir / "code" / "inference.py").write_text(
        "from helpers_for_test_sibling import VALUE\n\ndef predict_fn(data, model):\n    return [VALUE]\n"
    )
    assert _handler(model_dir).hooks.user_hooks == ["predict_fn"]


def test_without_context_gets_str_for_csv_and_json(config_only_dir: Path, tmp_path: Path) -> None:
    handler = _handler(_example("without_context", config_only_dir, tmp_path))
    handler.load()
    assert handler.model == ["billing", "fraud", "service"]
    result = handler.invoke(b"my card had fraud\nhello\n", "text/csv; charset=utf-8", "text/csv", {})
    assert (result.body, result.content_type) == (b"fraud\nbilling\n", "text/csv")
    result = handler.invoke(b'{"inputs": ["service please"]}', "application/json", None, {})
    assert (result.body, result.content_type) == (b'["service"]', "application/json")


def test_context_reaches_hooks_with_request_headers(tiny_bert_dir: Path, tmp_path: Path) -> None:
    handler = _handler(_example("with_context", tiny_bert_dir, tmp_path))
    handler.load()
    headers = Headers({"X-Amzn-SageMaker-Custom-Attributes": "trace=7", "Content-Type": "application/json"})
    result = handler.invoke(b'{"inputs": ["a", "b c"]}', "application/json", "application/json", headers)
    body = json.loads(result.body)
    assert body["attributes"] == "trace=7"
    assert [p["label"] for p in body["predictions"]] == [p["label"] for p in body["predictions"][:2]]
    assert len(body["predictions"]) == 2


def test_transform_fn_tuple_sets_the_content_type(config_only_dir: Path, tmp_path: Path) -> None:
    handler = _handler(_example("transform_fn", config_only_dir, tmp_path))
    handler.load()
    result = handler.invoke(b'{"text": "fraud!"}\n{"text": "hi"}\n', "application/jsonlines", "*/*", {})
    assert result.content_type == "application/jsonlines"
    lines = [json.loads(line) for line in result.body.decode().splitlines()]
    assert lines == [
        {"label": "fraud", "accept": "application/json"},
        {"label": "billing", "accept": "application/json"},
    ]


def test_predict_fn_errors_become_short_model_errors(config_only_dir: Path, tmp_path: Path) -> None:
    handler = _handler(_example("raises", config_only_dir, tmp_path))
    handler.load()
    with pytest.raises(ModelError) as info:
        handler.invoke(b'["x"]', "application/json", None, {})
    assert str(info.value) == "predict_fn raised ValueError: the model exploded on purpose"
    assert isinstance(info.value.__cause__, ValueError)


def test_default_predict_fn_needs_the_default_model(config_only_dir: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    (model_dir / "code").mkdir(parents=True)
    (model_dir / "code" / "inference.py").write_text(
        "def model_fn(model_dir):\n    return 'not a classifier'\n"
    )
    handler = _handler(model_dir)
    with pytest.raises(ModelLoadError, match="model_fn returned a str; define predict_fn"):
        handler.load()


def test_model_fn_failure_is_a_load_error(config_only_dir: Path, tmp_path: Path) -> None:
    handler = _handler(_example("broken_model_fn", config_only_dir, tmp_path))
    with pytest.raises(ModelLoadError, match="RuntimeError: weights are corrupt"):
        handler.load()


class SageMakerStyleError(Exception):
    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


def test_hook_error_mapping() -> None:
    ours = BadInput("bad")
    assert hook_error("input_fn", ours) is ours
    assert hook_error("input_fn", SageMakerStyleError(400, "no")).status == 400
    error = hook_error("predict_fn", RuntimeError("x" * 1000))
    assert error.status == 500 and len(str(error)) < 350


def test_context_offers_the_mms_names() -> None:
    context = Context("model", "/opt/ml/model", gpu_id=None).for_request({"Accept": "text/csv"}, "req-1")
    assert context.system_properties["model_dir"] == "/opt/ml/model"
    assert context.system_properties["gpu_id"] is None
    assert context.model_name == "model"
    assert context.get_request_header(0, "accept") == "text/csv"
    assert context.request_processor[0].get_request_properties().get("ACCEPT") == "text/csv"
    assert context.get_request_id() == "req-1"
    context.set_response_content_type(0, "text/plain")
    context.set_response_status(201, "Created")
    context.metrics.add_time("anything", 1.0)
    assert context.get_response_content_type(0) == "text/plain"
    assert context.get_response_status(0) == (201, "Created")


def test_examples_are_listed() -> None:
    assert {"with_context", "without_context", "transform_fn", "mixed", "raises", "slow_load"} <= set(
        EXAMPLES
    )
