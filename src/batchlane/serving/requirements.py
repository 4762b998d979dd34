"""``code/requirements.txt``: pip-installed once per file into a cached folder the user module imports from.

SageMaker's inference toolkits run ``pip install -r code/requirements.txt`` into the container's own Python before
the model server starts. batchlane installs the same file before it imports ``inference.py``, but not into its own
environment (docs/serving.md, "code/requirements.txt"):

* The packages go to ``<cache>/<file key>-<environment key>/``, a virtual-environment layout whose site-packages is
  appended to ``sys.path`` (after batchlane's own), so the next start with the same file, the same interpreter and
  the same installed packages reuses the folder without running pip.
* Every distribution in batchlane's environment is pinned at its installed version (``pip install -c``): a
  requirements file can add packages but never replace torch, transformers or numpy. One that needs another version
  fails with pip's conflict, named in the error.
* A lock file per key makes servers that start at once install one copy; pip writes into a temporary sibling that is
  renamed into place only once pip succeeded, so a failed or killed install is never used.

How pip sees batchlane's packages: while pip runs, the folder's site-packages holds a ``.pth`` file that adds
batchlane's site directories. pip (batchlane's own copy, imported through that file) then counts them as installed,
so satisfied dependencies are not downloaded again, installs only what is missing, and refuses to uninstall anything
outside the folder. The ``.pth`` file is removed before the folder is renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import logging
import os
import re
import shutil
import signal
import site
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import venv
from collections.abc import Iterator
from pathlib import Path

from batchlane.errors import ModelLoadError

logger = logging.getLogger(__name__)

REQUIREMENTS_FILE = "requirements.txt"
CONSTRAINTS_FILE = "batchlane-constraints.txt"
PIP_LOG = "pip.log"
LINK_PTH = "_batchlane_environment.pth"
# pip settings that would send files elsewhere than the cache folder: into batchlane's environment or the user site.
PIP_DESTINATION_VARS = ("PIP_TARGET", "PIP_PREFIX", "PIP_ROOT", "PIP_USER")
# What ``name==version`` in a constraints file accepts; anything else (a legacy version) is left unpinned.
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")
_VERSION = re.compile(r"^(?:[0-9]+!)?[0-9]+(?:\.[0-9]+)*[A-Za-z0-9.+_-]*$")
_CONFLICT = "The conflict is caused by:"


class RequirementsError(ModelLoadError):
    """``pip install -r code/requirements.txt`` failed; the message names the file and pip's reason."""


def _name_and_version(dist: importlib.metadata.Distribution) -> tuple[str, str]:
    # Only the header: ``dist.metadata`` parses the whole file as e-mail, ~3 ms a package, too slow for every start.
    name = version = ""
    for line in (dist.read_text("METADATA") or dist.read_text("PKG-INFO") or "").splitlines():
        if not line:
            break
        if line.startswith("Name:"):
            name = line[5:].strip()
        elif line.startswith("Version:"):
            version = line[8:].strip()
    return name, version


def pinned_distributions() -> list[str]:
    """``name==version`` for every distribution importable by this interpreter (the first found wins, as imports)."""
    pins: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name, version = _name_and_version(dist)
        if not _NAME.match(name) or not _VERSION.match(version):
            continue
        key = re.sub(r"[-_.]+", "-", name).lower()
        pins.setdefault(key, f"{key}=={version}")
    return sorted(pins.values())


def cache_key(requirements: bytes, constraints: str) -> str:
    """The cache folder's name: 16 hex of the file's sha256, then 16 of the environment it is installed against.

    The environment part covers the pinned packages and the interpreter's ABI and platform, so upgrading batchlane's
    environment installs the file again instead of reusing packages resolved against the old one.
    """
    environment = "\n".join(
        (constraints, sys.implementation.cache_tag or "", sys.abiflags, sysconfig.get_platform())
    )
    file_part = hashlib.sha256(requirements).hexdigest()[:16]
    return f"{file_part}-{hashlib.sha256(environment.encode()).hexdigest()[:16]}"


def site_dirs(prefix: Path) -> list[Path]:
    """The site-packages folders of the virtual-environment layout at ``prefix`` (purelib, then platlib if apart)."""
    paths = sysconfig.get_paths(scheme="venv", vars={"base": str(prefix), "platbase": str(prefix)})
    return list(dict.fromkeys(Path(paths[key]) for key in ("purelib", "platlib")))


