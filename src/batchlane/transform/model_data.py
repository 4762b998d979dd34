"""Turning a model's ``model_data`` (a folder, a ``model.tar.gz``, or an ``s3://`` object or prefix) into a local
path that ``batchlane serve --model-dir`` accepts. Remote model data is downloaded once into a cache keyed by URI.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from batchlane.errors import NotFound, ValidationError
from batchlane.storage.uri import open_store


def materialize_model(model_data: str, cache_dir: str | Path) -> Path:
    """A local folder or ``.tar.gz`` for ``model_data``; ``s3://`` data is downloaded into ``cache_dir`` (atomically,
    reused next time). ``batchlane serve`` extracts archives itself, safely."""
    if not model_data:
        raise ValidationError("the model has no model_data", field="model_data")
    if not model_data.startswith("s3://"):
        path = Path(model_data.removeprefix("file://"))
        if not path.exists():
            raise NotFound(f"model data {path} does not exist", field="model_data")
        return path
    digest = hashlib.sha256(model_data.encode()).hexdigest()[:16]
    target = Path(cache_dir) / "model-data" / digest
    store, key = open_store(model_data, field="model_data")
    archive = key.endswith((".tar.gz", ".tgz"))
    final = target / Path(key).name if archive else target / "model"
    if final.exists():
        return final
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=target))
    try:
        if archive:
            with store.open(key) as source, open(staging / Path(key).name, "wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)
            os.replace(staging / Path(key).name, final)
        else:
            prefix = key if key.endswith("/") else key + "/"
            objects = list(store.list(prefix))
            if not objects:
                raise NotFound(f"no model files under {model_data}", field="model_data")
            for info in objects:
                local = (staging / "model" / info.key[len(prefix) :]).resolve()
                if not local.is_relative_to((staging / "model").resolve()):
                    raise ValidationError(
                        f"model file key {info.key!r} escapes the model folder", field="model_data"
                    )
                local.parent.mkdir(parents=True, exist_ok=True)
                with store.open(info.key) as source, open(local, "wb") as sink:
                    shutil.copyfileobj(source, sink, 1 << 20)
            os.replace(staging / "model", final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final
