"""The model process's environment: what a model's or job's ``Environment`` may set, and what else the process sees.

A model server started for a job (``batchlane serve``, or a local model's own serve command) runs user code, so its
environment is a boundary (docs/control-plane.md, "Threat model"). Both halves of the rule live here, so the
create-time validators (``models``, ``transform.spec``) and the runner (``transform.container``) share one list:

* ``refusal(key, value)`` / ``check_environment(env, field)``: at create time, and again before a model process
  starts, an ``Environment`` may not set a variable that changes which code, libraries or executables load:
  ``LD_*``, ``DYLD_*``, ``PYTHON*`` (except the harmless ``SAFE_PYTHON_VARIABLES``), ``PATH``, ``GCONV_PATH``,
  batchlane's own folders (``BATCHLANE_HOME``, ``BATCHLANE_ONNX_CACHE``, ``BATCHLANE_OPENVINO_CACHE``), a ``SAGEMAKER_PROGRAM`` that is a path
  rather than a file name, or a ``SAGEMAKER_SUBMIT_DIRECTORY`` that names a local folder outside the model.
  Decision: refused always, not only with ``--allow-path``; SageMaker's containers would not honour these either
  (the image decides its own ``PATH`` and libraries), and a refusal names the field instead of failing later.
* ``model_process_environment(parent, requested)``: the process gets a clean environment, never the parent's
  whole one. It is the ``RUNTIME_VARIABLES`` (and ``RUNTIME_PREFIXES``) of the parent, then the requested
  variables (SageMaker's ``SAGEMAKER_*`` batch settings, the model's and the job's ``Environment``) over them, then
  ``PYTHONPATH`` set to batchlane's own import folder when the parent found batchlane through ``PYTHONPATH`` (a
  source checkout), so the runner can still start ``batchlane serve``. Nothing else is inherited: in particular
  not the control plane's key (``BATCHLANE_SECRET_ACCESS_KEY``), nor the AWS credentials batchlane itself uses
  (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_PROFILE``...). A model that needs
  AWS access gets its own credentials through its ``Environment``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from batchlane import settings
from batchlane.errors import ValidationError

SAGEMAKER_MODEL_DIR = "/opt/ml/model"
"""Where SageMaker mounts the model in its container; batchlane reads paths under it as paths in the model folder."""

RUNTIME_VARIABLES = frozenset(
    {
        # Locale, time, temp files, identity: what any process expects to find.
        "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP", "TERM", "NO_COLOR",
        # Which executables and shared libraries load: the operator's, never a request's (see ``refusal``).
        "PATH", "LD_LIBRARY_PATH",
        # Harmless interpreter switches the operator may have set.
        "PYTHONUNBUFFERED", "PYTHONHASHSEED", "PYTHONIOENCODING", "PYTHONDONTWRITEBYTECODE",
        # Thread pools and offline model hubs (tests and CI set these; so do careful operators).
        "OPENBLAS_NUM_THREADS", "TOKENIZERS_PARALLELISM",
        "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "HF_HUB_CACHE", "TORCH_HOME", "XDG_CACHE_HOME",
        "PYTORCH_CUDA_ALLOC_CONF",
        # A serve command that runs a container needs to reach the container runtime.
        "XDG_RUNTIME_DIR", "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CONTEXT", "CONTAINER_HOST",
        # batchlane serve's own settings (settings.ServeSettings), as the operator set them for every model.
        settings.BATCHLANE_HOME, settings.BATCHLANE_MAX_LENGTH, settings.BATCHLANE_TOKEN_BUDGET,
        settings.BATCHLANE_DEVICE, settings.BATCHLANE_PRECISION, settings.BATCHLANE_TOP_K,
        settings.BATCHLANE_THREADS, settings.BATCHLANE_MAX_RESPONSE_MB, settings.BATCHLANE_MAX_BATCH_SIZE,
        settings.BATCHLANE_RUNTIME, settings.BATCHLANE_QUANTIZE, settings.BATCHLANE_ONNX_CACHE,
        settings.BATCHLANE_OPENVINO_CACHE,
        settings.BATCHLANE_MAX_BATCH_DELAY_MS, settings.BATCHLANE_INSTALL_REQUIREMENTS,
        settings.BATCHLANE_MAX_MODEL_ARCHIVE_MB,
    }
)  # fmt: skip
"""Variables a model process inherits from the process that starts it (with ``RUNTIME_PREFIXES``)."""

RUNTIME_PREFIXES = ("LC_", "OMP_", "MKL_", "CUDA_", "NVIDIA_")
"""Families of variables a model process inherits: locale categories, thread pools, GPU selection."""

SAFE_PYTHON_VARIABLES = frozenset(
    {"PYTHONUNBUFFERED", "PYTHONHASHSEED", "PYTHONIOENCODING", "PYTHONDONTWRITEBYTECODE"}
)
"""The ``PYTHON*`` variables an ``Environment`` may set: they change output buffering, hashing and encodings, not
which code is imported."""

LOADER_PREFIXES = ("LD_", "DYLD_", "PYTHON")
"""An ``Environment`` may not set variables starting with these (except ``SAFE_PYTHON_VARIABLES``): the dynamic
loader's ``LD_PRELOAD``/``LD_LIBRARY_PATH``/``LD_AUDIT``, macOS's ``DYLD_*``, and Python's ``PYTHONPATH``,
``PYTHONHOME``, ``PYTHONSTARTUP``, ``PYTHONBREAKPOINT``, ``PYTHONWARNINGS`` (which imports warning categories)."""

REFUSED_VARIABLES = frozenset(
    {
        "PATH",
        "GCONV_PATH",
        settings.BATCHLANE_HOME,
        settings.BATCHLANE_ONNX_CACHE,
        settings.BATCHLANE_OPENVINO_CACHE,
    }
)
"""Single names an ``Environment`` may not set: the executable search path, glibc's charset-module path, and
batchlane's own folders (the ONNX and OpenVINO graph caches are loaded by the model server)."""


