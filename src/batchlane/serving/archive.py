"""``model.tar.gz``: safe extraction for serving, and packaging in the SageMaker layout.

SageMaker extracts ``ModelDataUrl`` into ``/opt/ml/model`` before the container starts; ``batchlane serve`` accepts
the archive itself and extracts it into a cache folder keyed by the archive's path, size and mtime. Extraction
refuses members that could write outside that folder: absolute names, ``..`` components, symbolic or hard links
whose target leaves the folder (or is absolute), and devices, FIFOs and other special files.

The layout (as the SageMaker SDK repacks models): model files at the archive root, user code under ``code/``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from batchlane.errors import ModelLoadError, ValidationError

logger = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


class UnsafeArchive(ModelLoadError):
    """A member of a model archive would land outside the extraction folder, or is not a plain file/folder/link."""


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


def safe_extract(archive: Path, dest: Path) -> None:
    """Extract ``archive`` into ``dest`` after checking every member (nothing is written if one is unsafe)."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                check_member(member)
            # The "data" filter re-checks the same rules inside tarfile and drops permissions bits such as setuid.
            tar.extractall(dest, members=members, filter="data")
    except tarfile.TarError as exc:
        raise ModelLoadError(f"cannot read model archive {archive}: {exc}") from exc


def _cache_key(archive: Path) -> str:
    stat = archive.stat()
    raw = f"{archive.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def resolve_model_dir(path: Path, cache_dir: Path) -> Path:
    """The folder to serve: ``path`` itself, or its extraction under ``cache_dir`` when it is an archive.

    Extraction goes to a temporary sibling first and is renamed into place, so a crash never leaves a half-written
    model behind and concurrent servers share one copy.
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
        safe_extract(path, staging)
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
