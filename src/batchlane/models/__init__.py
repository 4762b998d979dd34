"""Registered models: what a model is (``spec``), how CreateModel requests become one (``sagemaker``) and the
registry over the job store (``registry``). Everything a caller needs is importable from here."""

from batchlane.models.registry import ModelRegistry, RegisteredModel
from batchlane.models.sagemaker import from_sagemaker
from batchlane.models.spec import (
    ARCHIVE_SUFFIXES,
    ENV_KEY_PATTERN,
    EXTRAS_KEY,
    MAX_ENV_ENTRIES,
    MAX_ENV_VALUE,
    MODEL_NAME_PATTERN,
    ModelSpec,
    check_environment,
    check_model_data_url,
    effective_environment,
)

__all__ = [
    "ARCHIVE_SUFFIXES",
    "ENV_KEY_PATTERN",
    "EXTRAS_KEY",
    "MAX_ENV_ENTRIES",
    "MAX_ENV_VALUE",
    "MODEL_NAME_PATTERN",
    "ModelRegistry",
    "ModelSpec",
    "RegisteredModel",
    "check_environment",
    "check_model_data_url",
    "effective_environment",
    "from_sagemaker",
]
