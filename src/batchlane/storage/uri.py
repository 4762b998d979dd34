"""The URI grammar, once: which strings name a place to read or write, their canonical spellings, the overlap rule
between an input and an output prefix, and ``open_store``. Every front door (CLI, control plane, queue message,
Lambda) and every store goes through here (docs/names-and-uris.md).

Accepted, in a request (CreateTransformJob, CreateModel, a queue message):

* ``s3://bucket/key``: the bucket must follow AWS's naming rules (``storage.bucket``); the key is taken literally
  (S3 keys may hold ``%``, ``\\`` and empty segments).
* ``https://bucket.s3[.region].amazonaws.com/key`` (virtual-hosted) and ``https://s3[.region].amazonaws.com/bucket/key``
  (path-style): the ``https://`` S3 forms SageMaker's S3Uri admits. They are rewritten to ``s3://bucket/key``
  (``canonical_uri``) and read through the S3 endpoint, so no arbitrary host is ever fetched. Any other
  ``http(s)://`` URL is refused (SSRF, docs/reliability.md).
* ``file:///absolute/path`` (host empty or ``localhost``; percent-escapes decoded) and ``/absolute/path``.

Refused everywhere: other schemes, a relative path (a request may be carried out by a process in another folder:
the control plane, a queue worker), ``..`` segments (also percent-encoded), control characters, an empty value and
more than 1024 characters. Only a caller that resolves paths itself (a command-line argument, a library call from
this process) passes ``base``: then a plain path is resolved as a shell would (relative to ``base``, ``..`` folded).

Comparing places (``canonical_location``, ``prefix_relation``, ``outputs_overlap``): two spellings of one place
compare equal: ``s3://bucket/key`` for S3 (the https forms included) and ``file://`` + the resolved absolute path
(symlinks resolved, a trailing slash kept) for local paths.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Literal, NamedTuple
from urllib.parse import unquote

from batchlane.errors import ValidationError
from batchlane.storage.bucket import bucket_name_problem

if TYPE_CHECKING:
    from batchlane.storage.base import ObjectStore

#: SageMaker's S3Uri members allow at most 1024 characters.
MAX_URI_CHARS = 1024
#: The https:// spellings of an S3 object that SageMaker's S3Uri pattern admits (virtual-hosted and path-style).
S3_HTTPS_VIRTUAL = re.compile(
    r"https://(?P<bucket>[a-z0-9][a-z0-9.-]*[a-z0-9])\.s3(?:[.-][a-z0-9-]+)?\.amazonaws\.com(?:\.cn)?(?:/(?P<key>.*))?",
    re.IGNORECASE,
)
S3_HTTPS_PATH = re.compile(
    r"https://s3(?:[.-][a-z0-9-]+)?\.amazonaws\.com(?:\.cn)?/(?P<bucket>[^/]+)(?:/(?P<key>.*))?",
    re.IGNORECASE,
)
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

Scheme = Literal["s3", "file"]


class Location(NamedTuple):
    """A parsed URI: ``("s3", bucket, key)`` or ``("file", "", absolute_path)`` (a trailing slash kept)."""

    scheme: Scheme
    bucket: str
    path: str

    @property
    def uri(self) -> str:
        """The spelling stores open: ``s3://bucket/key`` or the absolute path."""
        return f"s3://{self.bucket}/{self.path}" if self.scheme == "s3" else self.path


class ParsedUri(NamedTuple):
    """A URI split the way ``open_store`` uses it.

    ``scheme`` is ``"s3"`` or ``"file"``; ``location`` is the bucket (s3) or the absolute root directory (file);
    ``key`` is the key or prefix inside it.
    """

    scheme: str
    location: str
    key: str


def problem(uri: object, *, base: str | os.PathLike[str] | None = None) -> str | None:
    """Why ``uri`` is not an acceptable URI (one line, without the field name), or None (module docstring)."""
    try:
        _parse(uri, base)
    except ValueError as exc:
        return str(exc)
    return None


