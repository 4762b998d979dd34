"""`batchlane serve` on hostile model archives: decompression bombs and members that escape the model folder.

Each case starts the real CLI as a subprocess and expects a one-line error, exit code 1 and nothing left in the
extraction cache (docs/reliability.md: decompression bomb; path traversal in archives).
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from batchlane.testing import free_port
from tests.models import CLI


class _Zeros(io.RawIOBase):
    """``size`` zero bytes, read in chunks (the bomb's payload without holding it in memory)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        count = min(len(buffer), self.left)
        buffer[:count] = bytes(count)
        self.left -= count
        return count


def _archive(
    path: Path, members: list[tuple[str, int | bytes]], symlink: tuple[str, str] | None = None
) -> Path:
    with tarfile.open(path, "w:gz", compresslevel=9) as tar:
        for name, payload in members:
            info = tarfile.TarInfo(name)
            if isinstance(payload, int):
                info.size = payload
                tar.addfile(info, io.BufferedReader(_Zeros(payload)))
            else:
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
        if symlink is not None:
            info = tarfile.TarInfo(symlink[0])
            info.type, info.linkname = tarfile.SYMTYPE, symlink[1]
            tar.addfile(info)
    return path


def _serve(archive: Path, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SAGEMAKER_", "SM_", "BATCHLANE_"))}
    clean.update(BATCHLANE_HOME=str(home), BATCHLANE_DEVICE="cpu", HF_HUB_OFFLINE="1", **env)
    args = [*CLI, "serve", "--model-dir", str(archive), "--port", str(free_port())]
    return subprocess.run(args, env=clean, capture_output=True, text=True, timeout=120)


def _assert_refused(done: subprocess.CompletedProcess[str], home: Path, message: str) -> None:
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], done.stderr
    cache = home / "models-extracted"
    leftovers = list(cache.iterdir()) if cache.exists() else []
    assert leftovers == [], f"extraction left {leftovers} behind"


def test_a_decompression_bomb_is_refused_from_its_headers(tmp_path: Path) -> None:
    # 80 MiB of zeros in a ~80 KB archive: over the 500x ratio cap once past its 64 MiB floor.
    bomb = _archive(tmp_path / "model.tar.gz", [("config.json", b"{}"), ("weights.bin", 80 << 20)])
    assert bomb.stat().st_size < 200_000
    done = _serve(bomb, tmp_path / "home")
    _assert_refused(done, tmp_path / "home", "refusing a likely decompression bomb")
    assert str(bomb) in done.stderr


def test_the_extracted_size_cap_is_a_setting(tmp_path: Path) -> None:
    weights = os.urandom(3 << 20)  # incompressible: under any ratio cap, over a 2 MB size cap
    archive = _archive(tmp_path / "model.tar.gz", [("config.json", b"{}"), ("weights.bin", weights)])
    done = _serve(archive, tmp_path / "home", BATCHLANE_MAX_MODEL_ARCHIVE_MB="2")
    _assert_refused(done, tmp_path / "home", f"extracts to more than {2 << 20} bytes")
    assert "BATCHLANE_MAX_MODEL_ARCHIVE_MB" in done.stderr


@pytest.mark.parametrize(
    ("members", "symlink", "message"),
    [
        ([("../escape.py", b"x = 1")], None, "points outside the model folder"),
        ([("/tmp/escape.py", b"x = 1")], None, "absolute path"),
        ([("config.json", b"{}")], ("code/inference.py", "../../outside.py"), "symbolic link"),
    ],
)
def test_members_escaping_the_model_folder_are_refused(
    members: list[tuple[str, int | bytes]], symlink: tuple[str, str] | None, message: str, tmp_path: Path
) -> None:
    archive = _archive(tmp_path / "model.tar.gz", members, symlink)
    done = _serve(archive, tmp_path / "home")
    _assert_refused(done, tmp_path / "home", message)
    assert not (tmp_path / "escape.py").exists()
