"""The handler contract: finding the user's ``inference.py``, binding its hooks once, and running one invocation.

SageMaker semantics (inference toolkit ``Transformer``) with the improvements of docs/serving.md:

* The module is ``<code dir>/<SAGEMAKER_PROGRAM or inference.py>``; the code dir is ``SAGEMAKER_SUBMIT_DIRECTORY``
  when it names a local folder, else ``<model dir>/code`` (``code_paths``: paths are resolved, and code must stay
  inside the model folder). It goes to the front of ``sys.path`` so sibling imports work. A program that was named
  explicitly but does not exist is a start-up error; a missing default ``inference.py`` means "use the default
  handler". The log says which file was loaded. A ``requirements.txt`` in the code dir is pip-installed first
  (``serving.requirements``), unless turned off.
* Hooks: ``model_fn``, ``input_fn``, ``predict_fn``, ``output_fn`` or ``transform_fn``, plus ``pre_model_fn`` and
  ``model_warmup_fn``; each may take one trailing ``context`` parameter. The arity is checked at start-up, and
  ``transform_fn`` together with input/predict/output_fn is refused there too. Missing hooks come from ``defaults``.
* ``input_fn`` receives ``str`` for ``application/json`` and ``text/csv`` (decoded with the charset parameter,
  UTF-8 by default) and ``bytes`` for every other type, plus the media type lower-cased without parameters.
* ``output_fn``/``transform_fn`` may return ``(body, content_type)``; a plain return uses the content type the hook
  set on ``context``, else the (negotiated) Accept type.
* User ``predict_fn``/``transform_fn`` run one at a time (like the single worker SageMaker code was written for);
  decoding and encoding of concurrent requests still overlap.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from batchlane import codecs, content_types
from batchlane import settings as settings_mod
from batchlane.errors import BadInput, BatchlaneError, ModelError, ModelLoadError
from batchlane.serving.code_paths import code_dir, code_file
from batchlane.serving.context import Context
from batchlane.serving.requirements import REQUIREMENTS_FILE, activate
from batchlane.settings import ServeSettings

logger = logging.getLogger(__name__)

# The positional arguments each hook receives, before the optional trailing ``context``.
HOOK_ARGS: dict[str, tuple[str, ...]] = {
    "model_fn": ("model_dir",),
    "input_fn": ("input_data", "content_type"),
    "predict_fn": ("data", "model"),
    "output_fn": ("prediction", "accept"),
    "transform_fn": ("model", "input_data", "content_type", "accept"),
    "pre_model_fn": ("model_dir",),
    "model_warmup_fn": ("model_dir", "model"),
}
# Bodies of these types reach input_fn as str, as in the SageMaker inference toolkit.
UTF8_TYPES = frozenset({content_types.JSON, content_types.CSV})


class DefaultHooks(Protocol):
    """What the default handler (``classifier.ClassifierHandler``) provides for hooks the user module lacks."""

    def model_fn(self, model_dir: str) -> Any: ...
    def input_fn(self, input_data: bytes | str, content_type: str) -> Any: ...
    def predict_fn(self, data: Any, model: Any) -> Any: ...
    def output_fn(self, prediction: Any, accept: str) -> tuple[bytes, str]: ...
    def model_warmup_fn(self, model_dir: str, model: Any) -> None: ...
    def check_model(self, model: Any) -> None: ...


@dataclass(frozen=True)
class Hook:
    """One bound hook: the function, whether it takes ``context``, and whether it came from the user module."""

    name: str
    func: Callable[..., Any]
    takes_context: bool = False
    user: bool = False

    def __call__(self, *args: Any, context: Context) -> Any:
        return self.func(*args, context) if self.takes_context else self.func(*args)


def bind(name: str, func: Callable[..., Any], *, user: bool, source: str = "") -> Hook:
    """Check ``func``'s signature against the hook contract; ``ModelLoadError`` says how to fix a mismatch."""
    expected = HOOK_ARGS[name]
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature: call them plainly
        return Hook(name, func, False, user)
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required_kw = [p.name for p in params if p.kind == p.KEYWORD_ONLY and p.default is p.empty]
    var_positional = any(p.kind == p.VAR_POSITIONAL for p in params)
    takes_context = None
    if not required_kw:
        if len(positional) == len(expected) + 1:
            takes_context = True
        elif len(positional) == len(expected) or (var_positional and len(positional) < len(expected)):
            takes_context = False
    if takes_context is None:
        wanted = ", ".join(expected)
        where = f" in {source}" if source else ""
        raise ModelLoadError(
            f"{name}{where} takes ({', '.join(p.name for p in params)}); SageMaker calls it as {name}({wanted}) "
            f"or {name}({wanted}, context): change its parameters to one of these"
        )
    return Hook(name, func, takes_context, user)