def summarize_pip_output(output: str) -> str:
    """pip's reason in one line: its last ``ERROR:`` line, plus the requests it names when versions conflict."""
    lines = [line.rstrip() for line in output.splitlines()]
    errors = [
        line.removeprefix("ERROR:").strip()
        for line in lines
        if line.startswith("ERROR:") and not line.startswith("ERROR: ResolutionImpossible")
    ]
    text = [line.strip() for line in lines if line.strip()]
    reason = errors[-1] if errors else (text[-1] if text else "pip printed nothing")
    if _CONFLICT in text:
        causes = []
        for line in text[text.index(_CONFLICT) + 1 :]:
            if line.startswith(("To fix this", "ERROR:")):
                break
            causes.append(line)
        if causes:
            reason = f"{reason.rstrip('.')}: {'; '.join(causes)}"
            if any("(constraint)" in cause for cause in causes):
                reason += "; batchlane keeps the packages of its own environment at their installed versions"
    return reason


def _batchlane_site_dirs() -> list[str]:
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return [d for d in dict.fromkeys(dirs) if os.path.isdir(d)]


@contextlib.contextmanager
def _locked(path: Path, requirements: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (``flock``; released by the kernel if this process dies)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, the rename still keeps a half-done install out of use
        yield
        return
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("another server is installing %s; waiting for it", requirements)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _terminate_raises() -> Iterator[None]:
    """Turn SIGTERM into ``SystemExit`` while pip runs, so pip is killed and the temporary folder removed.

    A launcher that gives up waiting (the transform's start-up timeout) sends SIGTERM; Python's default action would
    end this process at once and leave pip running on its own.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _remove_stale(cache_dir: Path, key: str) -> None:
    # Left by a process killed with SIGKILL; only the lock holder installs this key, so none is in use.
    for stale in cache_dir.glob(f".{key}-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _pip(staging: Path, requirements: Path, constraints: Path) -> subprocess.CompletedProcess[str]:
    python = staging / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    command = [
        str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
        "--no-warn-script-location", "-r", str(requirements), "-c", str(constraints),
    ]  # fmt: skip
    env = {name: value for name, value in os.environ.items() if name not in PIP_DESTINATION_VARS}
    # Relative paths in the file (a local package, --find-links ./wheels) are relative to code/.
    return subprocess.run(
        command,
        cwd=requirements.parent,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        check=False,
    )


def _install(requirements: Path, staging: Path, constraints: str) -> None:
    started = time.monotonic()
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(staging)
    link = site_dirs(staging)[0] / LINK_PTH
    link.write_text("".join(f"import site; site.addsitedir({d!r})\n" for d in _batchlane_site_dirs()))
    (staging / CONSTRAINTS_FILE).write_text(constraints)
    logger.info("installing %s (pip, into %s)", requirements, staging.parent)
    try:
        result = _pip(staging, requirements, staging / CONSTRAINTS_FILE)
    except OSError as exc:
        raise RequirementsError(f"installing {requirements} failed: cannot run pip: {exc}") from exc
    (staging / PIP_LOG).write_text(result.stdout)
    link.unlink()
    if result.returncode != 0:
        for line in result.stdout.strip().splitlines()[-40:]:
            logger.error("pip: %s", line)
        raise RequirementsError(
            f"installing {requirements} failed: {summarize_pip_output(result.stdout)} "
            "(--no-install-requirements skips the install)"
        )
    logger.info("installed %s in %.1f s", requirements, time.monotonic() - started)


def ensure_installed(requirements: Path, cache_dir: Path) -> Path:
    """The cache folder holding ``requirements``' packages, running pip only when no finished folder exists yet.

    Raises ``RequirementsError`` (a ``ModelLoadError``) naming the file and pip's reason when pip fails; nothing is
    cached then, so the next start tries again.
    """
    # pip runs in code/, so both paths must not be relative to here.
    requirements, cache_dir = requirements.resolve(), cache_dir.absolute()
    constraints = "".join(f"{pin}\n" for pin in pinned_distributions())
    key = cache_key(requirements.read_bytes(), constraints)
    target = cache_dir / key
    if target.is_dir():
        logger.info("%s: using the packages installed earlier in %s", requirements, target)
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir / f"{key}.lock", requirements):
        if target.is_dir():
            logger.info("%s: using the packages another server installed in %s", requirements, target)
            return target
        _remove_stale(cache_dir, key)
        staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache_dir))
        try:
            with _terminate_raises():
                _install(requirements, staging, constraints)
            staging.chmod(0o755)  # mkdtemp's 0700 would hide the packages from other users of a shared home
            try:
                staging.rename(target)
            except OSError:
                if not target.is_dir():  # not a lost race (a system without flock): a real failure
                    raise
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return target


def activate(requirements: Path, cache_dir: Path) -> Path:
    """Install ``requirements`` if needed (``ensure_installed``) and make its packages importable.

    The folder's site-packages go to the end of ``sys.path`` (with their ``.pth`` files processed), after
    batchlane's own: nothing there can shadow a module batchlane already provides.
    """
    target = ensure_installed(requirements, cache_dir)
    for directory in site_dirs(target):
        if directory.is_dir() and str(directory) not in sys.path:
            site.addsitedir(str(directory))
    return target
