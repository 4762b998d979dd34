"""Listing transform inputs: S3Prefix (raw prefix) and ManifestFile, on a local folder and on moto's S3."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from batchlane.errors import ValidationError
from batchlane.storage import LocalStore, ObjectInfo, S3Store
from batchlane.transform.inputs import list_inputs, relative_key


@pytest.fixture()
def env(moto_server: str, aws_env: dict[str, str]) -> dict[str, str]:
    return {**aws_env, "AWS_ENDPOINT_URL": moto_server}


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for key in ("test/a.csv", "test/sub/b.csv", "test_small/c.csv", "train/d.csv"):
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(key)
    return root


def test_s3prefix_local_raw_prefix(data: Path) -> None:
    store, objects, prefix = list_inputs("S3Prefix", str(data / "test"))
    assert isinstance(store, LocalStore) and store.root == data.resolve()
    assert prefix == "test"
    assert [o.key for o in objects] == ["test/a.csv", "test/sub/b.csv", "test_small/c.csv"]
    assert [relative_key(o.key, prefix) for o in objects] == [
        "test/a.csv",
        "test/sub/b.csv",
        "test_small/c.csv",
    ]


def test_s3prefix_local_folder_uri(data: Path) -> None:
    store, objects, prefix = list_inputs("S3Prefix", (data / "test").as_uri() + "/")
    assert store.root == (data / "test").resolve() and prefix == ""
    assert [(o.key, o.size) for o in objects] == [("a.csv", 10), ("sub/b.csv", 14)]


def test_empty_prefix_is_refused(data: Path, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"no input objects under .*/data/nothing") as info:
        list_inputs("S3Prefix", str(data / "nothing"))
    assert info.value.field == "TransformInput.DataSource.S3DataSource.S3Uri"
    with pytest.raises(ValidationError, match="no input objects"):
        list_inputs("S3Prefix", str(tmp_path / "missing-folder") + "/")


def test_unsupported_data_type(data: Path) -> None:
    with pytest.raises(ValidationError, match="S3Prefix or ManifestFile"):
        list_inputs("AugmentedManifestFile", str(data))


def test_relative_key() -> None:
    assert relative_key("data/test_small/a.csv", "data/test") == "test_small/a.csv"
    assert relative_key("data/in/x/y.csv", "data/in/") == "x/y.csv"
    assert relative_key("a.csv", "") == "a.csv"
    with pytest.raises(ValidationError):
        relative_key("other/a.csv", "data/in/")


def test_s3prefix_on_s3(s3_bucket: str, env: dict[str, str], moto_server: str) -> None:
    raw = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    for key in ("in/test/a.jsonl", "in/test_small/b.jsonl", "in/train/c.jsonl", "out/in/test/x.out"):
        raw.put_object(Bucket=s3_bucket, Key=key, Body=b"{}\n")
    store, objects, prefix = list_inputs("S3Prefix", f"s3://{s3_bucket}/in/test", env)
    assert isinstance(store, S3Store) and store.bucket == s3_bucket
    assert objects == [ObjectInfo("in/test/a.jsonl", 3), ObjectInfo("in/test_small/b.jsonl", 3)]
    assert [relative_key(o.key, prefix) for o in objects] == ["test/a.jsonl", "test_small/b.jsonl"]
    with pytest.raises(ValidationError, match=f"no input objects under s3://{s3_bucket}/nothing/"):
        list_inputs("S3Prefix", f"s3://{s3_bucket}/nothing/", env)


def test_local_manifest_listing_s3_objects(
    s3_bucket: str, env: dict[str, str], moto_server: str, tmp_path: Path
) -> None:
    raw = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    for key, body in (("p/x/1.csv", b"a"), ("p/x/2.csv", b"bb"), ("p/y/3.csv", b"ccc")):
        raw.put_object(Bucket=s3_bucket, Key=key, Body=body)
    manifest = tmp_path / "m.manifest"
    manifest.write_text(json.dumps([{"prefix": f"s3://{s3_bucket}/p/"}, "y/3.csv", "x/1.csv", "x/2.csv"]))
    store, objects, prefix = list_inputs("ManifestFile", str(manifest), env)
    assert isinstance(store, S3Store) and prefix == "p/"
    assert objects == [ObjectInfo("p/y/3.csv", 3), ObjectInfo("p/x/1.csv", 1), ObjectInfo("p/x/2.csv", 2)]
    assert [relative_key(o.key, prefix) for o in objects] == ["y/3.csv", "x/1.csv", "x/2.csv"]


def test_s3_manifest_many_entries(s3_bucket: str, env: dict[str, str], moto_server: str) -> None:
    raw = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    keys = [f"d/part-{i:02d}" for i in range(20)]
    for key in keys:
        raw.put_object(Bucket=s3_bucket, Key=key, Body=b"x")
    body = json.dumps([{"prefix": f"s3://{s3_bucket}/d/part-"}] + [k.removeprefix("d/part-") for k in keys])
    raw.put_object(Bucket=s3_bucket, Key="manifests/m.json", Body=body.encode())
    store, objects, prefix = list_inputs("ManifestFile", f"s3://{s3_bucket}/manifests/m.json", env)
    assert [o.key for o in objects] == keys and prefix == "d/part-"
    assert relative_key(objects[0].key, prefix) == "part-00"
    raw.delete_object(Bucket=s3_bucket, Key=keys[13])
    with pytest.raises(
        ValidationError, match=rf"m\.json entry 14: object s3://{s3_bucket}/d/part-13 does not exist"
    ):
        list_inputs("ManifestFile", f"s3://{s3_bucket}/manifests/m.json", env)


def write_manifest(tmp_path: Path, content: object) -> str:
    path = tmp_path / "bad.manifest"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ({"prefix": "x"}, "must be a JSON array"),
        ([], "must be a JSON array"),
        (["a.csv"], "entry 0: the first element must be"),
        ([{"prefix": ""}], "entry 0: the first element must be"),
        ([{"prefix": "http://169.254.169.254/"}, "a"], "entry 0: bad prefix: .*unsupported scheme"),
        ([{"prefix": "DATA/"}, "test/a.csv", 7], "entry 2: must be a non-empty string"),
        ([{"prefix": "DATA/"}, "test/a.csv", ""], "entry 2: must be a non-empty string"),
        ([{"prefix": "DATA/"}, "test/a.csv", "test/a.csv"], "entry 2: duplicates entry 1"),
        (
            [{"prefix": "DATA/"}, "test/a.csv", "test/none.csv"],
            "entry 2: object .*test/none.csv does not exist",
        ),
        (
            [{"prefix": "DATA/"}, "../../../etc/passwd"],
            r"entry 1: object key '\.\./\.\./\.\./etc/passwd' contains",
        ),
        ([{"prefix": "DATA/"}], "no input objects under .*the manifest lists no entries"),
    ],
)
def test_bad_manifests_name_manifest_and_entry(
    tmp_path: Path, data: Path, content: object, message: str
) -> None:
    if (
        isinstance(content, list)
        and content
        and isinstance(content[0], dict)
        and content[0]["prefix"] == "DATA/"
    ):
        content = [{"prefix": str(data) + "/"}, *content[1:]]
    uri = write_manifest(tmp_path, content)
    with pytest.raises(ValidationError, match=message) as info:
        list_inputs("ManifestFile", uri)
    assert "bad.manifest" in str(info.value)


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="does not exist"):
        list_inputs("ManifestFile", str(tmp_path / "none.manifest"))
    with pytest.raises(ValidationError, match="must name a manifest object"):
        list_inputs("ManifestFile", str(tmp_path) + "/")
