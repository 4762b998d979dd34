"""Every environment variable batchlane reads is named here, and read only when a settings object is built.

Nothing reads ``os.environ`` at import time; callers pass ``env`` (defaulting to ``os.environ``) so tests can build
settings from a plain dict.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# The defaults live in defaults.py; re-exported here because callers read them beside the variables they default.
from batchlane.defaults import DEFAULT_ACCEPT as DEFAULT_ACCEPT
from batchlane.defaults import DEFAULT_MAX_PAYLOAD_MB as DEFAULT_MAX_PAYLOAD_MB
from batchlane.defaults import DEFAULT_MODEL_DIR as DEFAULT_MODEL_DIR
from batchlane.defaults import DEFAULT_MODEL_NAME as DEFAULT_MODEL_NAME
from batchlane.defaults import DEFAULT_PORT as DEFAULT_PORT

# The SageMaker container contract (docs/serving.md).
SAGEMAKER_BIND_TO_PORT = "SAGEMAKER_BIND_TO_PORT"
SAGEMAKER_MAX_PAYLOAD_IN_MB = "SAGEMAKER_MAX_PAYLOAD_IN_MB"
SAGEMAKER_BATCH_STRATEGY = "SAGEMAKER_BATCH_STRATEGY"
SAGEMAKER_MAX_CONCURRENT_TRANSFORMS = "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS"
SAGEMAKER_BATCH = "SAGEMAKER_BATCH"
SAGEMAKER_PROGRAM = "SAGEMAKER_PROGRAM"
SAGEMAKER_SUBMIT_DIRECTORY = "SAGEMAKER_SUBMIT_DIRECTORY"
SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT = "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"
SAGEMAKER_MODEL_SERVER_TIMEOUT = "SAGEMAKER_MODEL_SERVER_TIMEOUT"
SAGEMAKER_MODEL_SERVER_WORKERS = "SAGEMAKER_MODEL_SERVER_WORKERS"
SAGEMAKER_CONTAINER_LOG_LEVEL = "SAGEMAKER_CONTAINER_LOG_LEVEL"
SAGEMAKER_BASE_DIR = "SAGEMAKER_BASE_DIR"
SM_MODEL_DIR = "SM_MODEL_DIR"

# batchlane's own knobs.
BATCHLANE_HOME = "BATCHLANE_HOME"
BATCHLANE_DB = "BATCHLANE_DB"
BATCHLANE_MAX_LENGTH = "BATCHLANE_MAX_LENGTH"
BATCHLANE_TOKEN_BUDGET = "BATCHLANE_TOKEN_BUDGET"
BATCHLANE_DEVICE = "BATCHLANE_DEVICE"
BATCHLANE_PRECISION = "BATCHLANE_PRECISION"
BATCHLANE_TOP_K = "BATCHLANE_TOP_K"
BATCHLANE_THREADS = "BATCHLANE_THREADS"
BATCHLANE_MAX_RESPONSE_MB = "BATCHLANE_MAX_RESPONSE_MB"
BATCHLANE_MAX_MODEL_ARCHIVE_MB = "BATCHLANE_MAX_MODEL_ARCHIVE_MB"  # most a model.tar.gz may extract to
# Training: the folder with the CFPB demo data (train.csv.gz, test.csv.gz) when not running from a checkout.
BATCHLANE_DEMO_DATA = "BATCHLANE_DEMO_DATA"
BATCHLANE_QUEUE = "BATCHLANE_QUEUE"  # default queue: a name (embedded), sqlite:///…, sqs://name or an SQS URL
BATCHLANE_HOST = "BATCHLANE_HOST"
BATCHLANE_MAX_BATCH_SIZE = "BATCHLANE_MAX_BATCH_SIZE"

# AWS clients (boto3 reads most of these itself; we read them to build endpoints explicitly).
AWS_ENDPOINT_URL = "AWS_ENDPOINT_URL"
AWS_ENDPOINT_URL_S3 = "AWS_ENDPOINT_URL_S3"
AWS_DEFAULT_REGION = "AWS_DEFAULT_REGION"
AWS_REGION = "AWS_REGION"
AWS_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
AWS_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"
AWS_SESSION_TOKEN = "AWS_SESSION_TOKEN"

# The region and account shown in the ARNs of local jobs and models (jobs/store.py).
BATCHLANE_REGION = "BATCHLANE_REGION"
BATCHLANE_ACCOUNT_ID = "BATCHLANE_ACCOUNT_ID"
AWS_ENDPOINT_URL_SQS = "AWS_ENDPOINT_URL_SQS"

# The default handler's runtime (docs/performance.md): auto, torch, openvino or onnx, optional int8, the ONNX
# export cache (default <home>/onnx), and real-time dynamic batching (set = on; milliseconds to wait for a fuller batch).
BATCHLANE_RUNTIME = "BATCHLANE_RUNTIME"
BATCHLANE_QUANTIZE = "BATCHLANE_QUANTIZE"
BATCHLANE_ONNX_CACHE = "BATCHLANE_ONNX_CACHE"
# --runtime openvino (the default on CPU when installed): the converted-IR cache (default <home>/openvino) and the
# texts file its --quantize int8 calibrates on.
BATCHLANE_OPENVINO_CACHE = "BATCHLANE_OPENVINO_CACHE"
BATCHLANE_CALIBRATION_DATA = "BATCHLANE_CALIBRATION_DATA"
BATCHLANE_MAX_BATCH_DELAY_MS = "BATCHLANE_MAX_BATCH_DELAY_MS"
# `batchlane serve`: pip-install code/requirements.txt into <home>/requirements before importing inference.py
# (true by default, as SageMaker does; false/0/no/off turns it off).
BATCHLANE_INSTALL_REQUIREMENTS = "BATCHLANE_INSTALL_REQUIREMENTS"
# `batchlane serve` data capture (docs/data-capture.md): destination folder or URI (set = on), the folder under it
# (default: the model folder's name), the percentage of invocations captured, and whether to add an inferenceId.
BATCHLANE_CAPTURE_URI = "BATCHLANE_CAPTURE_URI"
BATCHLANE_CAPTURE_NAME = "BATCHLANE_CAPTURE_NAME"
BATCHLANE_CAPTURE_SAMPLE = "BATCHLANE_CAPTURE_SAMPLE"
BATCHLANE_CAPTURE_INFERENCE_ID = "BATCHLANE_CAPTURE_INFERENCE_ID"

# The control plane (`batchlane control-plane`): the key pair (or a credentials file) requests must be signed with.
BATCHLANE_ACCESS_KEY_ID = "BATCHLANE_ACCESS_KEY_ID"
BATCHLANE_SECRET_ACCESS_KEY = "BATCHLANE_SECRET_ACCESS_KEY"
BATCHLANE_CREDENTIALS_FILE = "BATCHLANE_CREDENTIALS_FILE"

# Automation: the queue worker and the Lambda handler (docs/automation.md).
BATCHLANE_MODEL_NAME = "BATCHLANE_MODEL_NAME"  # the default model when a message names none
BATCHLANE_MODEL_DATA_URL = "BATCHLANE_MODEL_DATA_URL"  # its model data: created if missing
BATCHLANE_MODEL_IMAGE = "BATCHLANE_MODEL_IMAGE"  # its container image (SageMaker; informational locally)
BATCHLANE_EXECUTION_ROLE_ARN = "BATCHLANE_EXECUTION_ROLE_ARN"  # SageMaker CreateModel's ExecutionRoleArn
BATCHLANE_DLQ_URL = "BATCHLANE_DLQ_URL"  # where the Lambda handler parks permanent failures with their reason
BATCHLANE_DEFAULT_CONTENT_TYPE = "BATCHLANE_DEFAULT_CONTENT_TYPE"
BATCHLANE_DEFAULT_SPLIT_TYPE = "BATCHLANE_DEFAULT_SPLIT_TYPE"
BATCHLANE_DEFAULT_ACCEPT = "BATCHLANE_DEFAULT_ACCEPT"
BATCHLANE_DEFAULT_STRATEGY = "BATCHLANE_DEFAULT_STRATEGY"
BATCHLANE_DEFAULT_MAX_PAYLOAD_MB = "BATCHLANE_DEFAULT_MAX_PAYLOAD_MB"
AWS_ENDPOINT_URL_SAGEMAKER = "AWS_ENDPOINT_URL_SAGEMAKER"
# Monitoring schedules (docs/monitoring-schedules.md): the folder under which an endpoint's captured data lives
# (<root>/<EndpointName>), the monitoring data of a schedule's EndpointInput.
BATCHLANE_MONITOR_CAPTURE_ROOT = "BATCHLANE_MONITOR_CAPTURE_ROOT"
# The byte budget of one part of a large input file (docs/parts.md) when the job sets no part_size.
BATCHLANE_PART_SIZE = "BATCHLANE_PART_SIZE"


def _int(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        from batchlane.errors import ValidationError

        raise ValidationError(
            f"environment variable {name} must be an integer, got {raw!r}", field=name
        ) from None


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _float(env: Mapping[str, str], name: str) -> float | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        from batchlane.errors import ValidationError

        raise ValidationError(
            f"environment variable {name} must be a number, got {raw!r}", field=name
        ) from None


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE | _FALSE:
        return raw in _TRUE
    from batchlane.errors import ValidationError

    raise ValidationError(
        f"environment variable {name} must be true or false, got {env[name].strip()!r}", field=name
    )


def part_size(env: Mapping[str, str] | None = None) -> int | None:
    """``BATCHLANE_PART_SIZE`` in bytes (a positive integer), or None when it is unset."""
    value = _int(os.environ if env is None else env, BATCHLANE_PART_SIZE, None)
    if value is not None and value < 1:
        from batchlane.errors import ValidationError

        raise ValidationError(
            f"environment variable {BATCHLANE_PART_SIZE} must be a positive number of bytes, got {value}",
            field=BATCHLANE_PART_SIZE,
        )
    return value


# Files whose presence means "running inside a container" (Docker, Podman); there the server binds 0.0.0.0.
CONTAINER_MARKERS = ("/.dockerenv", "/run/.containerenv")


def default_host(env: Mapping[str, str] | None = None) -> str:
    """The serve bind address when ``--host`` is not given.

    ``$BATCHLANE_HOST`` if set; else ``0.0.0.0`` inside a container (a Docker/Podman marker file exists, or the
    platform set ``SAGEMAKER_BIND_TO_PORT``) so the platform can reach the port; else ``127.0.0.1``.
    """
    env = os.environ if env is None else env
    if env.get(BATCHLANE_HOST, "").strip():
        return env[BATCHLANE_HOST].strip()
    if env.get(SAGEMAKER_BIND_TO_PORT, "").strip() or any(Path(m).exists() for m in CONTAINER_MARKERS):
        return "0.0.0.0"
    return "127.0.0.1"


def home_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where batchlane keeps its state (job store, model registry, caches): ``$BATCHLANE_HOME`` or ``~/.batchlane``."""
    env = os.environ if env is None else env
    return Path(env.get(BATCHLANE_HOME) or Path.home() / ".batchlane").expanduser()


