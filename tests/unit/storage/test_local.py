"""LocalStore and the storage factory: key safety, raw-prefix listing, atomic writes, URI mapping."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from batchlane.errors import NotFound, StorageError, ValidationError
from batchlane.storage import LocalStore, ObjectInfo, ObjectStore, join_key, open_store, parse_uri
from batchlane.storage.local import TEMP_SUFFIX


@pytest.fixture()
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "root")


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(TEMP_SUFFIX)]


HOSTILE_KEYS = [
    pytest.param("a/../../x", "'..' segment", id="dotdot-escape"),
    pytest.param("..", "'..' segment", id="dotdot"),
    pytest.param("a/..", "'..' segment", id="trailing-dotdot"),
    pytest.param("./a", "'.' segment", id="dot"),
    pytest.param("/abs", "absolute", id="absolute"),
    pytest.param("/etc/passwd", "absolute", id="absolute-etc"),
    pytest.param("a//b", "empty segment", id="double-slash"),
    pytest.param("a/", "empty segment", id="trailing-slash"),
    pytest.param("a\x00b", "NUL", id="nul"),
    pytest.param("a\\..\\..\\x", "backslash", id="backslash"),
    pytest.param("x" * 1025, "longer than 1024 bytes", id="too-long"),
    pytest.param("é" * 513, "longer than 1024 bytes", id="too-long-utf8"),
    pytest.param("d/" + "y" * 256, "segment longer than 255", id="long-segment"),
    pytest.param("", "must not be empty", id="empty"),
]


@pytest.mark.parametrize(("key", "reason"), HOSTILE_KEYS)
def test_hostile_keys_are_refused_for_every_operation(store: LocalStore, key: str, reason: str) -> None:
    for operation in (
        lambda: store.write_bytes(key, b"x"),
        lambda: store.read_bytes(key),
        lambda: store.open(key),
        lambda: store.exists(key),
        lambda: store.delete(key),
        lambda: store.writer(key).__enter__(),
    ):
        with pytest.raises(ValidationError, match=reason):
            operation()
    assert not any(store.root.parent.rglob("x")), "nothing may be written anywhere"


def test_hostile_key_error_names_the_key(store: LocalStore) -> None:
    with pytest.raises(ValidationError, match=r"a/\.\./\.\./x"):
        store.write_bytes("a/../../x", b"x")


def test_percent_and_lookalike_keys_stay_literal_inside_root(store: LocalStore) -> None:
    for key in ("%2e%2e/x", "\uff0e\uff0e/x", "a b/c.txt"):
        store.write_bytes(key, b"ok")
        assert (store.root / key).read_bytes() == b"ok"


def test_symlink_escaping_root_is_refused(tmp_path: Path, store: LocalStore) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    store.root.mkdir()
    (store.root / "link").symlink_to(outside)
    (store.root / "file-link").symlink_to(outside / "secret")
    with pytest.raises(ValidationError, match="outside the store root"):
        store.write_bytes("link/x", b"x")
    with pytest.raises(ValidationError, match="outside the store root"):
        store.read_bytes("file-link")
    assert not (outside / "x").exists()
    assert [o.key for o in store.list("")] == []


def test_symlink_inside_root_is_followed(store: LocalStore) -> None:
    store.write_bytes("real/a.txt", b"abc")
    (store.root / "alias.txt").symlink_to(store.root / "real" / "a.txt")
    assert store.read_bytes("alias.txt") == b"abc"
    assert [o.key for o in store.list("")] == ["alias.txt", "real/a.txt"]


def test_round_trip_and_protocol(store: LocalStore) -> None:
    assert isinstance(store, ObjectStore)
    store.write_bytes("a/b/c.jsonl", b'{"x": 1}\n')
    assert store.read_bytes("a/b/c.jsonl") == b'{"x": 1}\n'
    with store.open("a/b/c.jsonl") as stream:
        assert stream.read(4) == b'{"x"'
    assert store.exists("a/b/c.jsonl")
    assert not store.exists("a/b")  # folders are not objects
    assert store.info("a/b/c.jsonl") == ObjectInfo("a/b/c.jsonl", 9)
    store.delete("a/b/c.jsonl")
    store.delete("a/b/c.jsonl")  # deleting a missing key is fine
    assert not store.exists("a/b/c.jsonl")
    with pytest.raises(NotFound, match="does not exist"):
        store.read_bytes("a/b/c.jsonl")
    with pytest.raises(NotFound):
        store.open("a")  # a directory


def test_new_files_get_normal_permissions(store: LocalStore) -> None:
    store.write_bytes("p.txt", b"x")
    mode = (store.root / "p.txt").stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_list_uses_raw_string_prefix(store: LocalStore) -> None:
    for key in ("test/a.csv", "test_small/b.csv", "test_small/sub/c.csv", "tests.csv", "train/d.csv", "te"):
        store.write_bytes(key, key.encode())
    assert [o.key for o in store.list("test")] == [
        "test/a.csv",
        "test_small/b.csv",
        "test_small/sub/c.csv",
        "tests.csv",
    ]
    assert [o.key for o in store.list("test/")] == ["test/a.csv"]
    assert [o.key for o in store.list("test_small/s")] == ["test_small/sub/c.csv"]
    assert [o.key for o in store.list("")] == sorted(
        ["te", "test/a.csv", "test_small/b.csv", "test_small/sub/c.csv", "tests.csv", "train/d.csv"]
    )
    assert list(store.list("nothing/here")) == []
    assert next(iter(store.list("tests.csv"))) == ObjectInfo("tests.csv", len(b"tests.csv"))


def test_list_refuses_hostile_prefix(store: LocalStore) -> None:
    with pytest.raises(ValidationError):
        list(store.list("../"))
    with pytest.raises(ValidationError):
        list(store.list("/etc"))


def test_list_on_missing_root_is_empty(tmp_path: Path) -> None:
    assert list(LocalStore(tmp_path / "missing").list("")) == []


def test_atomic_write_error_in_block_keeps_old_content_and_no_temp(store: LocalStore) -> None:
    store.write_bytes("out/a.out", b"old")
    with pytest.raises(RuntimeError, match="boom"), store.writer("out/a.out") as stream:
        stream.write(b"half of the new")
        assert temp_files(store.root), "the new bytes go to a temp file"
        assert store.read_bytes("out/a.out") == b"old", "not visible before a clean exit"
        raise RuntimeError("boom")
    assert store.read_bytes("out/a.out") == b"old"
    assert temp_files(store.root) == []


def test_atomic_write_error_leaves_nothing_for_a_new_key(store: LocalStore) -> None:
    with pytest.raises(RuntimeError), store.writer("new/x.out") as stream:
        stream.write(b"partial")
        raise RuntimeError("stop")
    assert not store.exists("new/x.out")
    assert temp_files(store.root) == []


def test_temp_files_are_not_listed(store: LocalStore) -> None:
    with store.writer("d/a.out") as stream:
        stream.write(b"x")
        assert [o.key for o in store.list("d/")] == []
    assert [o.key for o in store.list("d/")] == ["d/a.out"]


def test_disk_full_becomes_storage_error_naming_path(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.write_bytes("o/full.out", b"old")

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("batchlane.storage.local.os.fsync", no_space)
    with pytest.raises(StorageError, match=r"No space left on device writing .*o/full\.out"):
        store.write_bytes("o/full.out", b"new")
    monkeypatch.undo()
    assert store.read_bytes("o/full.out") == b"old"
    assert temp_files(store.root) == []


def test_write_below_a_file_is_storage_error(store: LocalStore) -> None:
    store.write_bytes("f", b"file")
    with pytest.raises(StorageError, match="writing"):
        store.write_bytes("f/child", b"x")


def test_remove_stale_temps(store: LocalStore) -> None:
    store.write_bytes("a/keep.txt", b"x")
    stale = store.root / "a" / f".keep.txt.0123{TEMP_SUFFIX}"
    stale.write_bytes(b"torn")
    os.utime(stale, (1, 1))
    fresh = store.root / "a" / f".other.4567{TEMP_SUFFIX}"
    fresh.write_bytes(b"in flight")
    assert store.remove_stale_temps("a/", older_than_s=60) == [str(stale)]
    assert fresh.exists() and store.exists("a/keep.txt")


@pytest.mark.parametrize(
    ("uri", "root", "key"),
    [
        ("/data/in/part", "/data/in", "part"),
        ("/data/in/", "/data/in", ""),
        ("file:///data/in/part", "/data/in", "part"),
        ("file:///data/in/", "/data/in", ""),
        ("/data/in/../out/p", "/data/out", "p"),  # a library caller's own path: '..' is folded
        ("file://localhost/data/x%20y", "/data", "x y"),
        ("/", "/", ""),
    ],
)
def test_parse_local_uris(uri: str, root: str, key: str) -> None:
    parsed = parse_uri(uri)
    assert parsed == ("file", root, key)


def test_open_store_relative_path_uses_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store, key = open_store("data/in/part")
    assert isinstance(store, LocalStore)
    assert store.root == Path(os.path.realpath(tmp_path / "data" / "in"))
    assert key == "part"


def test_open_store_round_trips_url_for(store: LocalStore) -> None:
    store.write_bytes("sub/a b.txt", b"x")
    other, key = open_store(store.url_for("sub/a b.txt"))
    assert other.read_bytes(key) == b"x"
    assert store.url_for("sub/").endswith("/sub/")


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("http://169.254.169.254/latest", "unsupported scheme 'http'"),
        ("https://example.com/x", "unsupported scheme 'https'"),
        ("ftp://x/y", "unsupported scheme"),
        ("s3://", "valid S3 bucket"),
        ("s3:///key", "valid S3 bucket"),
        ("s3://a/x", "valid S3 bucket"),
        ("file://evil.example/x", "must not name a host"),
        ("", "must not be empty"),
        ("s3://bucket/" + "k" * 1100, "at most 1024"),
        ("/a\x00b", "NUL"),
    ],
)
def test_bad_uris_are_validation_errors(uri: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        open_store(uri, {})


def test_parse_s3_uri() -> None:
    assert parse_uri("s3://bucket/some/prefix") == ("s3", "bucket", "some/prefix")
    assert parse_uri("s3://bucket") == ("s3", "bucket", "")
    assert parse_uri("S3://bucket/a//b") == ("s3", "bucket", "a//b")


@pytest.mark.parametrize(
    ("parts", "joined"),
    [
        (("out", "a.csv.out"), "out/a.csv.out"),
        (("out/", "a.csv.out"), "out/a.csv.out"),
        (("out/", "/a.csv.out"), "out/a.csv.out"),
        (("", "a"), "a"),
        (("a", ""), "a"),
        (("a", "b/", "c/"), "a/b/c/"),
        ((), ""),
    ],
)
def test_join_key(parts: tuple[str, ...], joined: str) -> None:
    assert join_key(*parts) == joined
