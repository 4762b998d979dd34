"""``LocalStore``: a folder on the local filesystem behaving like an S3 bucket.

Keys map to paths under ``root`` with ``/`` as the separator. Because keys often come from somewhere else (an S3
listing, a manifest, a job request) and S3 keys may legally contain ``../`` (docs/reliability.md), every key is
checked before it touches the filesystem:

* refused outright: a non-string or empty key, a key over 1024 UTF-8 bytes or with a segment over 255 bytes, NUL,
  backslashes, a leading ``/``, ``.``/``..`` segments, and empty segments (``a//b``, ``a/``), since those would make
  distinct S3 keys collide on disk;
* then the path is resolved (symlinks included) and must stay inside the resolved root.

Violations raise ``ValidationError`` naming the key. Prefixes given to ``list`` follow the same rules except that the
last segment may be empty or partial (raw prefix semantics). Decision: a symlink whose target is outside the root is
refused on ``open``/``writer`` and skipped by ``list``; symlinked directories are not descended into (no loops). A
symlink swapped in by another local user between the check and the write is out of scope (the store trusts its own
machine).

Writes are atomic: ``writer`` writes a uniquely named temp file in the destination directory, fsyncs it and
``os.replace``-s it over the key on a clean exit, then fsyncs the directory; on any error the temp file is removed. A
crash therefore leaves the old object or the new one plus at most a stale temp file, which listings ignore and
``remove_stale_temps`` deletes. An ``OSError`` inside the ``with`` block (ENOSPC, EIO, ...) becomes a ``StorageError``
naming the path.
"""

from __future__ import annotations

import errno
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from batchlane.errors import NotFound, StorageError, ValidationError
from batchlane.storage.base import MAX_KEY_BYTES, ObjectInfo

TEMP_SUFFIX = ".batchlane-tmp"
_MAX_SEGMENT_BYTES = 255
_READ_BUFFER = 1 << 20


def _is_temp_name(name: str) -> bool:
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