@dataclass(frozen=True)
class Hooks:
    """The hooks in force, resolved once at start-up."""

    model_fn: Hook
    input_fn: Hook
    predict_fn: Hook
    output_fn: Hook
    transform_fn: Hook | None = None
    pre_model_fn: Hook | None = None
    model_warmup_fn: Hook | None = None
    module_file: Path | None = None

    @property
    def user_hooks(self) -> list[str]:
        """Names of the hooks that came from the user module."""
        hooks = [getattr(self, name) for name in HOOK_ARGS]
        return [hook.name for hook in hooks if hook is not None and hook.user]


def _program_named_explicitly(settings: ServeSettings) -> bool:
    return settings.program != "inference.py" or bool(settings.extra_env.get(settings_mod.SAGEMAKER_PROGRAM))


def _install_requirements(settings: ServeSettings, directory: Path, model_dir: Path) -> None:
    """Make ``code/requirements.txt``'s packages importable, as SageMaker does before loading the module.

    Installed even without a user module: the default handler may need them too (a tokenizer's sentencepiece).
    A file that resolves outside the model (a symlink) is refused before pip reads it.
    """
    file = directory / REQUIREMENTS_FILE
    if not file.is_file():
        return
    file = code_file(file, directory, model_dir, f"code/{REQUIREMENTS_FILE}")
    if not settings.install_requirements:
        logger.info("%s not installed (--no-install-requirements)", file)
        return
    activate(file, settings.requirements_cache)


def load_user_module(settings: ServeSettings, model_dir: Path) -> Any | None:
    """Import the user module, or return None when there is none (then defaults are used)."""
    directory = code_dir(settings, model_dir)
    _install_requirements(settings, directory, model_dir)
    program = settings.program if settings.program.endswith(".py") else f"{settings.program}.py"
    path = directory / program
    if not path.is_file():
        if _program_named_explicitly(settings):
            raise ModelLoadError(
                f"SAGEMAKER_PROGRAM={settings.program} but {path} does not exist; "
                "package the file under code/ in the model (batchlane package --code) or fix the variable"
            )
        others = sorted(p.name for p in directory.glob("*.py")) if directory.is_dir() else []
        if others:
            logger.warning(
                "%s has %s but no inference.py; set SAGEMAKER_PROGRAM to use one of them", directory, others
            )
        logger.info("no user module at %s: using the default sequence-classification handler", path)
        return None
    # A link to a file outside the model is refused here, before anything is imported.
    code_file(path, directory, model_dir, "the user module")
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
    name = Path(program).stem
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"cannot import {path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        logger.exception("importing the user module %s failed", path)
        raise ModelLoadError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    logger.info("loaded user module %s", path)
    return module


def resolve_hooks(settings: ServeSettings, model_dir: Path, defaults: DefaultHooks) -> Hooks:
    """Bind the user module's hooks over ``defaults``; contract violations raise ``ModelLoadError`` now."""
    module = load_user_module(settings, model_dir)
    source = str(getattr(module, "__file__", "")) if module is not None else ""
    found = {name: getattr(module, name) for name in HOOK_ARGS if callable(getattr(module, name, None))}
    if "transform_fn" in found:
        mixed = sorted({"input_fn", "predict_fn", "output_fn"} & found.keys())
        if mixed:
            raise ModelLoadError(
                f"{source} defines transform_fn and {', '.join(mixed)}: transform_fn replaces input_fn, predict_fn "
                "and output_fn, so define either transform_fn alone or the three separate hooks"
            )

    def pick(name: str) -> Hook:
        if name in found:
            return bind(name, found[name], user=True, source=source)
        return bind(name, getattr(defaults, name), user=False)

    hooks = Hooks(
        model_fn=pick("model_fn"),
        input_fn=pick("input_fn"),
        predict_fn=pick("predict_fn"),
        output_fn=pick("output_fn"),
        transform_fn=pick("transform_fn") if "transform_fn" in found else None,
        pre_model_fn=pick("pre_model_fn") if "pre_model_fn" in found else None,
        model_warmup_fn=pick("model_warmup_fn"),
        module_file=Path(source) if source else None,
    )
    if module is not None:
        logger.info("user hooks: %s (defaults for the rest)", ", ".join(hooks.user_hooks) or "none")
    return hooks


@dataclass
class Result:
    """One invocation's response."""

    body: bytes
    content_type: str
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


