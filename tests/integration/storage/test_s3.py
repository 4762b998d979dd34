"""S3Store against moto's S3 server on a loopback port: listing, streaming reads, atomic and multipart writes."""

from __future__ import annotations

import os

import boto3
import pytest

from batchlane.errors import NotFound, StorageError
from batchlane.storage import ObjectInfo, ObjectStore, S3Store, make_s3_client, open_store

MIB = 1 << 20


@pytest.fixture()
def env(moto_server: str, aws_env: dict[str, str]) -> dict[str, str]:
    return {**aws_env, "AWS_ENDPOINT_URL": moto_server}


@pytest.fixture()
def raw(moto_server: str):
    return boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")


def in_progress_uploads(raw, bucket: str) -> list[dict]:
    return raw.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def test_open_store_uses_endpoint_from_env(s3_bucket: str, env: dict[str, str]) -> None:
    store, key = open_store(f"s3://{s3_bucket}/some/prefix", env)
    assert isinstance(store, S3Store) and isinstance(store, ObjectStore)
    assert key == "some/prefix"
    assert store.url == f"s3://{s3_bucket}"
    assert store.client.meta.endpoint_url == env["AWS_ENDPOINT_URL"]


def test_endpoint_precedence(moto_server: str, aws_env: dict[str, str]) -> None:
    specific = make_s3_client(
        {**aws_env, "AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ENDPOINT_URL_S3": moto_server}
    )
    assert specific.meta.endpoint_url == moto_server
    assert make_s3_client(
        {**aws_env, "AWS_REGION": "eu-west-1", "AWS_ENDPOINT_URL": moto_server}
    ).meta.region_name == ("eu-west-1")


def test_round_trip_and_streaming_read(s3_bucket: str, env: dict[str, str]) -> None:
    store = S3Store(s3_bucket, env=env)
    data = b"".join(b"line %d\n" % i for i in range(20000))
    store.write_bytes("in/a.jsonl", data)
    assert store.exists("in/a.jsonl") and not store.exists("in/a")
    assert store.info("in/a.jsonl") == ObjectInfo("in/a.jsonl", len(data))
    with store.open("in/a.jsonl") as stream:
        first = stream.readline()
        rest = stream.read()
    assert first + rest == data
    assert store.read_bytes("in/a.jsonl") == data
    assert store.url_for("in/a.jsonl") == f"s3://{s3_bucket}/in/a.jsonl"
    store.delete("in/a.jsonl")
    store.delete("in/a.jsonl")
    with pytest.raises(NotFound, match=f"s3://{s3_bucket}/in/a.jsonl does not exist"):
        store.open("in/a.jsonl")


def test_list_raw_prefix_and_pagination(s3_bucket: str, env: dict[str, str], raw) -> None:
    keys = [f"test/{i:03d}.csv" for i in range(23)] + ["test_small/x.csv", "tests.csv", "train/y.csv"]
    for key in keys:
        raw.put_object(Bucket=s3_bucket, Key=key, Body=b"abc")
    raw.put_object(Bucket=s3_bucket, Key="test/folder/", Body=b"")  # console folder marker
    store = S3Store(s3_bucket, env=env, page_size=5)
    listed = list(store.list("test"))
    assert [o.key for o in listed] == sorted(k for k in keys if k.startswith("test"))
    assert all(o.size == 3 for o in listed)
    assert [o.key for o in store.list("test/")] == [f"test/{i:03d}.csv" for i in range(23)]
    assert list(store.list("nope")) == []


def test_writer_is_atomic_on_error(s3_bucket: str, env: dict[str, str]) -> None:
    store = S3Store(s3_bucket, env=env)
    store.write_bytes("out/a.out", b"old")
    with pytest.raises(RuntimeError), store.writer("out/a.out") as stream:
        stream.write(b"new but torn")
        raise RuntimeError("boom")
    assert store.read_bytes("out/a.out") == b"old"


def test_multipart_above_threshold(s3_bucket: str, env: dict[str, str], raw) -> None:
    store = S3Store(s3_bucket, env=env, multipart_threshold=1 * MIB, part_size=5 * MIB)
    data = os.urandom(11 * MIB + 123)
    with store.writer("big/file.out") as stream:
        for offset in range(0, len(data), MIB):
            stream.write(data[offset : offset + MIB])
    assert store.read_bytes("big/file.out") == data
    head = raw.head_object(Bucket=s3_bucket, Key="big/file.out")
    assert head["ETag"].strip('"').endswith("-3"), "three parts: 5 MiB + 5 MiB + the rest"
    assert in_progress_uploads(raw, s3_bucket) == []


def test_failed_multipart_is_aborted(s3_bucket: str, env: dict[str, str], raw, monkeypatch) -> None:
    store = S3Store(s3_bucket, env=env, multipart_threshold=1 * MIB, part_size=5 * MIB)
    real_upload_part = store.client.upload_part
    calls = []

    def flaky_upload_part(**kwargs):
        calls.append(kwargs["PartNumber"])
        if kwargs["PartNumber"] == 2:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "InternalError", "Message": "injected"}}, "UploadPart")
        return real_upload_part(**kwargs)

    monkeypatch.setattr(store.client, "upload_part", flaky_upload_part)
    with pytest.raises(StorageError, match=f"multipart upload of s3://{s3_bucket}/big/bad.out failed"):
        store.write_bytes("big/bad.out", os.urandom(6 * MIB))
    assert calls == [1, 2]
    assert not store.exists("big/bad.out")
    assert in_progress_uploads(raw, s3_bucket) == []


def test_size_mismatch_after_upload_is_an_error(s3_bucket: str, env: dict[str, str], monkeypatch) -> None:
    store = S3Store(s3_bucket, env=env)
    real_put = store.client.put_object
    monkeypatch.setattr(store.client, "put_object", lambda **kw: real_put(**{**kw, "Body": kw["Body"][:-1]}))
    with pytest.raises(StorageError, match="not confirmed: wrote 5 bytes, HEAD found 4 bytes"):
        store.write_bytes("short.out", b"12345")


def test_missing_bucket_is_not_found(env: dict[str, str]) -> None:
    store = S3Store("bl-no-such-bucket", env=env)
    with pytest.raises(NotFound, match="bucket bl-no-such-bucket does not exist"):
        list(store.list(""))
    with pytest.raises(NotFound):
        store.read_bytes("x")


def test_remove_stale_multipart_uploads(s3_bucket: str, env: dict[str, str], raw) -> None:
    raw.create_multipart_upload(Bucket=s3_bucket, Key="out/killed.out")
    raw.create_multipart_upload(Bucket=s3_bucket, Key="elsewhere/x.out")
    store = S3Store(s3_bucket, env=env)
    # moto reports a fixed Initiated time (2010), so "recent" here means younger than a few centuries.
    assert store.remove_stale_temps("out/", older_than_s=10**10) == [], (
        "recent uploads may still be in flight"
    )
    assert store.remove_stale_temps("out/", older_than_s=0) == [f"s3://{s3_bucket}/out/killed.out"]
    assert [u["Key"] for u in in_progress_uploads(raw, s3_bucket)] == ["elsewhere/x.out"]
