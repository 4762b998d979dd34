"""Where the user's code is: the code folder, the module, ``requirements.txt``, each resolved and kept in bounds.

* The code folder is ``SAGEMAKER_SUBMIT_DIRECTORY`` when it names a local folder (``file://`` allowed), else
  ``<model dir>/code``. A path under SageMaker's ``/opt/ml/model`` means the same path in the model folder, so
  ``SAGEMAKER_SUBMIT_DIRECTORY=/opt/ml/model/code`` (what the SageMaker SDK sets for repacked models) works outside
  a container too. A remote URI (``s3://.../sourcedir.tar.gz``) is not fetched: ``<model dir>/code`` is used.
* Every path is resolved (``os.path.realpath``: symlinks and ``..``) before it is used. The code folder, the module
  and ``requirements.txt`` must stay inside the model folder, so a model whose ``code/inference.py`` is a symlink to
  a file elsewhere is refused (``ModelLoadError``) before anything is imported or installed.
  The one exception is a ``SAGEMAKER_SUBMIT_DIRECTORY`` naming a local folder outside the model: ``batchlane serve``
  honours it when its operator sets it (SageMaker's local mode mounts a ``file://`` source folder that way), and then
  the module must stay inside that folder; a model's or job's ``Environment`` cannot set one (``serving.environment``
  refuses it at create time and before the model process starts).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from batchlane.errors import ModelLoadError
from batchlane.serving.environment import SAGEMAKER_MODEL_DIR
from batchlane.settings import ServeSettings


def inside(path: Path, root: Path, what: str) -> Path:
    """``path`` resolved; ``ModelLoadError`` naming ``what`` when it resolves outside ``root`` (also resolved).

    Call it on every file taken from the model before using it (the module, ``requirements.txt``)."""
    real, real_root = Path(os.path.realpath(path)), Path(os.path.realpath(root))
    if real != real_root and real_root not in real.parents:
        shown = str(path) if real == path else f"{path} (resolves to {real})"
        raise ModelLoadError(
            f"{what} {shown} is outside {real_root}: batchlane loads user code only from inside the model folder; "
            "copy the file into the model instead of linking to it"
        )
    return real


def code_dir(settings: ServeSettings, model_dir: Path) -> Path:
    """The code folder (module docstring), resolved; ``ModelLoadError`` when it leaves the model folder."""
    submit = (settings.submit_directory or "").removeprefix("file://")
    if submit and "://" not in submit:
        parts, sagemaker_model = PurePosixPath(submit).parts, PurePosixPath(SAGEMAKER_MODEL_DIR).parts
        if parts[: len(sagemaker_model)] == sagemaker_model:
            mapped = model_dir.joinpath(*parts[len(sagemaker_model) :])
            return inside(mapped, model_dir, "SAGEMAKER_SUBMIT_DIRECTORY")
        if Path(submit).is_dir():
            return Path(os.path.realpath(submit))  # the operator's own choice (module docstring)
    return inside(model_dir / "code", model_dir, "the code folder")


def code_file(path: Path, directory: Path, model_dir: Path, what: str) -> Path:
    """``path`` (a file in the code folder ``directory``, as ``code_dir`` returned it) resolved; ``ModelLoadError``
    when it leaves the model folder, or leaves ``directory`` when that is the operator's folder outside the model.

    Call it before using any file from the code folder: the module, ``requirements.txt``."""
    real_model = Path(os.path.realpath(model_dir))
    root = real_model if directory == real_model or real_model in directory.parents else directory
    return inside(path, root, what)