def _short(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def hook_error(hook: str, exc: Exception) -> BatchlaneError:
    """Map an exception raised by a hook to our hierarchy (the traceback stays on ``__cause__`` for the log).

    Our own errors keep their status; errors carrying an HTTP ``status_code``/``error_code`` (the SageMaker and MMS
    toolkits' exception classes) keep theirs; a ``RecursionError`` while decoding (``input_fn``, ``transform_fn``)
    is the input's fault, a 400 (deeply nested JSON); anything else is a 500 ``ModelError`` naming the hook.
    """
    if isinstance(exc, BatchlaneError):
        return exc
    if isinstance(exc, RecursionError) and hook in ("input_fn", "transform_fn"):
        return BadInput(f"{hook} raised {_short(exc)}: the input is nested too deeply to decode")
    error = ModelError(f"{hook} raised {_short(exc)}")
    for attribute in ("status_code", "error_code"):
        code = getattr(exc, attribute, None)
        if isinstance(code, int) and 400 <= code <= 599:
            error.status = code
            break
    return error


def _as_bytes(body: Any) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    if body is None:
        return b""
    # What MMS does with a dict/list returned by a handler: JSON.
    return codecs.encode_json(body)


class Handler:
    """Runs the hooks: ``load()`` once (in the background), then ``invoke()`` per request, from any thread."""

    def __init__(
        self, hooks: Hooks, settings: ServeSettings, model_dir: Path, defaults: DefaultHooks
    ) -> None:
        self.hooks = hooks
        self.settings = settings
        self.model_dir = model_dir
        self.defaults = defaults
        self.model: Any = None
        self.context = Context(model_dir.name or "model", str(model_dir), gpu_id=None)
        self._model_lock = threading.Lock()

    def _call(self, hook: Hook, *args: Any, context: Context) -> Any:
        try:
            return hook(*args, context=context)
        except Exception as exc:
            error = hook_error(hook.name, exc)
            if error is exc:
                raise
            raise error from exc

    def load(self) -> None:
        """``pre_model_fn`` → ``model_fn`` → ``model_warmup_fn``; a failure is a ``ModelLoadError`` naming the hook."""
        self.context.system_properties["gpu_id"] = _gpu_id(self.settings.device)
        model_dir = str(self.model_dir)

        def run(hook: Hook, *args: Any) -> Any:
            try:
                return hook(*args, context=self.context)
            except ModelLoadError:
                raise
            except Exception as exc:
                raise ModelLoadError(f"{hook.name} raised {_short(exc)}") from exc

        if self.hooks.pre_model_fn is not None:
            run(self.hooks.pre_model_fn, model_dir)
        model = run(self.hooks.model_fn, model_dir)
        if not self.hooks.predict_fn.user and self.hooks.transform_fn is None:
            self.defaults.check_model(model)
        if self.hooks.model_warmup_fn is not None:
            run(self.hooks.model_warmup_fn, model_dir, model)
        self.model = model

    def invoke(
        self, body: bytes, content_type: str | None, accept: str | None, headers: Mapping[str, str]
    ) -> Result:
        """One ``/invocations`` request: decode, predict, encode. Raises ``BatchlaneError`` subclasses."""
        hooks, context = self.hooks, self.context.for_request(headers)
        default = self.settings.default_accept
        # SageMaker hands hooks the raw Accept, replacing a missing or bare */* with the default.
        hook_accept = accept.strip() if accept and accept.strip() not in ("", content_types.ANY) else default
        negotiated: str | None = None
        if hooks.transform_fn is None and not hooks.output_fn.user:
            negotiated = codecs.negotiate(accept, default)  # 406 before any work is done
        media = content_types.normalize(content_type) if content_type else None
        raw_media = content_type.split(";", 1)[0].strip().lower() if content_type else None
        input_data: bytes | str = body
        if media in UTF8_TYPES:
            input_data = codecs.body_text(body, content_type)

        if hooks.transform_fn is not None:
            with self._model_lock:
                result = self._call(
                    hooks.transform_fn, self.model, input_data, raw_media, hook_accept, context=context
                )
        else:
            # Our own input_fn gets the full header, so a charset on text/plain or JSON Lines is honoured.
            data = self._call(
                hooks.input_fn,
                input_data,
                raw_media if hooks.input_fn.user else content_type,
                context=context,
            )
            if hooks.predict_fn.user:
                with self._model_lock:
                    prediction = self._call(hooks.predict_fn, data, self.model, context=context)
            else:
                prediction = self._call(hooks.predict_fn, data, self.model, context=context)
            result = self._call(hooks.output_fn, prediction, negotiated or hook_accept, context=context)
        return self._response(result, negotiated or hook_accept, context)

    def _response(self, result: Any, accept: str, context: Context) -> Result:
        processor = context.request_processor[0]
        headers = dict(processor.get_response_header())
        set_type = headers.pop("content-type", None)
        if isinstance(result, tuple) and len(result) == 2:
            body, response_type = result
        else:
            body, response_type = result, set_type
        if not response_type:
            response_type = content_types.parse_accept(accept, self.settings.default_accept)[0]
            if "*" in response_type:
                response_type = self.settings.default_accept
        return Result(_as_bytes(body), str(response_type), processor.get_response_status_code(), headers)


def _gpu_id(device: str | None) -> int | None:
    """The CUDA device index the model will use, or None on CPU (``context.system_properties["gpu_id"]``)."""
    device = None if device in (None, "", "auto") else device
    if device and not device.startswith("cuda"):
        return None
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return int(device.split(":", 1)[1]) if device and ":" in device else 0
