"""AWS names and limits, once: job, model and instance-type names, the ``Environment`` limits, the API's enum
values (SplitType, BatchStrategy, AssembleWith, CompressionType, JoinSource) and the canonical job-name key.

Every front door (CLI, control plane, queue message, Lambda) checks names with these patterns, so a name is
accepted or refused the same way wherever it arrives (docs/names-and-uris.md).

Decisions:

* **Instance types**: any ``ml.<family>.<size>`` name (AWS's enum of ~116 values changes too often to pin), plus
  ``local`` and ``local_gpu``, the SageMaker SDK's local-mode names, for on-prem runs. Locally the value only labels
  the job. The queue message takes the same set as CreateTransformJob.
* **Job names** are kept as given for display (DescribeTransformJob, ListTransformJobs), as AWS does, but AWS treats
  them case-insensitively for uniqueness. ``canonical_job_name`` (lower case) is the one key for uniqueness, ARNs,
  log files, folders and every other path derived from a name, so ``Job-1`` and ``job-1`` are one job.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Literal, get_args

#: SageMaker's TransformJobName pattern (1-63 letters, digits and hyphens, alphanumeric at both ends).
JOB_NAME_PATTERN = r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"
JOB_NAME_RE = re.compile(JOB_NAME_PATTERN)
#: SageMaker's ModelName pattern; names are also at most ``MAX_MODEL_NAME_CHARS`` long.
MODEL_NAME_PATTERN = r"[a-zA-Z0-9]([\-a-zA-Z0-9]*[a-zA-Z0-9])?"
MODEL_NAME_RE = re.compile(MODEL_NAME_PATTERN)
MAX_MODEL_NAME_CHARS = 63
#: ``ml.<family>.<size>`` or the SDK's local-mode names (module docstring).
INSTANCE_TYPE_PATTERN = r"ml\.[a-z0-9-]+\.[a-z0-9-]+|local|local_gpu"
INSTANCE_TYPE_RE = re.compile(INSTANCE_TYPE_PATTERN)
MAX_INSTANCE_TYPE_CHARS = 64
#: SageMaker's Environment map: at most 16 entries, keys matching this pattern, values at most 10240 characters.
ENV_KEY_PATTERN = r"[a-zA-Z_][a-zA-Z0-9_]{0,1023}"
ENV_KEY_RE = re.compile(ENV_KEY_PATTERN)
MAX_ENV_ENTRIES = 16
MAX_ENV_VALUE_CHARS = 10240

JOB_NAME_RULE = "1-63 letters, digits and hyphens, starting and ending with a letter or digit"
MODEL_NAME_RULE = "1-63 letters, digits and hyphens, starting and ending with a letter or digit"
INSTANCE_TYPE_RULE = "'local', 'local_gpu' or an ml.<family>.<size> instance type such as ml.m5.xlarge"


def job_name_problem(name: object) -> str | None:
    """Why ``name`` is not a valid TransformJobName (one line), or None."""
    if not isinstance(name, str) or not JOB_NAME_RE.fullmatch(name):
        return f"must match SageMaker's job name pattern {JOB_NAME_PATTERN} ({JOB_NAME_RULE}), got {name!r}"
    return None


def model_name_problem(name: object) -> str | None:
    """Why ``name`` is not a valid ModelName (one line), or None."""
    if not isinstance(name, str) or len(name) > MAX_MODEL_NAME_CHARS or not MODEL_NAME_RE.fullmatch(name):
        return f"must match SageMaker's model name pattern {MODEL_NAME_PATTERN} ({MODEL_NAME_RULE}), got {name!r}"
    return None


def instance_type_problem(value: object) -> str | None:
    """Why ``value`` is not an accepted instance type (one line), or None."""
    if (
        not isinstance(value, str)
        or len(value) > MAX_INSTANCE_TYPE_CHARS
        or not INSTANCE_TYPE_RE.fullmatch(value)
    ):
        return f"must match {INSTANCE_TYPE_PATTERN} ({INSTANCE_TYPE_RULE}), got {value!r}"
    return None


def canonical_job_name(name: str) -> str:
    """The key of a job name for uniqueness, ARNs and every path (module docstring): the name in lower case."""
    return name.lower()


class SplitType(StrEnum):
    """TransformInput.SplitType."""

    NONE = "None"
    LINE = "Line"
    RECORDIO = "RecordIO"
    TFRECORD = "TFRecord"


class BatchStrategy(StrEnum):
    """BatchStrategy (the API's spelling; the container variable spells it MULTI_RECORD / SINGLE_RECORD)."""

    MULTI_RECORD = "MultiRecord"
    SINGLE_RECORD = "SingleRecord"

    @property
    def variable(self) -> str:
        """The ``SAGEMAKER_BATCH_STRATEGY`` spelling: ``MULTI_RECORD`` or ``SINGLE_RECORD``."""
        return self.name


class AssembleWith(StrEnum):
    """TransformOutput.AssembleWith."""

    NONE = "None"
    LINE = "Line"


class CompressionType(StrEnum):
    """TransformInput.CompressionType."""

    NONE = "None"
    GZIP = "Gzip"


class JoinSource(StrEnum):
    """DataProcessing.JoinSource."""

    NONE = "None"
    INPUT = "Input"


# The same values as Literals, for pydantic request shapes whose errors list the enum value set as AWS does.
SplitTypeName = Literal["None", "Line", "RecordIO", "TFRecord"]
BatchStrategyName = Literal["MultiRecord", "SingleRecord"]
AssembleWithName = Literal["None", "Line"]
CompressionTypeName = Literal["None", "Gzip"]
JoinSourceName = Literal["Input", "None"]

SPLIT_TYPES: tuple[str, ...] = tuple(member.value for member in SplitType)
BATCH_STRATEGIES: tuple[str, ...] = tuple(member.value for member in BatchStrategy)
COMPRESSION_TYPES: tuple[str, ...] = tuple(member.value for member in CompressionType)

for _enum, _literal in (
    (SplitType, SplitTypeName),
    (BatchStrategy, BatchStrategyName),
    (AssembleWith, AssembleWithName),
    (CompressionType, CompressionTypeName),
    (JoinSource, JoinSourceName),
):
    assert {m.value for m in _enum} == set(get_args(_literal)), _enum  # one list, two spellings
