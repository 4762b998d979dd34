"""The object-store contract: ``ObjectInfo``, the ``ObjectStore`` Protocol, URI parsing and the ``open_store`` factory.

Every store speaks S3's model: a flat namespace of string keys, ``list(prefix)`` matching the prefix as a *raw string*
(``"test"`` matches ``"test_small/a.csv"``; docs/transform.md), whole-object atomic writes (a reader sees the old object or
the new one, never a torn one; docs/reliability.md).

URIs (``open_store`` / ``parse_uri``):

* ``s3://bucket/some/prefix`` → ``S3Store(bucket)`` and key ``"some/prefix"``.
* ``/data/in/part``, ``data/in/part`` (relative to the working directory) or ``file:///data/in/part`` →
  ``LocalStore(root="/data/in")`` and key ``"part"``: the root is the directory part of the path, so a raw prefix
  behaves as it would on S3. A trailing slash makes the whole path the root: ``/data/in/`` → root ``/data/in``, key
  ``""``.
* Any other scheme is refused with a ``ValidationError``. ``http(s)://`` in particular is not fetched: SageMaker's
  S3Uri pattern admits ``https://`` virtual-host URLs, but following arbitrary URLs from a job request is an SSRF
  hole (docs/reliability.md).

Comparing URIs (``canonical_location``, ``outputs_overlap``, ``output_input_overlap``): two spellings of one place
must compare equal, or a guard keyed on strings is bypassed by writing the same prefix another way. The canonical
form is ``s3://bucket/key`` for S3 (the documented ``https://`` virtual-hosted and path-style forms included) and
``file://`` + the resolved absolute path (symlinks resolved, a trailing slash kept) for local paths. Two *output*
prefixes overlap when one, taken as a folder (a ``/`` added), is a prefix of the other: every output key is
``<prefix>/...`` (``transform.plan.output_key_for``), so ``out`` and ``out2`` never share an object but ``out`` and
``out/run1`` can. An output is refused relative to its *input* prefix when it starts with the raw input prefix
(``inside``: inputs are listed by raw prefix, so ``in-results`` would be read back as input of ``in``), or when the
input prefix lies in the output folder (``contains``: outputs would land among the inputs).

Decision: ``open_store`` does not restrict *which* local folders a URI may name; a control plane that accepts URIs
from remote callers must check them against its allowed roots before calling it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, NamedTuple, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

from batchlane.errors import ValidationError
from batchlane.storage.bucket import bucket_name_problem

# SageMaker's S3Uri members allow at most 1024 characters; S3 keys are at most 1024 bytes of UTF-8.
MAX_URI_CHARS = 1024
MAX_KEY_BYTES = 1024
# The https:// spellings of an S3 object that SageMaker's S3Uri pattern admits (virtual-hosted and path-style).
S3_HTTPS_VIRTUAL = re.compile(
    r"https://(?P<bucket>[a-z0-9][a-z0-9.-]*[a-z0-9])\.s3(?:[.-][a-z0-9-]+)?\.amazonaws\.com(?:\.cn)?(?:/(?P<key>.*))?"
)
S3_HTTPS_PATH = re.compile(
    r"https://s3(?:[.-][a-z0-9-]+)?\.amazonaws\.com(?:\.cn)?/(?P<bucket>[^/]+)(?:/(?P<key>.*))?"
)


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


class ParsedUri(NamedTuple):
    """A URI split the way ``open_store`` uses it.

    ``scheme`` is ``"s3"`` or ``"file"``; ``location`` is the bucket (s3) or the absolute root directory (file);
    ``key`` is the key or prefix inside it.
    """

    scheme: str
    location: str
    key: str


def parse_uri(uri: str, *, field: str | None = None) -> ParsedUri:
    """Split ``uri`` into scheme, bucket/root and key (see the module docstring); ``ValidationError`` naming it if bad."""
    if not isinstance(uri, str) or not uri.strip():
        raise ValidationError(f"{field or 'URI'} must be a non-empty string", field=field)
    if len(uri) > MAX_URI_CHARS:
        raise ValidationError(
            f"{field or 'URI'} is {len(uri)} characters long; at most {MAX_URI_CHARS} are allowed",
            field=field,
        )
    if "\x00" in uri:
        raise ValidationError(f"{field or 'URI'} {uri!r} contains a NUL character", field=field)
    if "://" in uri:
        scheme = uri.split("://", 1)[0].lower()
        if scheme == "s3":
            rest = uri.split("://", 1)[1]
            bucket, _, key = rest.partition("/")
            if problem := bucket_name_problem(bucket):
                raise ValidationError(f"{uri!r} does not name a valid S3 bucket: {problem}", field=field)
            return ParsedUri("s3", bucket, key)
        if scheme == "file":
            parts = urlsplit(uri)
            if parts.netloc not in ("", "localhost"):
                raise ValidationError(
                    f"{uri!r}: file URIs must not name a host (use file:///absolute/path)", field=field
                )
            return _split_local(unquote(parts.path), uri, field)
        raise ValidationError(
            f"{uri!r}: unsupported scheme {scheme!r}; use s3://bucket/prefix, file:///path or a local path",
            field=field,
        )
    return _split_local(uri, uri, field)


def _split_local(path: str, uri: str, field: str | None) -> ParsedUri:
    if not path:
        raise ValidationError(f"{uri!r} names no path", field=field)
    trailing = path.endswith("/")
    # abspath normalises "." and ".." segments of the *user's own* path; keys inside the store are checked separately.
    absolute = os.path.abspath(os.path.expanduser(path))
    if trailing or absolute == os.path.dirname(absolute):
        return ParsedUri("file", absolute, "")
    root, name = os.path.split(absolute)
    return ParsedUri("file", root, name)


def canonical_location(uri: str, *, field: str | None = None) -> str:
    """The one spelling of ``uri`` used to compare locations (module docstring): ``s3://bucket/key`` or
    ``file:///resolved/path`` (trailing slash kept). ``ValidationError`` naming ``field`` for what no store opens."""
    if isinstance(uri, str) and uri[:8].lower() == "https://":
        match = S3_HTTPS_VIRTUAL.fullmatch(uri) or S3_HTTPS_PATH.fullmatch(uri)
        if match is None:
            raise ValidationError(f"{uri!r} is not an S3 https:// URL", field=field)
        return f"s3://{match['bucket']}/{unquote(match['key'] or '')}"
    parsed = parse_uri(uri, field=field)
    if parsed.scheme == "s3":
        return f"s3://{parsed.location}/{parsed.key}"
    path = os.path.join(parsed.location, parsed.key) if parsed.key else parsed.location
    real = os.path.realpath(path)
    trailing = not parsed.key and real != "/"
    return "file://" + real + ("/" if trailing else "")


