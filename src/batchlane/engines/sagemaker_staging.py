"""Local models and inputs made reachable by SageMaker: uploaded under an ``s3://`` staging prefix.

Everything staged is keyed by a digest of its content, so running the same job again uploads nothing and names the
same ``ModelDataUrl`` (the model is then the same spec, and not created twice):

* ``<staging>/models/<digest>/model.tar.gz``: a model folder packaged as SageMaker expects (model files at the root,
  user code under ``code/``; ``serving.archive.package_model``), or a local ``model.tar.gz`` as it is;
* ``<staging>/inputs/<digest>/<key>``: the objects of a local input prefix, under their keys relative to its folder,
  so the raw-prefix match and the output keys (``<input key>.out``) are those of the local run.

``s3://`` URIs are used as they are.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from batchlane.errors import ValidationError
from batchlane.storage import uri as uri_grammar
from batchlane.storage.base import ObjectStore

DIGEST_CHARS = 16
_CHUNK = 1 << 20


def _hash_file(path: Path, digest: hashlib._Hash) -> None:
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)


def folder_digest(folder: Path) -> str:
    """A digest of a folder's files (relative paths and contents; links followed), as the staging key uses it."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            path = Path(dirpath, name)
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
            _hash_file(path, digest)
    return digest.hexdigest()[:DIGEST_CHARS]


def _staging_root(staging: str | None, what: str, field: str) -> tuple[str, str]:
    """The staging prefix as (bucket, key prefix without a trailing slash); ``ValidationError`` saying how to set it."""
    if not staging:
        raise ValidationError(
            f"{what} is local: SageMaker reads only S3; give --upload-to s3://BUCKET/PREFIX (or set "
            "BATCHLANE_SAGEMAKER_STAGING) to upload it there",
            field=field,
        )
    location = uri_grammar.parse(staging, field="--upload-to")
    if location.scheme != "s3":
        raise ValidationError(f"--upload-to must be an s3:// prefix, got {staging!r}", field="--upload-to")
    return location.bucket, location.path.strip("/")


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


def _s3_store(bucket: str, env: Mapping[str, str]) -> ObjectStore:
    from batchlane.storage.s3 import S3Store

    return S3Store(bucket, env=env)


def _upload_file(store: ObjectStore, key: str, path: Path) -> None:
    with open(path, "rb") as source, store.writer(key) as sink:
        while chunk := source.read(_CHUNK):
            sink.write(chunk)


def stage_model(model_data: str, staging: str | None, env: Mapping[str, str]) -> str:
    """The ``ModelDataUrl`` SageMaker gets for ``model_data``: an ``s3://`` URI as it is; a local folder packaged
    into ``<staging>/models/<digest>/model.tar.gz``; a local archive uploaded there (skipped when already there)."""
    location = uri_grammar.parse(model_data, field="ModelDataUrl", base=os.getcwd())
    if location.scheme == "s3":
        return location.uri
    path = Path(location.path)
    if not path.exists():
        raise ValidationError(f"model data {path} does not exist", field="model_data")
    bucket, root = _staging_root(staging, f"model data {path}", "--upload-to")
    if path.is_dir():
        digest = folder_digest(path)
    else:
        whole = hashlib.sha256()
        _hash_file(path, whole)
        digest = whole.hexdigest()[:DIGEST_CHARS]
    key = _join(root, "models", digest, "model.tar.gz")
    store = _s3_store(bucket, env)
    if not store.exists(key):
        if path.is_dir():
            from batchlane.serving.archive import package_model

            with tempfile.TemporaryDirectory(prefix="batchlane-package-") as folder:
                archive = package_model(path, Path(folder, "model.tar.gz"))
                _upload_file(store, key, archive)
        else:
            _upload_file(store, key, path)
    return f"s3://{bucket}/{key}"


def stage_input(uri: str, staging: str | None, env: Mapping[str, str]) -> str:
    """The ``S3Uri`` SageMaker gets for an S3Prefix input: an ``s3://`` URI as it is; a local raw prefix's objects
    uploaded under ``<staging>/inputs/<digest>/`` with their keys, and that prefix plus the same key prefix."""
    location = uri_grammar.parse(uri, field="TransformInput.DataSource.S3DataSource.S3Uri", base=os.getcwd())
    if location.scheme == "s3":
        return location.uri
    source, prefix = uri_grammar.open_store(location.path)
    objects = list(source.list(prefix))
    if not objects:
        raise ValidationError(
            f"no input objects match {location.path}", field="TransformInput.DataSource.S3DataSource.S3Uri"
        )
    bucket, root = _staging_root(staging, f"input {location.path}", "--upload-to")
    root_folder = Path(source.root)  # type: ignore[attr-defined]  # a local path opens a LocalStore
    digest = hashlib.sha256()
    for info in objects:
        digest.update(info.key.encode() + b"\0")
        _hash_file(root_folder / info.key, digest)
    staged = _join(root, "inputs", digest.hexdigest()[:DIGEST_CHARS])
    target = _s3_store(bucket, env)
    for info in objects:
        key = f"{staged}/{info.key}"
        if not target.exists(key):
            _upload_file(target, key, root_folder / info.key)
    return f"s3://{bucket}/{staged}/{prefix}"