@dataclass(frozen=True)
class Refusal:
    """Why an ``Environment`` entry is refused: ``value`` is what to show (the key, or the offending value)."""

    key: str
    value: str
    constraint: str


def _submit_directory_refusal(value: str) -> str | None:
    """``SAGEMAKER_SUBMIT_DIRECTORY`` may be a remote URI (SageMaker's ``s3://.../sourcedir.tar.gz``, which batchlane
    does not fetch: it serves ``code/`` of the model) or a folder under ``/opt/ml/model``; nothing else locally."""
    text = value.strip()
    if not text:
        return None
    scheme = urlsplit(text).scheme.lower() if "://" in text else ""
    if scheme in ("s3", "https", "http"):
        return None
    path = text.removeprefix("file://") if scheme == "file" else text
    parts, model = PurePosixPath(path).parts, PurePosixPath(SAGEMAKER_MODEL_DIR).parts
    if parts[: len(model)] == model and ".." not in parts and "\x00" not in path:
        return None
    return (
        f"SAGEMAKER_SUBMIT_DIRECTORY must be an s3:// URI or a folder under {SAGEMAKER_MODEL_DIR} (the model "
        "folder); user code is loaded only from inside the model: package it under code/ (batchlane package --code)"
    )


def refusal(key: str, value: str) -> Refusal | None:
    """Why ``key=value`` may not be in a model's or job's ``Environment``, or None when it may."""
    if key in REFUSED_VARIABLES or (key.startswith(LOADER_PREFIXES) and key not in SAFE_PYTHON_VARIABLES):
        return Refusal(
            key,
            key,
            f"Environment must not set {key}: it changes which code, libraries or executables the model server "
            f"loads (refused: {', '.join(p + '*' for p in LOADER_PREFIXES)}, {', '.join(sorted(REFUSED_VARIABLES))}; "
            f"allowed PYTHON* variables: {', '.join(sorted(SAFE_PYTHON_VARIABLES))})",
        )
    if key == settings.SAGEMAKER_SUBMIT_DIRECTORY and isinstance(value, str):
        reason = _submit_directory_refusal(value)
        if reason:
            return Refusal(key, value, reason)
    if key == settings.SAGEMAKER_PROGRAM and isinstance(value, str):
        name = value.strip()
        if "/" in name or "\\" in name or "\x00" in name or name in (".", ".."):
            return Refusal(
                key,
                value,
                "SAGEMAKER_PROGRAM must be a file name in the model's code folder (for example inference.py), "
                "not a path",
            )
    return None


def find_refusal(env: Mapping[str, str]) -> Refusal | None:
    """The first refused entry of ``env`` (in its order), or None."""
    for key, value in env.items():
        found = refusal(key, value)
        if found is not None:
            return found
    return None


def check_environment(env: Mapping[str, str], field: str = "Environment") -> None:
    """``ValidationError`` in AWS's wording naming ``<field>.<KEY>`` when ``env`` holds a refused entry."""
    found = find_refusal(env)
    if found is None:
        return
    path = f"{field}.{found.key}"
    shown = found.value if len(found.value) <= 200 else found.value[:200] + "..."
    raise ValidationError(
        f"1 validation error detected: Value '{shown}' at '{path}' failed to satisfy constraint: {found.constraint}",
        field=path,
    )


def _batchlane_import_path(parent: Mapping[str, str]) -> str | None:
    """The folder batchlane is imported from, when the parent found it through ``PYTHONPATH`` (a source checkout:
    the child would not find it otherwise); None when batchlane is installed where Python looks by itself."""
    import batchlane

    root = Path(os.path.realpath(Path(batchlane.__file__).parent.parent))
    entries = [entry for entry in parent.get("PYTHONPATH", "").split(os.pathsep) if entry]
    if any(Path(os.path.realpath(entry)) == root for entry in entries):
        return str(root)
    return None


def model_process_environment(parent: Mapping[str, str], requested: Mapping[str, str]) -> dict[str, str]:
    """The whole environment of a model process (module docstring): inherited runtime variables of ``parent``,
    then ``requested`` over them. ``ValidationError`` if ``requested`` holds a refused entry."""
    check_environment(requested)
    env = {
        key: value
        for key, value in parent.items()
        if key in RUNTIME_VARIABLES or key.startswith(RUNTIME_PREFIXES)
    }
    env.update(requested)
    own = _batchlane_import_path(parent)
    if own is not None:
        env["PYTHONPATH"] = own
    return env