class LocalStore:
    """An object store over the folder ``root`` (created on first write). See the module docstring for key rules."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        # Work on the real path so that containment checks compare like with like.
        self.root = Path(os.path.realpath(os.path.expanduser(os.fspath(root))))
        self.url = self.root.as_uri()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def check_key(self, key: str, *, prefix: bool = False) -> Path:
        """The absolute path for ``key``; ``ValidationError`` naming the key if it is malformed or escapes the root.

        With ``prefix=True`` the key may be empty and its last segment may be empty or partial.
        """
        if not isinstance(key, str):
            raise ValidationError(f"object key must be a string, got {type(key).__name__}")
        if not key and not prefix:
            raise ValidationError("object key must not be empty")
        shown = key if len(key) <= 200 else key[:200] + "..."
        if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
            raise ValidationError(f"object key {shown!r} is longer than {MAX_KEY_BYTES} bytes")
        if "\x00" in key:
            raise ValidationError(f"object key {shown!r} contains a NUL character")
        if "\\" in key:
            raise ValidationError(f"object key {shown!r} contains a backslash")
        if key.startswith("/"):
            raise ValidationError(f"object key {shown!r} is absolute; keys are relative to the store root")
        segments = key.split("/")
        for position, segment in enumerate(segments):
            last = position == len(segments) - 1
            if segment in (".", ".."):
                raise ValidationError(f"object key {shown!r} contains a {segment!r} segment")
            if not segment and not (prefix and last) and key:
                raise ValidationError(
                    f"object key {shown!r} contains an empty segment ('//' or a trailing '/')"
                )
            if len(segment.encode("utf-8", "surrogatepass")) > _MAX_SEGMENT_BYTES:
                raise ValidationError(
                    f"object key {shown!r} has a segment longer than {_MAX_SEGMENT_BYTES} bytes"
                )
        path = self.root.joinpath(*[s for s in segments if s])
        real = Path(os.path.realpath(path))
        if real != self.root and self.root not in real.parents:
            raise ValidationError(f"object key {shown!r} resolves outside the store root {self.root}")
        return path

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (raw string match), sorted by key; temp files are skipped."""
        self.check_key(prefix, prefix=True)
        directory, _, _ = prefix.rpartition("/")
        start = self.root.joinpath(*directory.split("/")) if directory else self.root
        if not start.is_dir():
            return iter(())
        found: list[ObjectInfo] = []
        for dirpath, dirnames, filenames in os.walk(start, followlinks=False):
            rel = os.path.relpath(dirpath, self.root)
            base = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            # Only descend where a key could still match: the folder is under the prefix or on the way to it.
            dirnames[:] = sorted(
                d
                for d in dirnames
                if (base + d + "/").startswith(prefix) or prefix.startswith(base + d + "/")
            )
            for name in filenames:
                key = base + name
                if not key.startswith(prefix) or _is_temp_name(name):
                    continue
                info = self._file_info(Path(dirpath, name), key)
                if info is not None:
                    found.append(info)
        found.sort(key=lambda item: item.key)
        return iter(found)

    def _file_info(self, path: Path, key: str) -> ObjectInfo | None:
        try:
            if path.is_symlink():
                real = Path(os.path.realpath(path))
                if self.root not in real.parents:
                    return None
            st = path.stat()
        except OSError:
            return None  # vanished while listing, or a dangling link
        if not os.path.isfile(path):
            return None
        return ObjectInfo(key, st.st_size)

    def info(self, key: str) -> ObjectInfo | None:
        """``ObjectInfo`` for exactly ``key``, or None if there is no such file."""
        path = self.check_key(key)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot stat {path}: {exc.strerror}") from exc
        return ObjectInfo(key, st.st_size) if path.is_file() else None

    def open(self, key: str) -> BinaryIO:
        """A buffered reader of the file; ``NotFound`` if it does not exist."""
        path = self.check_key(key)
        try:
            return open(path, "rb", buffering=_READ_BUFFER)  # noqa: SIM115 - the caller owns the stream
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(f"object {self.url_for(key)} does not exist") from None
        except OSError as exc:
            raise StorageError(f"cannot open {path}: {exc.strerror}") from exc

    def read_bytes(self, key: str) -> bytes:
        with self.open(key) as stream:
            try:
                return stream.read()
            except OSError as exc:
                raise StorageError(f"cannot read {self.check_key(key)}: {exc.strerror}") from exc

    @contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        """Write to a temp file next to the target; it replaces the target only when the block exits cleanly."""
        path = self.check_key(key)
        temp: Path | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temp, stream = self._create_temp(path)
            with stream:
                yield stream
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temp, path)
            temp = None
            _fsync_dir(path.parent)
        except OSError as exc:
            raise StorageError(f"{exc.strerror or exc} writing {path}") from exc
        finally:
            if temp is not None:
                _unlink_quietly(temp)

    def _create_temp(self, path: Path) -> tuple[Path, BinaryIO]:
        # Short enough that a 255-byte file name still leaves room for the marker and the random part.
        stem = path.name.encode()[:96].decode(errors="ignore")
        for _ in range(100):
            temp = path.with_name(f".{stem}.{secrets.token_hex(8)}{TEMP_SUFFIX}")
            try:
                # O_EXCL: never clobber another writer's temp file; 0o666 lets the umask decide like any new file.
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                continue
            return temp, os.fdopen(fd, "wb")
        raise StorageError(f"cannot create a temp file next to {path}")

    def write_bytes(self, key: str, data: bytes) -> None:
        with self.writer(key) as stream:
            stream.write(data)

    def exists(self, key: str) -> bool:
        return self.info(key) is not None

    def delete(self, key: str) -> None:
        path = self.check_key(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete {path}: {exc.strerror}") from exc

    def url_for(self, key: str) -> str:
        path = self.check_key(key, prefix=True)
        return path.as_uri() + ("/" if key.endswith("/") else "")

    def remove_stale_temps(self, prefix: str = "", older_than_s: float = 3600.0) -> list[str]:
        """Delete our own temp files under ``prefix``'s folder older than ``older_than_s``; returns their paths.

        Call it when resuming a job whose runner died (docs/reliability.md); recent temp files may belong to a
        writer that is still running and are left alone.
        """
        self.check_key(prefix, prefix=True)
        directory = prefix.rpartition("/")[0]
        start = self.root.joinpath(*directory.split("/")) if directory else self.root
        cutoff = time.time() - older_than_s
        removed: list[str] = []
        for dirpath, _dirnames, filenames in os.walk(start, followlinks=False):
            for name in filenames:
                if not _is_temp_name(name):
                    continue
                path = os.path.join(dirpath, name)
                try:
                    if os.lstat(path).st_mtime <= cutoff:
                        os.unlink(path)
                        removed.append(path)
                except FileNotFoundError:
                    continue
        return removed


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; some filesystems refuse to open or fsync directories, which is fine.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.EACCES):
            raise
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    with suppress(FileNotFoundError):
        path.unlink()