def parse(uri: object, *, field: str | None = None, base: str | os.PathLike[str] | None = None) -> Location:
    """The ``Location`` ``uri`` names; ``ValidationError`` ``"<field>: <reason>"`` naming ``field`` if refused.

    ``base``: the value is the caller's own (a library call, a command-line argument): a plain path may be
    relative (resolved against ``base``) and may hold ``..`` (resolved). URIs follow the rules whatever ``base``.
    """
    try:
        return _parse(uri, base)
    except ValueError as exc:
        raise ValidationError(f"{field or 'URI'}: {exc}", field=field) from None


def _parse(uri: object, base: str | os.PathLike[str] | None) -> Location:
    if not isinstance(uri, str):
        raise ValueError(f"must be a string, got {type(uri).__name__}")
    if not uri.strip():
        raise ValueError("must not be empty")
    if len(uri) > MAX_URI_CHARS:
        raise ValueError(f"is {len(uri)} characters long; it must have at most {MAX_URI_CHARS} characters")
    if _CONTROL.search(uri):
        raise ValueError("must not contain control characters (NUL, newline, ...)")
    match = _SCHEME.match(uri)
    scheme = match.group(1).lower() if match else ""
    rest = uri[match.end() :] if match else uri
    # The raw text is checked, not a normalised path: '..' in a request is refused, never silently resolved. A
    # plain path from a caller that resolves its own paths (``base``) means what it means in a shell.
    own_path = base is not None and not scheme
    if not own_path and any(
        segment == ".." or unquote(segment) == ".." for segment in re.split(r"[/\\]", rest)
    ):
        raise ValueError("must not contain '..' path segments")
    if scheme == "s3":
        bucket, _, key = rest.partition("/")
        location = Location("s3", bucket, key)
    elif scheme in ("https", "http"):
        s3 = S3_HTTPS_VIRTUAL.fullmatch(uri) or S3_HTTPS_PATH.fullmatch(uri)
        if s3 is None:
            raise ValueError(
                f"unsupported scheme {scheme!r}: http(s) URLs are not fetched (SSRF); https URLs must be S3 object "
                "URLs (https://BUCKET.s3.REGION.amazonaws.com/KEY); use s3://bucket/prefix, file:///path or an "
                "absolute path"
            )
        location = Location("s3", s3["bucket"], unquote(s3["key"] or ""))
    elif scheme == "file":
        host, _, path = rest.partition("/")
        if host not in ("", "localhost"):
            raise ValueError("file URIs must not name a host (use file:///absolute/path)")
        location = Location("file", "", _absolute(unquote("/" + path)))
    elif scheme:
        raise ValueError(
            f"unsupported scheme {scheme!r}; use s3://bucket/prefix, file:///path or an absolute path"
        )
    elif os.path.isabs(uri):
        location = Location("file", "", _absolute(uri))
    elif base is not None:
        location = Location("file", "", _absolute(os.path.join(os.fspath(base), os.path.expanduser(uri))))
    else:
        raise ValueError(
            f"{uri!r} is a relative path (the request may be carried out in another folder); give an s3:// URI, "
            "a file:// URI or an absolute path"
        )
    if location.scheme == "s3" and (why := bucket_name_problem(location.bucket)):
        raise ValueError(why)
    return location


def _absolute(path: str) -> str:
    # normpath folds "." and "//" of the caller's own path; ".." was refused on the raw text.
    trailing = path.endswith("/") and path != "/"
    return os.path.normpath(path).replace("//", "/") + ("/" if trailing else "")


def resolve_argument(value: str | None) -> str | None:
    """A command-line argument as a request URI: a relative local path (``data/in/``, ``../x``, ``~/x``) becomes
    absolute against the working folder, as a shell user means it (a trailing slash kept); anything else, and
    None, is returned unchanged for ``parse`` to judge. Only CLI flags use this: a request document (JSON,
    a queue message) is taken as written."""
    if value is None or not value.strip() or _SCHEME.match(value) or os.path.isabs(value):
        return value
    resolved = os.path.abspath(os.path.expanduser(value))
    return resolved + "/" if value.endswith("/") and not resolved.endswith("/") else resolved


def canonical_uri(uri: str, *, field: str | None = None) -> str:
    """The spelling the object stores open: https S3 forms become ``s3://bucket/key``; others are unchanged.
    ``ValidationError`` naming ``field`` if ``uri`` is refused."""
    location = parse(uri, field=field)
    return location.uri if location.scheme == "s3" else uri


