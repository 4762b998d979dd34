"""Listing a transform job's input objects: ``S3Prefix`` (raw prefix) and ``ManifestFile`` (docs/transform.md).

``list_inputs(data_source_type, s3_uri)`` returns ``(store, objects, input_prefix)``: the store the objects live in,
the objects (``ObjectInfo`` with keys relative to that store) and the input prefix *key* in that store. Output keys are
computed relative to the prefix's directory (docs/transform.md): ``relative_key(key, input_prefix)`` strips everything
up to and including the prefix's last ``/``, so prefix ``data/test`` and key ``data/test_small/a.csv`` give
``test_small/a.csv``.

* ``S3Prefix``: every object whose key starts with the prefix as a raw string, sorted by key (so ``.../test`` also
  matches ``.../test_small/...``, as on SageMaker).
* ``ManifestFile``: ``s3_uri`` names a JSON array whose first element is ``{"prefix": "<URI>"}`` and whose other
  elements are key suffixes; each object is prefix + suffix. The prefix is a full URI and may point at a different
  store than the manifest (a local manifest listing S3 objects, or the reverse). Objects are returned in manifest
  order.

Decisions (better than the reference, docs/transform.md / docs/reliability.md):

* Zero input objects is a ``ValidationError`` "no input objects under <uri>" instead of a job that completes with no
  output.
* A manifest is checked entry by entry; every problem is a ``ValidationError`` naming the manifest URI and the entry
  index: not JSON, not an array, a bad or missing prefix element, a suffix that is not a non-empty string, a
  duplicate (two entries would write the same output), or an object that does not exist. SageMaker only finds
  missing objects while the job runs **[inferred]**.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

from batchlane.errors import BatchlaneError, NotFound, ValidationError
from batchlane.storage.base import ObjectInfo, ObjectStore, stat
from batchlane.storage.uri import open_store

S3_PREFIX = "S3Prefix"
MANIFEST_FILE = "ManifestFile"
URI_FIELD = "TransformInput.DataSource.S3DataSource.S3Uri"
TYPE_FIELD = "TransformInput.DataSource.S3DataSource.S3DataType"
# A manifest is a list of names, not data; anything bigger is almost certainly the wrong file.
MAX_MANIFEST_BYTES = 256 << 20
_STAT_THREADS = 16


def list_inputs(
    data_source_type: str, s3_uri: str, env: Mapping[str, str] | None = None
) -> tuple[ObjectStore, list[ObjectInfo], str]:
    """The store, the input objects and the input prefix key for a job's ``S3DataSource`` (see module docstring)."""
    if data_source_type == S3_PREFIX:
        return _list_prefix(s3_uri, env)
    if data_source_type == MANIFEST_FILE:
        return _list_manifest(s3_uri, env)
    raise ValidationError(
        f"{TYPE_FIELD} must be {S3_PREFIX} or {MANIFEST_FILE} for a transform job, got {data_source_type!r}",
        field=TYPE_FIELD,
    )


def relative_key(key: str, input_prefix: str) -> str:
    """``key`` relative to the directory of ``input_prefix`` (the part up to its last ``/``)."""
    directory = input_prefix.rpartition("/")[0]
    if directory and not key.startswith(directory + "/"):
        raise ValidationError(f"object key {key!r} is not under the input prefix {input_prefix!r}")
    return key[len(directory) + 1 :] if directory else key


def _list_prefix(uri: str, env: Mapping[str, str] | None) -> tuple[ObjectStore, list[ObjectInfo], str]:
    store, prefix = open_store(uri, env, field=URI_FIELD)
    objects = list(store.list(prefix))
    if not objects:
        raise ValidationError(f"no input objects under {uri}", field=URI_FIELD)
    return store, objects, prefix


def _list_manifest(uri: str, env: Mapping[str, str] | None) -> tuple[ObjectStore, list[ObjectInfo], str]:
    manifest_store, manifest_key = open_store(uri, env, field=URI_FIELD)
    if not manifest_key:
        raise ValidationError(
            f"ManifestFile {uri} must name a manifest object, not a folder", field=URI_FIELD
        )
    entries = _read_manifest(manifest_store, manifest_key, uri)

    def bad(index: int, problem: str) -> ValidationError:
        return ValidationError(f"manifest {uri} entry {index}: {problem}", field=URI_FIELD)

    head = entries[0]
    if not isinstance(head, dict) or not isinstance(head.get("prefix"), str) or not head["prefix"]:
        raise bad(0, 'the first element must be {"prefix": "s3://bucket/prefix/"}')
    try:
        store, prefix = open_store(head["prefix"], env, field=URI_FIELD)
    except ValidationError as exc:
        raise bad(0, f"bad prefix: {exc}") from None

    keys: list[str] = []
    seen: dict[str, int] = {}
    for index, suffix in enumerate(entries[1:], start=1):
        if not isinstance(suffix, str) or not suffix:
            raise bad(index, f"must be a non-empty string key suffix, got {json.dumps(suffix)[:100]}")
        key = prefix + suffix
        if key in seen:
            raise bad(index, f"duplicates entry {seen[key]} ({key!r})")
        seen[key] = index
        keys.append(key)
    if not keys:
        raise ValidationError(f"no input objects under {uri}: the manifest lists no entries", field=URI_FIELD)

    def look_up(item: tuple[int, str]) -> ObjectInfo:
        index, key = item
        try:
            info = stat(store, key)
        except (ValidationError, NotFound) as exc:
            raise bad(index, str(exc)) from None
        except BatchlaneError as exc:
            raise bad(index, f"cannot check {store.url_for(key)}: {exc}") from None
        if info is None:
            raise bad(index, f"object {store.url_for(key)} does not exist")
        return info

    items = list(enumerate(keys, start=1))
    if len(items) <= 4:
        objects = [look_up(item) for item in items]
    else:
        # Existence checks are one HEAD each on S3; run them side by side (boto3 clients are thread-safe).
        with ThreadPoolExecutor(max_workers=_STAT_THREADS) as pool:
            objects = list(pool.map(look_up, items))
    return store, objects, prefix


def _read_manifest(store: ObjectStore, key: str, uri: str) -> list[object]:
    info = stat(store, key)
    if info is None:
        raise ValidationError(f"manifest {uri} does not exist", field=URI_FIELD)
    if info.size > MAX_MANIFEST_BYTES:
        raise ValidationError(
            f"manifest {uri} is {info.size} bytes; at most {MAX_MANIFEST_BYTES} are allowed", field=URI_FIELD
        )
    raw = store.read_bytes(key)
    try:
        entries = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationError(f"manifest {uri} is not valid JSON: {exc}", field=URI_FIELD) from None
    if not isinstance(entries, list) or not entries:
        raise ValidationError(
            f'manifest {uri} must be a JSON array: [{{"prefix": "s3://bucket/prefix/"}}, "suffix1", ...]',
            field=URI_FIELD,
        )
    return entries
