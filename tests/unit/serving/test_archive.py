"""model.tar.gz: safe extraction (traversal, links, devices) and packaging in the SageMaker layout."""

from __future__ import annotations

import io
import stat
import tarfile
from pathlib import Path

import pytest

from batchlane.errors import ModelLoadError, ValidationError
from batchlane.examples.user_code import example_path
from batchlane.serving.archive import UnsafeArchive, package_model, resolve_model_dir, safe_extract


def _tar(path: Path, *members: tuple[str, str, str]) -> Path:
    """Write a tar.gz with (name, kind, data-or-link-target) members."""
    with tarfile.open(path, "w:gz") as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                data = payload.encode()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                continue
            info.type = {
                "dir": tarfile.DIRTYPE,
                "symlink": tarfile.SYMTYPE,
                "hardlink": tarfile.LNKTYPE,
                "chardev": tarfile.CHRTYPE,
                "fifo": tarfile.FIFOTYPE,
            }[kind]
            info.linkname = payload
            tar.addfile(info)
    return path


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (("/etc/evil", "file", "x"), "absolute path"),
        (("../evil", "file", "x"), "outside the model folder"),
        (("code/../../evil", "file", "x"), "outside the model folder"),
        (("link", "symlink", "/etc/passwd"), "symbolic link to '/etc/passwd'"),
        (("code/link", "symlink", "../../outside"), "symbolic link"),
        (("hard", "hardlink", "../outside"), "hard link"),
        (("dev", "chardev", ""), "device, FIFO"),
        (("pipe", "fifo", ""), "device, FIFO"),
    ],
)
def test_unsafe_members_are_rejected(member: tuple[str, str, str], message: str, tmp_path: Path) -> None:
    archive = _tar(tmp_path / "model.tar.gz", ("config.json", "file", "{}"), member)
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(UnsafeArchive, match=message):
        safe_extract(archive, dest)
    assert list(dest.iterdir()) == []  # nothing written when any member is unsafe
    assert not (tmp_path / "evil").exists()


def test_links_inside_the_folder_are_fine(tmp_path: Path) -> None:
    archive = _tar(
        tmp_path / "model.tar.gz",
        ("weights/model.bin", "file", "w"),
        ("model.bin", "symlink", "weights/model.bin"),
        ("code/./inference.py", "file", "x = 1"),
        ("copy.bin", "hardlink", "weights/model.bin"),
    )
    safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "model.bin").read_text() == "w"
    assert (tmp_path / "out" / "code" / "inference.py").read_text() == "x = 1"
    assert (tmp_path / "out" / "copy.bin").read_text() == "w"


def test_resolve_model_dir_extracts_once(tmp_path: Path) -> None:
    archive = _tar(
        tmp_path / "model.tar.gz", ("config.json", "file", "{}"), ("code/inference.py", "file", "")
    )
    cache = tmp_path / "cache"
    first = resolve_model_dir(archive, cache)
    assert (first / "config.json").read_text() == "{}"
    assert resolve_model_dir(archive, cache) == first
    assert [p.name for p in cache.iterdir()] == [first.name]  # no staging folders left behind
    assert resolve_model_dir(tmp_path, cache) == tmp_path


@pytest.mark.parametrize(
    ("name", "message"), [("missing", "does not exist"), ("model.zip", "neither a model")]
)
def test_resolve_model_dir_errors(name: str, message: str, tmp_path: Path) -> None:
    if name.endswith(".zip"):
        (tmp_path / name).write_bytes(b"PK")
    with pytest.raises(ModelLoadError, match=message):
        resolve_model_dir(tmp_path / name, tmp_path / "cache")


def test_corrupt_archive_is_a_load_error(tmp_path: Path) -> None:
    (tmp_path / "model.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(ModelLoadError, match="cannot read model archive"):
        resolve_model_dir(tmp_path / "model.tar.gz", tmp_path / "cache")


def test_package_round_trip(tiny_bert_dir: Path, tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy\n")
    helpers = tmp_path / "helpers"
    helpers.mkdir()
    (helpers / "util.py").write_text("X = 1\n")
    output = tmp_path / "dist" / "model.tar.gz"
    package_model(
        tiny_bert_dir, output, code=[example_path("without_context"), helpers], requirements=requirements
    )
    with tarfile.open(output) as tar:
        names = sorted(tar.getnames())
        owners = {(m.uid, m.gid, m.uname) for m in tar.getmembers()}
    expected_model = sorted(p.name for p in tiny_bert_dir.iterdir())
    assert names == sorted([*expected_model, "code/inference.py", "code/requirements.txt", "code/util.py"])
    assert owners == {(0, 0, "")}
    assert stat.S_IMODE(output.stat().st_mode) == 0o644
    assert [p.name for p in output.parent.iterdir()] == ["model.tar.gz"]  # no temporary file left
    extracted = resolve_model_dir(output, tmp_path / "cache")
    assert (extracted / "code" / "inference.py").read_text() == example_path("without_context").read_text()
    assert (extracted / "config.json").read_bytes() == (tiny_bert_dir / "config.json").read_bytes()


def test_package_follows_links_and_replaces_code(tiny_bert_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "linked"
    (model / "code").mkdir(parents=True)
    (model / "code" / "old.py").write_text("old")
    for item in tiny_bert_dir.iterdir():
        (model / item.name).symlink_to(item)
    output = package_model(model, model / "model.tar.gz", code=[example_path("transform_fn")])
    with tarfile.open(output) as tar:
        assert all(m.isfile() for m in tar.getmembers())
        assert "code/old.py" not in tar.getnames() and "model.tar.gz" not in tar.getnames()


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"code": ["nope.py"]}, "--code"), ({"requirements": "r.txt"}, "--req")]
)
def test_package_errors(kwargs: dict, message: str, tiny_bert_dir: Path, tmp_path: Path) -> None:
    kwargs = {k: ([tmp_path / v[0]] if isinstance(v, list) else tmp_path / v) for k, v in kwargs.items()}
    with pytest.raises(ValidationError, match=message):
        package_model(tiny_bert_dir, tmp_path / "m.tar.gz", **kwargs)
    with pytest.raises(ValidationError, match="--model-dir"):
        package_model(tmp_path / "missing", tmp_path / "m.tar.gz")
