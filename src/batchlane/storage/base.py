"""The object-store contract: ``ObjectInfo``, the ``ObjectStore`` Protocol and key helpers.

Every store speaks S3's model: a flat namespace of string keys, ``list(prefix)`` matching the prefix as a *raw string*
(``"test"`` matches ``"test_small/a.csv"``; docs/transform.md), whole-object atomic writes (a reader sees the old object or
the new one, never a torn one; docs/reliability.md).

The URI grammar (parsing, canonical forms, the overlap rule) and ``open_store`` live in ``storage.uri``.

Decision: ``open_store`` does not restrict *which* local folders a URI may name; a control plane that accepts URIs
from remote callers must check them against its allowed roots (``api.paths``) before calling it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import BinaryIO, Protocol, runtime_checkable

# S3 keys are at most 1024 bytes of UTF-8.
MAX_KEY_BYTES = 1024


@dataclass(frozen=True)
class ObjectInfo:
    """One object in a store: its key (relative to the store) and its size in bytes."""

    key: str
    size: int


@runtime_checkable
class ObjectStore(Protocol):
    """A flat key → bytes store with S3's semantics. Keys are relative to the store (no scheme, no bucket)."""

    url: str
    """The store's own URI, e.g. ``file:///abs/root`` or ``s3://bucket``."""

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` as a raw string, sorted by key."""
        ...

    def open(self, key: str) -> BinaryIO:
        """A streaming reader of the object; ``NotFound`` if it does not exist."""
        ...

    def read_bytes(self, key: str) -> bytes:
        """The whole object; ``NotFound`` if it does not exist."""
        ...

    def writer(self, key: str) -> AbstractContextManager[BinaryIO]:
        """A writable stream; the object becomes visible only when the ``with`` block exits cleanly."""
        ...

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write the whole object atomically."""
        ...

    def exists(self, key: str) -> bool:
        """Whether an object with exactly this key exists."""
        ...

    def delete(self, key: str) -> None:
        """Delete the object; no error if it is missing."""
        ...

    def url_for(self, key: str) -> str:
        """The URI of ``key`` in this store (``open_store(url_for(k))`` names the same object)."""
        ...


def join_key(*parts: str) -> str:
    """Join key parts with exactly one ``/`` between non-empty parts: ``join_key("out/", "a.csv")`` → ``"out/a.csv"``.

    Empty parts are skipped, so ``join_key("", "a")`` is ``"a"``; a trailing slash on the last part is kept.
    """
    result = ""
    for part in parts:
        if not part:
            continue
        result = part if not result else result.rstrip("/") + "/" + part.lstrip("/")
    return result


def stat(store: ObjectStore, key: str) -> ObjectInfo | None:
    """``ObjectInfo`` for exactly ``key``, or None if it does not exist.

    Uses the store's ``info(key)`` when it has one (both built-in stores do: a HEAD or an ``os.stat``); otherwise falls
    back to the first listed object under ``key``, which is ``key`` itself if it exists because listings are sorted.
    """
    info = getattr(store, "info", None)
    if callable(info):
        return info(key)
    first = next(iter(store.list(key)), None)
    return first if first is not None and first.key == key else None


# The URI grammar and the store factory live in storage.uri; ``open_store`` stays importable from here.
from batchlane.storage.uri import open_store as open_store  # noqa: E402
