"""The Lambda deployment package: the installed batchlane package plus the few dependencies its two handlers import.

The handlers (``aws.lambda_handler``, ``aws.retry_handler``) import batchlane's queue, message and settings modules,
which need pydantic and its own dependencies, nothing else: no torch, numpy, transformers, typer or httpx (imported
by other commands only, lazily). boto3 and botocore come with the Lambda Python runtime and are not packed.
``tests/integration/aws/test_deploy.py`` imports both handlers from an unpacked package with nothing else on
``sys.path``, so a new import that needs another dependency fails there.

pydantic-core is compiled, so the package only runs on the Lambda runtime and architecture of the interpreter that
built it: ``runtime()`` says which (``python3.11``, ``x86_64``), and ``batchlane deploy aws`` passes them to the
stack. The zip is byte-for-byte reproducible (sorted entries, fixed timestamps, no ``__pycache__``), so its
SHA-256 names it and an unchanged package is neither uploaded nor deployed again.
"""

from __future__ import annotations

import hashlib
import platform
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from batchlane.errors import ValidationError

# Distributions the handlers import (pydantic's own requirements included), by their distribution names.
LAMBDA_DEPENDENCIES = (
    "pydantic",
    "pydantic-core",
    "annotated-types",
    "typing-extensions",
    "typing-inspection",
)
# Packages that must never be in the zip (they would be hundreds of MB, or compiled for the wrong place).
FORBIDDEN_TOP_LEVEL = frozenset(
    {"torch", "numpy", "transformers", "onnxruntime", "openvino", "boto3", "botocore"}
)
LAMBDA_RUNTIMES = ("python3.11", "python3.12", "python3.13")
_ARCHITECTURES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)
_SKIPPED_PARTS = frozenset({"__pycache__"})
_SKIPPED_SUFFIXES = (".pyc", ".pyo")


@dataclass(frozen=True)
class LambdaPackage:
    """A built package: where it is, its SHA-256 (hex) and what it needs to run."""

    path: Path
    sha256: str
    runtime: str
    architecture: str

    @property
    def key_name(self) -> str:
        """A content-addressed file name, ``batchlane-lambda-<sha256[:20]>.zip``."""
        return f"batchlane-lambda-{self.sha256[:20]}.zip"


def runtime() -> tuple[str, str]:
    """The Lambda runtime and architecture matching this interpreter; ValidationError where there is none."""
    name = f"python{sys.version_info.major}.{sys.version_info.minor}"
    arch = _ARCHITECTURES.get(platform.machine().lower())
    if platform.system() != "Linux" or arch is None or name not in LAMBDA_RUNTIMES:
        raise ValidationError(
            f"the Lambda package holds pydantic-core compiled for this interpreter ({name}, {platform.system()} "
            f"{platform.machine()}); build it on Linux x86_64 or aarch64 with Python "
            f"{', '.join(r.removeprefix('python') for r in LAMBDA_RUNTIMES)}",
            field="python",
        )
    return name, arch


def _package_files() -> Iterator[tuple[str, Path]]:
    """(archive name, file) of the batchlane package as imported now (a source checkout or an installed wheel)."""
    import batchlane

    root = Path(batchlane.__file__).resolve().parent
    for path in root.rglob("*"):
        relative = path.relative_to(root.parent)
        skipped = _SKIPPED_PARTS.intersection(relative.parts) or path.name.endswith(_SKIPPED_SUFFIXES)
        if path.is_file() and not skipped:
            yield relative.as_posix(), path


def _dependency_files(name: str) -> Iterator[tuple[str, Path]]:
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        raise ValidationError(
            f"{name} is not installed here; the Lambda package needs it", field="dependencies"
        ) from None
    for file in dist.files or ():
        relative = Path(str(file))
        if relative.parts[0] == ".." or _SKIPPED_PARTS.intersection(relative.parts):
            continue  # scripts installed outside site-packages, and byte code
        if relative.name.endswith(_SKIPPED_SUFFIXES) or relative.name == "RECORD":
            continue
        path = Path(str(dist.locate_file(file)))
        if path.is_file():
            yield relative.as_posix(), path


def build(destination: Path) -> LambdaPackage:
    """Write the package into folder ``destination`` and return it (its name is content-addressed)."""
    runtime_name, architecture = runtime()
    entries: dict[str, Path] = dict(_package_files())
    for name in LAMBDA_DEPENDENCIES:
        entries.update(_dependency_files(name))
    bad = sorted({n.split("/", 1)[0] for n in entries} & FORBIDDEN_TOP_LEVEL)
    if bad:
        raise ValidationError(f"the Lambda package must not contain {', '.join(bad)}", field="dependencies")
    destination.mkdir(parents=True, exist_ok=True)
    scratch = destination / "batchlane-lambda.zip.partial"
    with zipfile.ZipFile(scratch, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16  # Lambda needs world-readable files
            archive.writestr(info, entries[name].read_bytes())
    digest = hashlib.sha256(scratch.read_bytes()).hexdigest()
    package = LambdaPackage(scratch, digest, runtime_name, architecture)
    final = destination / package.key_name
    scratch.replace(final)
    return LambdaPackage(final, digest, runtime_name, architecture)