def split(uri: str, *, field: str | None = None, base: str | os.PathLike[str] | None = None) -> ParsedUri:
    """``uri`` split for ``open_store``: a local path's root is its directory part, so a raw prefix behaves as on S3
    (``/data/in/part`` → root ``/data/in``, key ``part``; ``/data/in/`` → root ``/data/in``, key ``""``)."""
    location = parse(uri, field=field, base=base)
    if location.scheme == "s3":
        return ParsedUri("s3", location.bucket, location.path)
    path = location.path
    if path.endswith("/") or path == "/":
        return ParsedUri("file", path.rstrip("/") or "/", "")
    root, name = os.path.split(path)
    return ParsedUri("file", root, name)


def parse_uri(uri: str, *, field: str | None = None) -> ParsedUri:
    """``split`` for a library call from this process: a plain path is this process's own (``base`` = the working
    folder), as ``open_store`` takes it."""
    return split(uri, field=field, base=os.getcwd())


def canonical_location(uri: str, *, field: str | None = None, base: str | None = None) -> str:
    """The one spelling of ``uri`` used to compare places: ``s3://bucket/key`` or ``file:///resolved/path``
    (symlinks resolved, trailing slash kept). ``ValidationError`` naming ``field`` if ``uri`` is refused."""
    location = parse(uri, field=field, base=base)
    if location.scheme == "s3":
        return location.uri
    real = os.path.realpath(location.path)
    trailing = location.path.endswith("/") and real != "/"
    return "file://" + real + ("/" if trailing else "")


def _as_folder(location: str) -> str:
    return location if location.endswith("/") else location + "/"


def prefix_relation(
    input_uri: str, output_uri: str, *, base: str | None = None
) -> Literal["inside", "contains"] | None:
    """How an output prefix lies relative to a raw input prefix (canonical forms compared), or None if apart.

    ``"inside"``: some output key would match the raw input prefix, so a job over that input reads the outputs back.
    Output keys are ``<output folder><name part of the input prefix>...`` (``transform.plan.output_key_for``), so
    this holds when that string and the input prefix are prefixes of one another (``in`` / ``in-results``,
    ``in/`` / ``in/out``, ``in/part`` / ``in``). ``"contains"``: otherwise, the input prefix lies in the output
    folder (outputs land in the folder tree that holds the inputs). ``ValidationError`` if a URI is refused.
    """
    source, target = canonical_location(input_uri, base=base), canonical_location(output_uri, base=base)
    folder = _as_folder(target)
    common = folder + source[source.rfind("/") + 1 :]
    if common.startswith(source) or target.startswith(source):
        return "inside"
    if source.startswith(folder):
        return "contains"
    return None


def outputs_overlap(first: str, second: str) -> bool:
    """Whether jobs writing to output prefixes ``first`` and ``second`` could write the same object: their canonical
    forms taken as folders (every output key is ``<prefix>/...``), one a prefix of the other."""
    a, b = _as_folder(canonical_location(first)), _as_folder(canonical_location(second))
    return a.startswith(b) or b.startswith(a)


Opener = Callable[[ParsedUri, Mapping[str, str]], "ObjectStore"]
_OPENERS: dict[str, Opener] = {}


def register_scheme(scheme: str, opener: Opener) -> None:
    """Register ``opener(parsed_uri, env) -> store`` for URIs with ``scheme`` (tests and plug-ins)."""
    _OPENERS[scheme] = opener


def _open_local(parsed: ParsedUri, env: Mapping[str, str]) -> ObjectStore:
    from pathlib import Path

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
    """The store a URI lives in and the key (or prefix) inside it (``split``).

    A library call from this process: a relative path resolves against the working folder. ``env`` (default
    ``os.environ``) configures remote stores (endpoint, region, credentials). ``field`` names the request field in
    error messages.
    """
    parsed = parse_uri(uri, field=field)
    opener = _OPENERS.get(parsed.scheme)
    if opener is None:  # only reachable for schemes parse knows but nobody registered
        raise ValidationError(f"{uri!r}: no object store registered for {parsed.scheme}://", field=field)
    return opener(parsed, os.environ if env is None else env), parsed.key
