"""Default values and size units shared by the transform engine, the serving container and the settings.

Each constant is the one place its value lives; rq's ``defaults.py`` is the model.
"""

from __future__ import annotations

MB = 1024 * 1024
"""One MiB in bytes: SageMaker's ``MaxPayloadInMB`` and every other ``*_MB`` setting count MiB."""

DEFAULT_MAX_PAYLOAD_MB = 6
"""``MaxPayloadInMB`` when neither the request nor the container's ``/execution-parameters`` sets it (AWS's default)."""

MAX_PAYLOAD_MB = 100
"""The largest ``MaxPayloadInMB`` AWS accepts."""

MAX_PAYLOAD_PRODUCT = 100
"""``MaxConcurrentTransforms × MaxPayloadInMB`` may not exceed this (AWS's rule, checked when both are set)."""

DEFAULT_MAX_CONCURRENT_TRANSFORMS = 1
"""A transform job's ``MaxConcurrentTransforms`` when neither the request nor the container sets it."""

DEFAULT_CONTAINER_MAX_CONCURRENT_TRANSFORMS = 2
"""The least ``batchlane serve`` answers in ``/execution-parameters`` when unset: two payloads in flight per
container, one decoded while the other runs through the model; it answers one per model thread where that is more
(``serving.app.default_concurrency``), capped so that the product rule above holds."""

DEFAULT_BATCH_STRATEGY = "MultiRecord"
"""``BatchStrategy`` when neither the request nor the container sets it."""

DEFAULT_INVOCATIONS_TIMEOUT_S = 600
"""``ModelClientConfig.InvocationsTimeoutInSeconds`` default (AWS's)."""

DEFAULT_INVOCATIONS_MAX_RETRIES = 3
"""``ModelClientConfig.InvocationsMaxRetries`` default (AWS's)."""

DEFAULT_PORT = 8080
"""The serving container's port (SageMaker's)."""

DEFAULT_MODEL_DIR = "/opt/ml/model"
"""Where the serving container finds its model (SageMaker's)."""

DEFAULT_ACCEPT = "application/json"
"""The response type of ``/invocations`` when a request names none."""

DEFAULT_MODEL_NAME = "default"
"""The model a queue message without ``model_name`` runs when neither ``--model`` nor ``BATCHLANE_MODEL_NAME`` names
one (docs/automation.md): ``batchlane models create default --model-data DIR`` makes seed messages work as they are."""
