"""``ServerConfig``: everything ``batchlane control-plane`` is started with, and where its access keys come from.

Keys, first match wins (``load_keys``):

1. ``--access-key`` + ``--secret-key`` (or ``$BATCHLANE_ACCESS_KEY_ID`` + ``$BATCHLANE_SECRET_ACCESS_KEY``): one key;
2. ``--credentials-file`` (or ``$BATCHLANE_CREDENTIALS_FILE``): an INI file in the AWS credentials format, one
   section per key, each with ``aws_access_key_id``, ``aws_secret_access_key`` and optionally ``allow`` (``service:
   Action`` patterns separated by commas or spaces, default ``*``)::

       [admin]
       aws_access_key_id = AKIDADMIN
       aws_secret_access_key = ...

       [reader]
       aws_access_key_id = AKIDREADER
       aws_secret_access_key = ...
       allow = sagemaker:Describe*, sagemaker:List*

Without any key the server refuses to start unless ``--no-auth`` is given, and ``--no-auth`` is only accepted on a
loopback address (docs/reliability.md: an unauthenticated job API on a network is remote code execution waiting
to happen).
"""

from __future__ import annotations

import configparser
import ipaddress
import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from batchlane import settings
from batchlane.api.auth import ACCESS_KEY_PATTERN, AccessKey
from batchlane.errors import ValidationError
from batchlane.models import ModelSpec

log = logging.getLogger(__name__)

DEFAULT_SERVER_PORT = 8443
# SQS bodies are capped at 1 MiB, but botocore writes JSON with ensure_ascii: a character of 2 UTF-8 bytes becomes a
# 6-byte \uXXXX escape, so a legal 1 MiB message can arrive as up to 3 MiB of JSON. Anything larger is refused
# before it is read into memory.
DEFAULT_MAX_BODY_BYTES = 3 * (1 << 20) + 64 * 1024
DEFAULT_LEASE_S = 30.0
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address or a host name) only reaches this machine."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerConfig:
    """Settings of one control-plane server (see ``batchlane control-plane --help`` for each)."""

    db: Path
    queue: str | None = None
    host: str = "127.0.0.1"
    port: int = DEFAULT_SERVER_PORT
    keys: tuple[AccessKey, ...] = ()
    auth: bool = True
    region: str = "us-east-1"
    account: str = "000000000000"
    allowed_hosts: tuple[str, ...] = ()
    allowed_paths: tuple[Path, ...] = ()
    workers: int = 2
    lease_s: float = DEFAULT_LEASE_S
    queue_worker: bool = True
    worker_model: str | ModelSpec | None = None
    requeue_failed: int = 0
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    env: Mapping[str, str] | None = field(default=None, repr=False)  # None: os.environ

    def __post_init__(self) -> None:
        if self.auth and not self.keys:
            raise ValidationError(
                "batchlane control-plane needs an access key: pass --access-key and --secret-key (or set "
                f"{settings.BATCHLANE_ACCESS_KEY_ID} and {settings.BATCHLANE_SECRET_ACCESS_KEY}), or "
                "--credentials-file; --no-auth turns authentication off on a loopback address",
                field="--access-key",
            )
        if not self.auth and not is_loopback(self.host):
            raise ValidationError(
                f"--no-auth is only allowed when binding a loopback address, not {self.host}: anyone who can "
                "reach the port could read and write files as this user",
                field="--no-auth",
            )
        if self.workers < 0:
            raise ValidationError("--workers must be 0 or more", field="--workers")
        if not 1 <= self.lease_s <= 3600:
            raise ValidationError("--lease-seconds must be between 1 and 3600", field="--lease-seconds")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValidationError("give --ssl-certfile and --ssl-keyfile together", field="--ssl-certfile")

    def host_allowed(self, host_header: str | None) -> bool:
        """Whether a request's ``Host`` header names this server (blocks DNS rebinding).

        Loopback binds accept ``localhost``, ``127.0.0.1``, ``::1`` and the bind address; a specific address accepts
        itself; a wildcard bind (``0.0.0.0``/``::``) accepts any host unless ``--allowed-host`` lists some. Names
        given with ``--allowed-host`` are always accepted.
        """
        if not host_header:
            return False
        name = _host_name(host_header)
        allowed = {h.lower() for h in self.allowed_hosts}
        if name in allowed:
            return True
        bind = self.host.strip("[]").lower()
        if bind in ("0.0.0.0", "::", ""):
            return not allowed
        if is_loopback(bind):
            return name in LOOPBACK_NAMES or name == bind
        return name == bind


def _host_name(host_header: str) -> str:
    """The host part of a ``Host`` header value, lower-cased, without port or IPv6 brackets."""
    value = host_header.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _key(access_key_id: str, secret: str, allow: tuple[str, ...], where: str) -> AccessKey:
    if not ACCESS_KEY_PATTERN.fullmatch(access_key_id or ""):
        raise ValidationError(
            f"{where}: the access key id must be 1-128 letters, digits or _.+=@- characters",
            field="--access-key",
        )
    if not secret or any(c.isspace() for c in secret):
        raise ValidationError(
            f"{where}: the secret key must be non-empty without spaces", field="--secret-key"
        )
    return AccessKey(access_key_id, secret, allow)


def load_credentials_file(path: Path) -> tuple[AccessKey, ...]:
    """The keys of an AWS-style INI credentials file (module docstring). Warns if others can read it."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationError(
            f"cannot read credentials file {path}: {exc}", field="--credentials-file"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("credentials file %s is readable by other users; chmod 600 it", path)
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as exc:
        raise ValidationError(
            f"credentials file {path} is not valid INI: {exc}", field="--credentials-file"
        ) from None
    keys: dict[str, AccessKey] = {}
    for section in parser.sections():
        values = parser[section]
        where = f"{path} [{section}]"
        if "aws_access_key_id" not in values or "aws_secret_access_key" not in values:
            raise ValidationError(
                f"{where} needs aws_access_key_id and aws_secret_access_key", field="--credentials-file"
            )
        allow = tuple(p for p in values.get("allow", "*").replace(",", " ").split() if p) or ("*",)
        key = _key(values["aws_access_key_id"].strip(), values["aws_secret_access_key"].strip(), allow, where)
        if key.access_key_id in keys:
            raise ValidationError(
                f"{where}: access key {key.access_key_id} is listed twice", field="--credentials-file"
            )
        keys[key.access_key_id] = key
    if not keys:
        raise ValidationError(f"credentials file {path} holds no keys", field="--credentials-file")
    return tuple(keys.values())


def load_keys(
    access_key: str | None = None,
    secret_key: str | None = None,
    credentials_file: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[AccessKey, ...]:
    """The keys the server accepts, from flags, then the environment (module docstring); empty if none."""
    env = os.environ if env is None else env
    access_key = access_key or env.get(settings.BATCHLANE_ACCESS_KEY_ID) or None
    secret_key = secret_key or env.get(settings.BATCHLANE_SECRET_ACCESS_KEY) or None
    if access_key or secret_key:
        if not (access_key and secret_key):
            raise ValidationError("give the access key and the secret key together", field="--access-key")
        return (_key(access_key, secret_key, ("*",), "--access-key"),)
    file = credentials_file or (
        Path(env[settings.BATCHLANE_CREDENTIALS_FILE])
        if env.get(settings.BATCHLANE_CREDENTIALS_FILE)
        else None
    )
    return load_credentials_file(file.expanduser()) if file else ()