def onnx_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where exported ONNX graphs are kept: ``$BATCHLANE_ONNX_CACHE`` or ``<home>/onnx``."""
    env = os.environ if env is None else env
    if env.get(BATCHLANE_ONNX_CACHE, "").strip():
        return Path(env[BATCHLANE_ONNX_CACHE].strip()).expanduser()
    return home_dir(env) / "onnx"


def openvino_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where converted OpenVINO models are kept: ``$BATCHLANE_OPENVINO_CACHE`` or ``<home>/openvino``."""
    env = os.environ if env is None else env
    if env.get(BATCHLANE_OPENVINO_CACHE, "").strip():
        return Path(env[BATCHLANE_OPENVINO_CACHE].strip()).expanduser()
    return home_dir(env) / "openvino"


def requirements_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where ``code/requirements.txt`` packages are installed, one folder per file and environment."""
    return home_dir(os.environ if env is None else env) / "requirements"


def default_db_path(env: Mapping[str, str] | None = None) -> Path:
    """The embedded SQLite store: ``$BATCHLANE_DB`` or ``<home>/batchlane.db``."""
    env = os.environ if env is None else env
    return Path(env[BATCHLANE_DB]).expanduser() if env.get(BATCHLANE_DB) else home_dir(env) / "batchlane.db"


@dataclass(frozen=True)
class ServeSettings:
    """Configuration of the inference container, from flags and the SageMaker environment."""

    model_dir: Path = Path(DEFAULT_MODEL_DIR)
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    max_payload_mb: int = DEFAULT_MAX_PAYLOAD_MB
    batch_strategy: str | None = None
    max_concurrent_transforms: int | None = None
    program: str = "inference.py"
    default_accept: str = DEFAULT_ACCEPT
    model_server_timeout: int = 60
    max_length: int | None = None
    token_budget: int | None = None
    device: str | None = None
    precision: str = "auto"
    top_k: int = 1
    threads: int | None = None
    max_response_mb: int | None = None
    max_model_archive_mb: int | None = None  # None: serving.archive's default cap
    max_batch_size: int | None = None
    # Validated by ClassifierOptions.from_settings, like precision: runtime/quantize names, the delay as given.
    runtime: str | None = None
    quantize: str | None = None
    max_batch_delay_ms: str | None = None
    onnx_cache: Path = field(default_factory=onnx_cache_dir)
    openvino_cache: Path = field(default_factory=openvino_cache_dir)
    calibration_data: Path | None = None
    install_requirements: bool = True
    requirements_cache: Path = field(default_factory=requirements_cache_dir)
    submit_directory: str | None = None
    capture_uri: str | None = None
    capture_name: str | None = None
    capture_sample: float | None = None
    capture_inference_id: bool = False
    extra_env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> ServeSettings:
        """Build from ``env`` (default ``os.environ``); keyword ``overrides`` that are not None win (CLI flags)."""
        env = os.environ if env is None else env
        model_dir = env.get(SM_MODEL_DIR) or (
            str(Path(env[SAGEMAKER_BASE_DIR]) / "model") if env.get(SAGEMAKER_BASE_DIR) else DEFAULT_MODEL_DIR
        )
        strategy = env.get(SAGEMAKER_BATCH_STRATEGY, "").strip() or None
        values: dict[str, object] = {
            "model_dir": Path(model_dir),
            "port": _int(env, SAGEMAKER_BIND_TO_PORT, DEFAULT_PORT),
            "max_payload_mb": _int(env, SAGEMAKER_MAX_PAYLOAD_IN_MB, DEFAULT_MAX_PAYLOAD_MB),
            "batch_strategy": strategy,
            "max_concurrent_transforms": _int(env, SAGEMAKER_MAX_CONCURRENT_TRANSFORMS, None),
            "program": env.get(SAGEMAKER_PROGRAM, "").strip() or "inference.py",
            "default_accept": env.get(SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT, "").strip() or DEFAULT_ACCEPT,
            "model_server_timeout": _int(env, SAGEMAKER_MODEL_SERVER_TIMEOUT, 60),
            "max_length": _int(env, BATCHLANE_MAX_LENGTH, None),
            "token_budget": _int(env, BATCHLANE_TOKEN_BUDGET, None),
            "device": env.get(BATCHLANE_DEVICE, "").strip() or None,
            "precision": env.get(BATCHLANE_PRECISION, "").strip() or "auto",
            "top_k": _int(env, BATCHLANE_TOP_K, 1),
            "threads": _int(env, BATCHLANE_THREADS, None),
            "max_response_mb": _int(env, BATCHLANE_MAX_RESPONSE_MB, None),
            "max_model_archive_mb": _int(env, BATCHLANE_MAX_MODEL_ARCHIVE_MB, None),
            "max_batch_size": _int(env, BATCHLANE_MAX_BATCH_SIZE, None),
            "runtime": env.get(BATCHLANE_RUNTIME, "").strip() or None,
            "quantize": env.get(BATCHLANE_QUANTIZE, "").strip() or None,
            "max_batch_delay_ms": env.get(BATCHLANE_MAX_BATCH_DELAY_MS, "").strip() or None,
            "onnx_cache": onnx_cache_dir(env),
            "openvino_cache": openvino_cache_dir(env),
            "calibration_data": Path(env[BATCHLANE_CALIBRATION_DATA].strip())
            if env.get(BATCHLANE_CALIBRATION_DATA, "").strip()
            else None,
            "install_requirements": _bool(env, BATCHLANE_INSTALL_REQUIREMENTS, True),
            "requirements_cache": requirements_cache_dir(env),
            "submit_directory": env.get(SAGEMAKER_SUBMIT_DIRECTORY, "").strip() or None,
            "host": default_host(env),
            "capture_uri": env.get(BATCHLANE_CAPTURE_URI, "").strip() or None,
            "capture_name": env.get(BATCHLANE_CAPTURE_NAME, "").strip() or None,
            "capture_sample": _float(env, BATCHLANE_CAPTURE_SAMPLE),
            "capture_inference_id": _bool(env, BATCHLANE_CAPTURE_INFERENCE_ID, False),
            "extra_env": dict(env),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        for key in ("model_dir", "onnx_cache", "openvino_cache", "requirements_cache"):
            if isinstance(values[key], str):
                values[key] = Path(values[key])
        return cls(**values)  # type: ignore[arg-type]
