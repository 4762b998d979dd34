"""``S3Store``: an S3 bucket through boto3, on any endpoint (AWS, MinIO, moto's server).

Endpoint: ``AWS_ENDPOINT_URL_S3`` > ``AWS_ENDPOINT_URL`` > boto3's default; region: ``AWS_REGION`` >
``AWS_DEFAULT_REGION`` > ``us-east-1``; credentials from ``env`` when it carries them, else boto3's chain. With a
custom endpoint the client uses path-style addressing and only sends checksums S3 requires, which MinIO and moto
accept. boto3 is imported when the first client is built, never at module import.

Reliability (docs/reliability.md):

* 5xx, throttling and connection errors are retried by botocore's ``standard`` retry mode (5 attempts).
* ``writer`` buffers into a spooled temp file (memory up to the threshold, then disk) and uploads only on a clean
  exit: one ``PutObject`` below ``multipart_threshold``, otherwise a multipart upload that is aborted if any part or
  the completion fails, so no incomplete upload is left behind by us. Success is confirmed by a ``HeadObject`` whose
  size must equal what was written; anything else is a ``StorageError``.
* A runner killed mid-upload can still leave an incomplete upload; ``remove_stale_temps`` aborts old ones.
* Decision: keys ending in ``/`` (zero-byte "folder" markers made by consoles) are not listed; they hold no data.

Errors: a missing bucket or key is ``NotFound``; everything else (access denied, endpoint down after retries, size
mismatch) is ``StorageError`` naming the ``s3://`` URI.
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

from batchlane import settings
from batchlane.errors import NotFound, StorageError, ValidationError
from batchlane.storage.base import MAX_KEY_BYTES, ObjectInfo

MIB = 1 << 20
# S3's own limits: parts are 5 MiB..5 GiB except the last, and at most 10,000 of them.
MIN_PART_SIZE = 5 * MIB
MAX_PARTS = 10_000
DEFAULT_MULTIPART_THRESHOLD = 16 * MIB
DEFAULT_PART_SIZE = 16 * MIB

_clients: dict[tuple[Any, ...], Any] = {}
_clients_lock = threading.Lock()


def make_s3_client(env: Mapping[str, str] | None = None) -> Any:
    """A boto3 S3 client configured from ``env`` (see the module docstring); cached per configuration."""
    env = os.environ if env is None else env
    endpoint = env.get(settings.AWS_ENDPOINT_URL_S3) or env.get(settings.AWS_ENDPOINT_URL) or None
    region = env.get(settings.AWS_REGION) or env.get(settings.AWS_DEFAULT_REGION) or "us-east-1"
    credentials = {
        "aws_access_key_id": env.get(settings.AWS_ACCESS_KEY_ID) or None,
        "aws_secret_access_key": env.get(settings.AWS_SECRET_ACCESS_KEY) or None,
        "aws_session_token": env.get(settings.AWS_SESSION_TOKEN) or None,
    }
    cache_key = (endpoint, region, tuple(credentials.values()))
    with _clients_lock:
        client = _clients.get(cache_key)
        if client is not None:
            return client
        import boto3
        from botocore.config import Config

        options: dict[str, Any] = {
            "retries": {"mode": "standard", "max_attempts": 5},
            "connect_timeout": 10,
            "read_timeout": 120,
            "max_pool_connections": 32,
        }
        if endpoint:
            options["s3"] = {"addressing_style": "path"}
            options["request_checksum_calculation"] = "when_required"
            options["response_checksum_validation"] = "when_required"
        try:
            config = Config(**options)
        except TypeError:  # botocore older than 1.36 has no checksum options
            options.pop("request_checksum_calculation", None)
            options.pop("response_checksum_validation", None)
            config = Config(**options)
        session = boto3.session.Session(region_name=region, **{k: v for k, v in credentials.items() if v})
        client = session.client("s3", endpoint_url=endpoint, config=config)
        _clients[cache_key] = client
        return client


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _is_missing(exc: BaseException) -> bool:
    return _error_code(exc) in ("404", "NoSuchKey", "NotFound", "NoSuchBucket")


class S3Store:
    """An object store over one S3 bucket. ``client`` defaults to ``make_s3_client(env)``.

    ``multipart_threshold`` and ``part_size`` tune uploads (parts are at least 5 MiB, as S3 requires); ``page_size``
    is the ``MaxKeys`` of each ``ListObjectsV2`` page.
    """

    def __init__(
        self,
        bucket: str,
        client: Any | None = None,
        *,
        env: Mapping[str, str] | None = None,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        part_size: int = DEFAULT_PART_SIZE,
        page_size: int = 1000,
    ) -> None:
        if not bucket:
            raise ValidationError("S3 bucket name must not be empty")
        if not 1 <= page_size <= 1000:
            raise ValidationError(f"page_size must be between 1 and 1000, got {page_size}")
        self.bucket = bucket
        self.url = f"s3://{bucket}"
        self._client = client
        self._env = env
        self.multipart_threshold = max(1, multipart_threshold)
        self.part_size = max(MIN_PART_SIZE, part_size)
        self.page_size = page_size

    def __repr__(self) -> str:
        return f"S3Store({self.bucket!r})"

    @property
    def client(self) -> Any:
        """The boto3 client, built on first use."""
        if self._client is None:
            self._client = make_s3_client(self._env)
        return self._client

    def _check_key(self, key: str) -> None:
        if not isinstance(key, str) or not key:
            raise ValidationError("S3 object key must be a non-empty string")
        if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
            raise ValidationError(f"S3 object key {key[:200]!r}... is longer than {MAX_KEY_BYTES} bytes")

    def _fail(self, action: str, key: str, exc: BaseException) -> Exception:
        """The exception to raise for a boto3 failure: NotFound for a missing bucket/key, else StorageError."""
        target = self.url_for(key) if key else self.url
        if _error_code(exc) == "NoSuchBucket":
            return NotFound(f"bucket {self.bucket} does not exist ({action} {target})")
        if _is_missing(exc):
            return NotFound(f"object {target} does not exist")
        return StorageError(f"{action} {target} failed: {exc}")

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (raw string match), sorted by key, one page at a time."""
        from botocore.exceptions import BotoCoreError, ClientError

        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket, Prefix=prefix, PaginationConfig={"PageSize": self.page_size}
        )
        try:
            for page in pages:
                for item in page.get("Contents", ()):
                    if not item["Key"].endswith("/"):
                        yield ObjectInfo(item["Key"], int(item["Size"]))
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("listing", prefix, exc) from exc

    def info(self, key: str) -> ObjectInfo | None:
        """``ObjectInfo`` from a HEAD of exactly ``key``, or None if it does not exist."""
        from botocore.exceptions import BotoCoreError, ClientError

        self._check_key(key)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _is_missing(exc) and _error_code(exc) != "NoSuchBucket":
                return None
            raise self._fail("HEAD", key, exc) from exc
        except BotoCoreError as exc:
            raise self._fail("HEAD", key, exc) from exc
        return ObjectInfo(key, int(head["ContentLength"]))

    def open(self, key: str) -> BinaryIO:
        """A buffered streaming reader of the object; read errors surface as ``StorageError``."""
        from botocore.exceptions import BotoCoreError, ClientError

        self._check_key(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("GET", key, exc) from exc
        return io.BufferedReader(_Body(response["Body"], self.url_for(key)), buffer_size=MIB)  # type: ignore[return-value]

    def open_range(self, key: str, start: int, end: int) -> BinaryIO:
        """A buffered streaming reader of bytes ``start`` to ``end`` (exclusive) of the object: one ranged GET
        (a part of a large input, docs/parts.md)."""
        from botocore.exceptions import BotoCoreError, ClientError

        self._check_key(key)
        if end <= start:
            return io.BytesIO(b"")
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end - 1}")
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("GET", key, exc) from exc
        return io.BufferedReader(_Body(response["Body"], self.url_for(key)), buffer_size=MIB)  # type: ignore[return-value]

    def read_bytes(self, key: str) -> bytes:
        with self.open(key) as stream:
            return stream.read()

    @contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        """Buffer the object locally; upload it (verified by HEAD) only when the block exits cleanly."""
        self._check_key(key)
        with tempfile.SpooledTemporaryFile(max_size=self.multipart_threshold, mode="w+b") as buffer:
            yield buffer  # type: ignore[misc]
            size = buffer.seek(0, io.SEEK_END)
            buffer.seek(0)
            if size < self.multipart_threshold:
                self._put(key, buffer.read())
            else:
                self._multipart(key, buffer, size)
        self._verify(key, size)

    def _put(self, key: str, data: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data)
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("PUT", key, exc) from exc

    def _multipart(self, key: str, buffer: BinaryIO, size: int) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        part_size = max(self.part_size, -(-size // MAX_PARTS))
        try:
            upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("starting multipart upload of", key, exc) from exc
        try:
            parts = []
            number = 1
            while chunk := buffer.read(part_size):
                answer = self.client.upload_part(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk
                )
                parts.append({"PartNumber": number, "ETag": answer["ETag"]})
                number += 1
            # botocore raises for a 200 answer that embeds an error (docs/reliability.md).
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException as exc:
            self._abort(key, upload_id)
            if isinstance(exc, ClientError | BotoCoreError):
                raise self._fail("multipart upload of", key, exc) from exc
            raise

    def _abort(self, key: str, upload_id: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        # Best effort: a bucket lifecycle rule (AbortIncompleteMultipartUpload) is the backstop.
        with suppress(ClientError, BotoCoreError):
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

    def _verify(self, key: str, size: int) -> None:
        info = self.info(key)
        if info is None or info.size != size:
            found = "nothing" if info is None else f"{info.size} bytes"
            raise StorageError(
                f"upload of {self.url_for(key)} not confirmed: wrote {size} bytes, HEAD found {found}"
            )

    def write_bytes(self, key: str, data: bytes) -> None:
        with self.writer(key) as stream:
            stream.write(data)

    def exists(self, key: str) -> bool:
        return self.info(key) is not None

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        self._check_key(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if not _is_missing(exc) or _error_code(exc) == "NoSuchBucket":
                raise self._fail("DELETE", key, exc) from exc
        except BotoCoreError as exc:
            raise self._fail("DELETE", key, exc) from exc

    def url_for(self, key: str) -> str:
        return f"{self.url}/{key}"

    def remove_stale_temps(self, prefix: str = "", older_than_s: float = 3600.0) -> list[str]:
        """Abort incomplete multipart uploads under ``prefix`` started more than ``older_than_s`` ago (a writer
        killed mid-upload leaves one behind, billed until aborted); returns their ``s3://`` URIs. Same name and
        meaning as ``LocalStore.remove_stale_temps``, so a resuming runner can clean either store."""
        from botocore.exceptions import BotoCoreError, ClientError

        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
        aborted: list[str] = []
        try:
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                for upload in page.get("Uploads", ()):
                    if upload["Initiated"] <= cutoff:
                        self._abort(upload["Key"], upload["UploadId"])
                        aborted.append(self.url_for(upload["Key"]))
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("listing multipart uploads under", prefix, exc) from exc
        return aborted


class _Body(io.RawIOBase):
    """Adapts botocore's StreamingBody to ``io`` so it can be buffered, turning read failures into StorageError."""

    def __init__(self, body: Any, url: str) -> None:
        self._body = body
        self._url = url

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        from botocore.exceptions import BotoCoreError

        try:
            data = self._body.read(len(buffer))
        except (BotoCoreError, OSError) as exc:
            raise StorageError(f"reading {self._url} failed: {exc}") from exc
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()
