"""/execution-parameters derivation and the serve settings read from the SageMaker environment."""

from __future__ import annotations

import pytest

from batchlane.errors import ValidationError
from batchlane.serving.app import execution_parameters
from batchlane.settings import ServeSettings, default_host


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, {"MaxConcurrentTransforms": 2, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 6}),
        (
            {"SAGEMAKER_BATCH_STRATEGY": "SINGLE_RECORD", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "20"},
            {"MaxConcurrentTransforms": 2, "BatchStrategy": "SINGLE_RECORD", "MaxPayloadInMB": 20},
        ),
        # The API enum spelling is accepted and answered in the variable's spelling.
        ({"SAGEMAKER_BATCH_STRATEGY": "MultiRecord"}, {"BatchStrategy": "MULTI_RECORD"}),
        ({"SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "8"}, {"MaxConcurrentTransforms": 8}),
        # The default concurrency respects SageMaker's MCT x MaxPayloadInMB <= 100.
        ({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "100"}, {"MaxConcurrentTransforms": 1, "MaxPayloadInMB": 100}),
        ({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "0"}, {"MaxConcurrentTransforms": 2, "MaxPayloadInMB": 0}),
        ({"SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "0"}, {"MaxConcurrentTransforms": 2}),
    ],
)
def test_execution_parameters(env: dict[str, str], expected: dict) -> None:
    parameters = execution_parameters(ServeSettings.from_env(env, threads=1))
    assert set(parameters) == {"MaxConcurrentTransforms", "BatchStrategy", "MaxPayloadInMB"}
    assert parameters.items() >= expected.items()


@pytest.mark.parametrize(("threads", "payload", "expected"), [(1, 6, 2), (2, 6, 2), (8, 6, 8), (8, 20, 5)])
def test_default_concurrency_keeps_every_stream_busy(threads: int, payload: int, expected: int) -> None:
    """One payload per model thread (OpenVINO runs a stream per thread), at least 2, within MCT x payload <= 100."""
    settings = ServeSettings.from_env({"SAGEMAKER_MAX_PAYLOAD_IN_MB": str(payload)}, threads=threads)
    assert execution_parameters(settings)["MaxConcurrentTransforms"] == expected


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"SAGEMAKER_BATCH_STRATEGY": "ALL_AT_ONCE"}, "SAGEMAKER_BATCH_STRATEGY"),
        ({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "-1"}, "SAGEMAKER_MAX_PAYLOAD_IN_MB"),
        ({"SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "-2"}, "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS"),
    ],
)
def test_invalid_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ValidationError, match=variable):
        execution_parameters(ServeSettings.from_env(env))


def test_settings_from_the_sagemaker_environment() -> None:
    env = {
        "SM_MODEL_DIR": "/models/m",
        "SAGEMAKER_BIND_TO_PORT": "9090",
        "SAGEMAKER_PROGRAM": "serve.py",
        "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv",
        "BATCHLANE_MAX_BATCH_SIZE": "16",
    }
    settings = ServeSettings.from_env(env, port=7000)
    assert str(settings.model_dir) == "/models/m"
    assert settings.port == 7000  # flags win over the environment
    assert (settings.program, settings.default_accept, settings.max_batch_size) == (
        "serve.py",
        "text/csv",
        16,
    )


def test_default_host() -> None:
    assert default_host({"BATCHLANE_HOST": "10.0.0.5"}) == "10.0.0.5"
    assert default_host({"SAGEMAKER_BIND_TO_PORT": "8080"}) == "0.0.0.0"
    assert default_host({}) in ("127.0.0.1", "0.0.0.0")  # 0.0.0.0 only when a container marker file exists
