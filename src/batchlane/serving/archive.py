"""``model.tar.gz``: safe extraction for serving, and packaging in the SageMaker layout.

SageMaker extracts ``ModelDataUrl`` into ``/opt/ml/model`` before the container starts; ``batchlane serve`` accepts
the archive itself and extracts it into a cache folder keyed by the archive's path, size and mtime. Extraction
refuses members that could write outside that folder: absolute names, ``..`` components, symbolic or hard links
whose target leaves the folder (or is absolute), and devices, FIFOs and other special files. It also refuses
decompression bombs (see ``safe_extract``): a total extracted size above ``max_bytes``, or one that is more than
``max_ratio`` times the archive's size. Every refusal is one ``ModelLoadError`` line naming the archive, and nothing
is left behind.

The layout (as the SageMaker SDK repacks models): model files at the archive root, user code under ``code/``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from batchlane.errors import BatchlaneError, ModelLoadError, ValidationError
from batchlane.transform.split import (
    DEFAULT_MAX_DECOMPRESSED_BYTES,
    DEFAULT_MAX_RATIO,
    DEFAULT_RATIO_FLOOR_BYTES,
    GzipReader,
)

logger = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
# The decompression-bomb caps are the gzip input caps of transform jobs (``transform.split``): at most 32 GiB
# extracted, and at most 500x the archive's size once 64 MiB have been produced. Model weights barely compress
# (safetensors ~1.1x), so only pathological archives meet the ratio; ``BATCHLANE_MAX_MODEL_ARCHIVE_MB`` lowers or
# raises the size cap.
DEFAULT_MAX_EXTRACTED_BYTES = DEFAULT_MAX_DECOMPRESSED_BYTES
GZIP_MAGIC = b"\x1f\x8b"


class UnsafeArchive(ModelLoadError):
    """A member of a model archive would land outside the extraction folder, or is not a plain file/folder/link."""


class ArchiveTooLarge(UnsafeArchive):
    """A model archive would extract to more than the size cap, or expands suspiciously (a decompression bomb)."""


def is_archive(path: Path) -> bool:
    """True when ``path`` names a (possibly compressed) tar file by its suffix."""
    return path.name.endswith(ARCHIVE_SUFFIXES)


def _inside(name: str) -> bool:
    """True when a relative POSIX path stays inside its root once ``..`` components are resolved."""
    depth = 0
    for part in PurePosixPath(name).parts:
        if part == "..":
            depth -= 1
            if depth < 0:
                return False
        elif part not in ("", "."):
            depth += 1
    return True


def check_member(member: tarfile.TarInfo) -> None:
    """Raise ``UnsafeArchive`` unless ``member`` extracts strictly inside the destination folder."""
    name = member.name
    if (
        name.startswith(("/", "\\"))
        or PurePosixPath(name).is_absolute()
        or (len(name) > 1 and name[1] == ":")
    ):
        raise UnsafeArchive(f"archive member {name!r} has an absolute path")
    if not _inside(name):
        raise UnsafeArchive(f"archive member {name!r} points outside the model folder ('..')")
    if member.issym():
        target = member.linkname
        if target.startswith("/") or not _inside(str(PurePosixPath(name).parent / target)):
            raise UnsafeArchive(
                f"archive member {name!r} is a symbolic link to {target!r}, outside the model folder"
            )
    elif member.islnk():
        if member.linkname.startswith("/") or not _inside(member.linkname):
            raise UnsafeArchive(
                f"archive member {name!r} is a hard link to {member.linkname!r}, outside the folder"
            )
    elif not (member.isfile() or member.isdir()):
        raise UnsafeArchive(f"archive member {name!r} is a device, FIFO or other special file")


class _Budget:
    """Running total of the bytes a model archive extracts to, checked against the caps before anything is written."""

    def __init__(self, archive: Path, max_bytes: int | None, max_ratio: float | None) -> None:
        self.archive = archive
        self.max_bytes = max_bytes
        self.max_ratio = max_ratio
        self.compressed = max(archive.stat().st_size, 1)
        self.total = 0

    def add(self, member: tarfile.TarInfo) -> None:
        if not member.isfile():
            return
        self.total += member.size
        if self.max_bytes is not None and self.total > self.max_bytes:
            raise ArchiveTooLarge(
                f"model archive {self.archive} extracts to more than {self.max_bytes} bytes (at member "
                f"{member.name!r}); raise BATCHLANE_MAX_MODEL_ARCHIVE_MB if the model really is that large"
            )
        if (
            self.max_ratio is not None
            and self.total > DEFAULT_RATIO_FLOOR_BYTES
            and self.total > self.max_ratio * self.compressed
        ):
            raise ArchiveTooLarge(
                f"model archive {self.archive} expands more than {self.max_ratio:g}x ({self.compressed} bytes "
                f"hold {self.total}+ at member {member.name!r}); refusing a likely decompression bomb"
            )


def _open_stream(
    archive: Path, handle: BinaryIO, max_bytes: int | None, max_ratio: float | None
) -> tarfile.TarFile:
    """A streaming tar reader; gzip goes through ``GzipReader`` so headers and padding are capped too."""
    if handle.read(2) == GZIP_MAGIC:
        handle.seek(0)
        # Tar headers and padding add a little to the members' sizes: allow them on top of the cap.
        limit = None if max_bytes is None else max_bytes + (64 << 20)
        reader = io.BufferedReader(GzipReader(handle, max_bytes=limit, max_ratio=max_ratio))
        return tarfile.open(fileobj=reader, mode="r|")
    handle.seek(0)
    return tarfile.open(fileobj=handle, mode="r|*")


def _members(
    tar: tarfile.TarFile, archive: Path, max_bytes: int | None, max_ratio: float | None
) -> Iterator[tarfile.TarInfo]:
    budget = _Budget(archive, max_bytes, max_ratio)
    for member in tar:
        check_member(member)
        budget.add(member)
        yield member


def safe_extract(
    archive: Path,
    dest: Path,
    *,
    max_bytes: int | None = DEFAULT_MAX_EXTRACTED_BYTES,
    max_ratio: float | None = DEFAULT_MAX_RATIO,
) -> None:
    """Extract ``archive`` into ``dest`` after checking every member (nothing is written if one is unsafe).

    A first streaming pass checks each member's path and type and the running total of the members' sizes against
    ``max_bytes`` and ``max_ratio`` × the archive's size (from 64 MiB on) without writing anything, so a bomb is
    refused from its headers; the second pass extracts. ``UnsafeArchive``/``ArchiveTooLarge`` say why; a corrupt
    archive or a write error (disk full) is a ``ModelLoadError`` naming the archive. ``None`` turns a cap off.
    """
    try:
        for extract in (False, True):
            with open(archive, "rb") as handle, _open_stream(archive, handle, max_bytes, max_ratio) as tar:
                members = _members(tar, archive, max_bytes, max_ratio)
                if extract:
                    # The "data" filter re-checks the same rules inside tarfile and drops bits such as setuid.
                    tar.extractall(dest, members=members, filter="data")
                else:
                    for _ in members:
                        pass
    except UnsafeArchive:
        raise
    except BatchlaneError as exc:  # GzipReader: corrupt, truncated, or over a cap
        if exc.status == 413:
            raise ArchiveTooLarge(f"model archive {archive}: {exc}") from None
        raise ModelLoadError(f"cannot read model archive {archive}: {exc}") from None
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise ModelLoadError(f"cannot read model archive {archive}: {exc}") from exc
    except OSError as exc:
        raise ModelLoadError(f"cannot extract model archive {archive}: {exc.strerror or exc}") from exc


def _cache_key(archive: Path) -> str:
    stat = archive.stat()
    raw = f"{archive.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def resolve_model_dir(
    path: Path, cache_dir: Path, *, max_bytes: int | None = DEFAULT_MAX_EXTRACTED_BYTES
) -> Path:
    """The folder to serve: ``path`` itself, or its extraction under ``cache_dir`` when it is an archive.

    Extraction goes to a temporary sibling first and is renamed into place, so a crash or a refused archive (see
    ``safe_extract``; ``max_bytes`` caps the extracted size) never leaves a half-written model behind, and
    concurrent servers share one copy.
    """
    if path.is_dir():
        return path
    if not path.exists():
        raise ModelLoadError(f"model directory {path} does not exist (set --model-dir or SM_MODEL_DIR)")
    if not is_archive(path):
        raise ModelLoadError(f"{path} is neither a model directory nor a .tar.gz archive")
    target = cache_dir / _cache_key(path)
    if target.is_dir():
        logger.info("using %s, extracted earlier from %s", target, path)
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=cache_dir))
    try:
        safe_extract(path, staging, max_bytes=max_bytes)
        try:
            staging.rename(target)
        except OSError:
            if not target.is_dir():  # not a lost race with another server: a real failure
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    logger.info("extracted %s into %s", path, target)
    return target


def _walk(root: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs.sort()
        for name in sorted(files):
            yield Path(folder) / name


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # Reproducible, owner-neutral archives: no local user names or ids.
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def package_model(
    model_dir: Path,
    output: Path,
    code: Iterable[Path] = (),
    requirements: Path | None = None,
) -> Path:
    """Write ``output`` (a gzip tar): ``model_dir``'s files at the root, ``code`` files/folders under ``code/``.

    ``requirements`` becomes ``code/requirements.txt``. Symbolic links are stored as the files they point to (model
    caches link to blobs). The archive appears atomically: it is written to a temporary file that is renamed.
    """
    model_dir, output = Path(model_dir), Path(output)
    if not model_dir.is_dir():
        raise ValidationError(f"--model-dir {model_dir} is not a folder", field="model_dir")
    code_files: dict[str, Path] = {}
    for item in code:
        item = Path(item)
        if item.is_dir():
            code_files.update(
                {str(p.relative_to(item)): p for p in _walk(item) if "__pycache__" not in p.parts}
            )
        elif item.is_file():
            code_files[item.name] = item
        else:
            raise ValidationError(f"--code {item} does not exist", field="code")
    if requirements is not None:
        if not Path(requirements).is_file():
            raise ValidationError(f"--requirements {requirements} does not exist", field="requirements")
        code_files["requirements.txt"] = Path(requirements)
    if code_files and not any(name.endswith(".py") and "/" not in name for name in code_files):
        logger.warning("no Python module at the top of code/; the server will use its default handler")
    elif code_files and "inference.py" not in code_files:
        logger.warning("code/ has no inference.py; set SAGEMAKER_PROGRAM to the module's name when serving")
    if not (model_dir / "config.json").is_file() and "inference.py" not in code_files:
        logger.warning(
            "%s has no config.json; the default handler cannot serve it without a model_fn", model_dir
        )

    output.parent.mkdir(parents=True, exist_ok=True)
    skip = {output.resolve()}
    handle, temp_name = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
    os.close(handle)
    try:
        with tarfile.open(temp_name, "w:gz", dereference=True) as tar:
            for path in _walk(model_dir):
                relative = path.relative_to(model_dir)
                if path.resolve() in skip or Path(temp_name).resolve() == path.resolve():
                    continue
                if code_files and relative.parts[0] == "code":
                    continue  # the code given on the command line replaces the folder's own code/
                tar.add(path, arcname=relative.as_posix(), recursive=False, filter=_normalise)
            for name, path in sorted(code_files.items()):
                tar.add(path, arcname=f"code/{name}", recursive=False, filter=_normalise)
        os.chmod(temp_name, 0o644)  # mkstemp creates 0600; an archive is meant to be shared
        os.replace(temp_name, output)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    logger.info("wrote %s (%d code files)", output, len(code_files))
    return output
