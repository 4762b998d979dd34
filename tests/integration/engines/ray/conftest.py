"""Fixtures of the ray engine's tests: one real local Ray per module (``ray.init(num_cpus=2)``), inputs, and the
local engine's outputs to compare with."""

from __future__ import annotations

import gzip
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_session() -> Iterator[Any]:
    """A local Ray of this module's own (its own temp folder), shut down after the module."""
    import ray

    temp = tempfile.mkdtemp(prefix="blray-", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
    yield ray
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


def write_lines(root: Path, files: dict[str, int]) -> Path:
    """Text files of numbered lines under ``root/in`` (``{"sub/a.txt": 40}``); returns the folder."""
    folder = root / "in"
    for key, lines in files.items():
        path = folder / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{key} line {i}\n" for i in range(lines)))
    return folder


def write_gzip(root: Path, files: dict[str, int]) -> Path:
    folder = root / "in"
    folder.mkdir(parents=True, exist_ok=True)
    for key, lines in files.items():
        (folder / key).write_bytes(gzip.compress("".join(f"{key},{i}\n" for i in range(lines)).encode()))
    return folder


def write_jsonlines(root: Path, files: dict[str, int]) -> Path:
    folder = root / "in"
    folder.mkdir(parents=True, exist_ok=True)
    for key, lines in files.items():
        rows = (json.dumps({"id": i, "text": f"{key} {i}", "extra": "dropped"}) for i in range(lines))
        (folder / key).write_text("\n".join(rows) + "\n")
    return folder