def _as_folder(location: str) -> str:
    return location if location.endswith("/") else location + "/"


def outputs_overlap(first: str, second: str) -> bool:
    """Whether jobs writing to output prefixes ``first`` and ``second`` could write the same object (module
    docstring: canonical forms compared as folders)."""
    a, b = _as_folder(canonical_location(first)), _as_folder(canonical_location(second))
    return a.startswith(b) or b.startswith(a)


def output_input_overlap(input_uri: str, output_uri: str) -> Literal["inside", "contains"] | None:
    """``"inside"`` if outputs under ``output_uri`` would be listed as inputs of the raw prefix ``input_uri`` (equal
    included), ``"contains"`` if the input prefix lies in the output folder, else None (module docstring)."""
    source, target = canonical_location(input_uri), canonical_location(output_uri)
    if target.startswith(source):
        return "inside"
    if source.startswith(_as_folder(target)):
        return "contains"
    return None


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


Opener = Callable[[ParsedUri, Mapping[str, str]], ObjectStore]
_OPENERS: dict[str, Opener] = {}


def register_scheme(scheme: str, opener: Opener) -> None:
    """Register ``opener(parsed_uri, env) -> store`` for URIs with ``scheme`` (tests and plug-ins)."""
    _OPENERS[scheme] = opener


def _open_local(parsed: ParsedUri, env: Mapping[str, str]) -> ObjectStore:
    from batchlane.storage.local import LocalStore

    return LocalStore(Path(parsed.location))


def _open_s3(parsed: ParsedUri, env: Mapping[str, str]) -> ObjectStore:
    from batchlane.storage.s3 import S3Store

    return S3Store(parsed.location, env=env)


register_scheme("file", _open_local)
register_scheme("s3", _open_s3)


def open_store(
    uri: str, env: Mapping[str, str] | None = None, *, field: str | None = None
) -> tuple[ObjectStore, str]:
    """The store a URI lives in and the key (or prefix) inside it; see the module docstring for the mapping.

    ``env`` (default ``os.environ``) configures remote stores (endpoint, region, credentials). ``field`` names the
    request field in error messages.
    """
    parsed = parse_uri(uri, field=field)
    opener = _OPENERS.get(parsed.scheme)
    if opener is None:  # only reachable for schemes parse_uri knows but nobody registered
        raise ValidationError(f"{uri!r}: no object store registered for {parsed.scheme}://", field=field)
    return opener(parsed, os.environ if env is None else env), parsed.key
