"""The one builder of CreateTransformJob requests for the front doors: a base request with fields laid over it.

``batchlane transform`` lays its flags over the ``--request`` file; the queue worker and the Lambda handler lay a
message's fields (and the queue's defaults, ``queue.launcher``) over nothing. Either way the request then goes to an
engine's ``submit`` (or SageMaker's ``CreateTransformJob``), which validates it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from batchlane.jobs.naming import timestamped_name

LOCAL_RESOURCES = {"InstanceType": "local", "InstanceCount": 1}


def set_field(tree: dict[str, Any], path: str, value: Any) -> None:
    """Set the dotted ``path`` (``TransformInput.ContentType``) of ``tree`` to ``value``; None leaves it as is."""
    if value is None:
        return
    *parents, leaf = path.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def build_request(
    fields: Mapping[str, Any],
    *,
    base: Mapping[str, Any] | None = None,
    environment: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The request (boto3 shape): a copy of ``base`` with each dotted field of ``fields`` set (None: skipped) and
    ``environment`` merged over its ``Environment``. Left unset: ``TransformJobName`` becomes
    ``batchlane-<UTC timestamp>``, ``TransformResources`` one ``local`` instance, ``S3DataType`` S3Prefix."""
    request: dict[str, Any] = copy.deepcopy(dict(base or {}))
    for path, value in fields.items():
        set_field(request, path, value)
    if environment:
        request["Environment"] = {**request.get("Environment", {}), **environment}
    if "TransformJobName" not in request:
        request["TransformJobName"] = timestamped_name()
    request.setdefault("TransformResources", dict(LOCAL_RESOURCES))
    source = request.get("TransformInput", {}).get("DataSource", {}).get("S3DataSource")
    if source is not None:
        source.setdefault("S3DataType", "S3Prefix")
    return request
