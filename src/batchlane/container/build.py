"""``batchlane container build``: stage the CPU torch wheel into the build context and run ``docker build``.

The context is a batchlane checkout (deploy/Dockerfile, src/, pyproject.toml, constraints.txt); .dockerignore keeps
everything else out. PyPI's torch is the CUDA build, so the CPU image installs the wheel pinned in constraints.txt
(``torch==<version>+cpu``) from ``deploy/wheels/``, copied there from ``--torch-wheel`` or pip's find-links folders.
The GPU image (deploy/Dockerfile.gpu) installs PyPI's CUDA torch of the same version and needs no staging.
"""

from __future__ import annotations

import filecmp
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from batchlane.errors import NotFound, ValidationError

DEFAULT_TAG = "batchlane:latest"
DEFAULT_BASE_IMAGE = "python:3.11-slim"
DEFAULT_GPU_BASE_IMAGE = "nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04"
WHEELS_DIR = Path("deploy") / "wheels"
NETWORKS = ("default", "host", "none")


@dataclass(frozen=True)
class BuildPlan:
    """What ``container build`` does: the wheel to stage (CPU only) and the docker command."""

    context: Path
    dockerfile: Path
    tag: str
    base_image: str
    torch_wheel: Path | None
    argv: list[str] = field(default_factory=list)


def torch_pin(constraints: Path) -> str:
    """The torch version constraints.txt pins (``2.13.0+cpu``)."""
    for line in constraints.read_text().splitlines():
        match = re.fullmatch(r"\s*torch\s*==\s*(\S+)\s*(#.*)?", line)
        if match:
            return match.group(1)
    raise ValidationError(
        f"{constraints}: no `torch==<version>` line to pin the image's torch", field="constraints"
    )


def pip_find_links() -> list[Path]:
    """The folders pip finds links in: ``$PIP_FIND_LINKS`` and pip's configuration (``pip config list``)."""
    found = os.environ.get("PIP_FIND_LINKS", "").split()
    try:
        listed = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        listed = ""
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        if key.endswith("find-links"):
            found.extend(value.strip().strip("'\"").split())
    return [
        Path(item.removeprefix("file://"))
        for item in dict.fromkeys(found)
        if "://" not in item.removeprefix("file://")
    ]


def find_torch_wheel(version: str, explicit: Path | None = None) -> Path:
    """The CPU torch wheel of ``version`` for CPython 3.11 on x86_64 Linux: ``explicit`` or one in pip's folders."""
    if explicit is not None:
        if not explicit.is_file():
            raise NotFound(f"--torch-wheel {explicit}: no such file", field="torch_wheel")
        if not explicit.name.startswith(f"torch-{version}-"):
            raise ValidationError(
                f"--torch-wheel {explicit.name}: constraints.txt pins torch=={version}", field="torch_wheel"
            )
        return explicit
    folders = pip_find_links()
    for folder in folders:
        for wheel in sorted(folder.glob(f"torch-{version}-cp311-cp311-*x86_64.whl")):
            return wheel
    where = ", ".join(map(str, folders)) or "no find-links folders configured"
    raise NotFound(
        f"no torch-{version} wheel for cp311 x86_64 in pip's find-links folders ({where}); "
        "pass --torch-wheel PATH (the CPU wheel from https://download.pytorch.org/whl/cpu)",
        field="torch_wheel",
    )


def plan_build(
    context: Path,
    *,
    tag: str = DEFAULT_TAG,
    gpu: bool = False,
    base_image: str | None = None,
    network: str = "default",
    extras: str | None = None,
    torch_wheel: Path | None = None,
) -> BuildPlan:
    """Check the context and work out the docker command (stages nothing: :func:`stage` does)."""
    context = context.resolve()
    dockerfile = context / "deploy" / ("Dockerfile.gpu" if gpu else "Dockerfile")
    if not dockerfile.is_file() or not (context / "pyproject.toml").is_file():
        raise NotFound(
            f"{context}: no deploy/{dockerfile.name} and pyproject.toml; run from a batchlane checkout or pass --context",
            field="context",
        )
    if network not in NETWORKS:
        raise ValidationError(
            f"--network must be one of {', '.join(NETWORKS)}, got {network!r}", field="network"
        )
    base = base_image or (DEFAULT_GPU_BASE_IMAGE if gpu else DEFAULT_BASE_IMAGE)
    wheel = None if gpu else find_torch_wheel(torch_pin(context / "constraints.txt"), torch_wheel)
    argv = ["docker", "build"]
    if network != "default":
        argv += ["--network", network]
    argv += ["-f", str(dockerfile), "--build-arg", f"BASE_IMAGE={base}"]
    if extras:
        argv += ["--build-arg", f"EXTRAS={extras}"]
    argv += ["-t", tag, str(context)]
    return BuildPlan(context, dockerfile, tag, base, wheel, argv)


def stage(plan: BuildPlan) -> Path | None:
    """Copy the torch wheel into ``deploy/wheels/`` (only it: older wheels there are removed); return its path.

    An identical file already there is kept, so Docker's layer cache sees the same context.
    """
    if plan.torch_wheel is None:
        return None
    folder = plan.context / WHEELS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / plan.torch_wheel.name
    for old in folder.glob("torch-*.whl"):
        if old.name != target.name:
            old.unlink()
    if not (target.is_file() and filecmp.cmp(plan.torch_wheel, target, shallow=False)):
        shutil.copyfile(plan.torch_wheel, target)
    return target


def staging_command(plan: BuildPlan) -> str | None:
    """The shell line equivalent to :func:`stage`, for ``--dry-run``."""
    if plan.torch_wheel is None:
        return None
    return f"mkdir -p {plan.context / WHEELS_DIR} && cp {plan.torch_wheel} {plan.context / WHEELS_DIR}/"
