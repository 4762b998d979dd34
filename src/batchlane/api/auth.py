"""AWS Signature Version 4 verification for the control plane, and the keys it accepts.

Every request must carry ``Authorization: AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/SERVICE/aws4_request,
SignedHeaders=…, Signature=…`` made with a key the server is configured with. The server recomputes the signature
with botocore's own ``SigV4Auth`` over what it received (method, raw path, raw query, the headers the client says it
signed, the SHA-256 of the body) and compares the two in constant time, so any change to the body, the target action,
the host or the time breaks the signature. Checked in this order, each failure a 403 in AWS's words:

=================================  ==============================================================================
``MissingAuthenticationToken``     no ``Authorization`` header
``IncompleteSignature``            not ``AWS4-HMAC-SHA256``; Credential/SignedHeaders/Signature missing or malformed;
                                   no ``X-Amz-Date``; ``host`` or ``x-amz-date`` not signed
``RequestExpired``                 ``X-Amz-Date`` more than 15 minutes before or after the server's clock
``InvalidClientTokenId``           an access key the server does not know
``SignatureDoesNotMatch``          scope date, region or service wrong; a signed header missing; a body that does not
                                   match a signed ``x-amz-content-sha256``; or simply a different signature (wrong
                                   secret, tampered body/headers/path)
``AccessDeniedException``          a valid signature, but the key's ``allow`` patterns exclude the action
=================================  ==============================================================================

Not supported: presigned URLs (query-string auth), SigV4a, streaming (chunked) signatures. A session token header
is signed like any header but not checked, since the server issues none.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase

from batchlane.api.protocol import AwsError

MAX_SKEW_S = 15 * 60  # AWS's window for X-Amz-Date
ALGORITHM = "AWS4-HMAC-SHA256"
_TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
ACCESS_KEY_PATTERN = re.compile(r"[A-Za-z0-9_.+=@-]{1,128}")


@dataclass(frozen=True)
class AccessKey:
    """A key pair the server accepts. ``allow`` holds ``service:Action`` patterns (``fnmatch``; default ``*``),
    e.g. ``("sagemaker:Describe*", "sagemaker:List*", "sqs:*")`` for a key that may read jobs and use the queue."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    allow: tuple[str, ...] = ("*",)

    def may(self, service: str, action: str) -> bool:
        target = f"{service}:{action}"
        return any(fnmatchcase(target, pattern) for pattern in self.allow)


@dataclass(frozen=True)
class SignedRequest:
    """What the verifier needs from an HTTP request, exactly as received (path and query still percent-encoded)."""

    method: str
    scheme: str
    raw_path: str
    query_string: str
    headers: Sequence[tuple[str, str]]  # (lower-case name, value), in order, duplicates kept
    body: bytes

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key == name]
        return ",".join(values) if values else None


def _denied(code: str, message: str) -> AwsError:
    return AwsError(code, message, status=403)


def _parse_authorization(value: str) -> dict[str, str]:
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise _denied(
            "IncompleteSignature",
            f"Authorization header requires the '{ALGORITHM}' algorithm (Signature Version 4)",
        )
    parts: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, val = item.strip().partition("=")
        if sep:
            parts[key.strip()] = val.strip()
    for required in ("Credential", "SignedHeaders", "Signature"):
        if not parts.get(required):
            raise _denied("IncompleteSignature", f"Authorization header requires '{required}' parameter")
    return parts


class SigV4Verifier:
    """Verifies requests against ``keys`` for ``region``; ``clock`` (Unix seconds) is injectable for tests."""

    def __init__(
        self,
        keys: Iterable[AccessKey],
        region: str,
        *,
        max_skew_s: float = MAX_SKEW_S,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.keys: Mapping[str, AccessKey] = {key.access_key_id: key for key in keys}
        self.region = region
        self.max_skew_s = max_skew_s
        self._clock = clock or time.time

    def verify(self, request: SignedRequest, service: str) -> AccessKey:
        """The key that signed ``request`` for ``service``; ``AwsError`` (403) saying why not otherwise."""
        authorization = request.header("authorization")
        if not authorization:
            raise _denied("MissingAuthenticationToken", "Request is missing Authentication Token")
        parts = _parse_authorization(authorization)
        scope = parts["Credential"].split("/")
        if len(scope) != 5 or scope[4] != "aws4_request":
            raise _denied(
                "IncompleteSignature",
                "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term",
            )
        key_id, scope_date, scope_region, scope_service, _ = scope
        signed = [name.strip().lower() for name in parts["SignedHeaders"].split(";") if name.strip()]
        for required in ("host", "x-amz-date"):
            if required not in signed:
                raise _denied(
                    "IncompleteSignature", f"'{required}' must be a SignedHeader in the AWS Authorization"
                )
        amz_date = request.header("x-amz-date")
        if not amz_date:
            raise _denied(
                "IncompleteSignature", "Authorization header requires existence of a 'X-Amz-Date' header"
            )
        try:
            moment = datetime.strptime(amz_date, _TIMESTAMP_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            raise _denied(
                "IncompleteSignature", f"X-Amz-Date {amz_date!r} is not in the form YYYYMMDDTHHMMSSZ"
            ) from None
        self._check_time(amz_date, moment.timestamp())
        key = self.keys.get(key_id)
        if key is None:
            raise _denied("InvalidClientTokenId", "The security token included in the request is invalid.")
        if scope_date != amz_date[:8]:
            raise _denied(
                "SignatureDoesNotMatch",
                f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
                f"'{scope_date}' != '{amz_date[:8]}'",
            )
        if scope_service != service:
            raise _denied(
                "SignatureDoesNotMatch", f"Credential should be scoped to correct service: '{service}'."
            )
        if scope_region != self.region:
            raise _denied(
                "SignatureDoesNotMatch",
                f"Credential should be scoped to a valid region: this server is '{self.region}', "
                f"not '{scope_region}'.",
            )
        present = {name for name, _ in request.headers}
        missing = [name for name in signed if name not in present]
        if missing:
            raise _denied("SignatureDoesNotMatch", f"signed header {missing[0]!r} is not in the request")
        content_sha = request.header("x-amz-content-sha256")
        if "x-amz-content-sha256" in signed and content_sha != hashlib.sha256(request.body).hexdigest():
            raise _denied(
                "SignatureDoesNotMatch",
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            )
        expected = _signature(request, key, signed, amz_date, scope_region, scope_service)
        if not hmac.compare_digest(expected.encode(), parts["Signature"].encode()):
            raise _denied(
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. Check your AWS "
                "Secret Access Key and signing method.",
            )
        return key

    def _check_time(self, amz_date: str, signed_at: float) -> None:
        now = self._clock()
        fmt = lambda t: datetime.fromtimestamp(t, UTC).strftime(_TIMESTAMP_FORMAT)  # noqa: E731
        minutes = int(self.max_skew_s // 60)
        if signed_at < now - self.max_skew_s:
            raise _denied(
                "RequestExpired",
                f"Signature expired: {amz_date} is now earlier than {fmt(now - self.max_skew_s)} "
                f"({fmt(now)} - {minutes} min.)",
            )
        if signed_at > now + self.max_skew_s:
            raise _denied(
                "RequestExpired",
                f"Signature not yet current: {amz_date} is still later than {fmt(now + self.max_skew_s)} "
                f"({fmt(now)} + {minutes} min.)",
            )


@functools.cache
def _signer_class() -> type:
    """botocore's ``SigV4Auth``, signing exactly the headers the client listed (botocore would otherwise drop a few
    it never signs itself, e.g. ``user-agent``, and the signatures would differ). Built on first use: botocore is
    only needed when authentication is on."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import HTTPHeaders

    class ListedHeadersSigV4Auth(SigV4Auth):
        def headers_to_sign(self, request: object) -> HTTPHeaders:
            headers = HTTPHeaders()
            for name, value in request.headers.items():  # type: ignore[attr-defined]
                headers[name.lower()] = value
            return headers

    return ListedHeadersSigV4Auth


def _signature(
    request: SignedRequest, key: AccessKey, signed: list[str], amz_date: str, region: str, service: str
) -> str:
    """The hex signature botocore's ``SigV4Auth`` computes for ``request`` signed with ``key`` at ``amz_date``."""
    from botocore.awsrequest import AWSRequest, HTTPHeaders
    from botocore.credentials import Credentials

    headers = HTTPHeaders()
    wanted = set(signed)
    for name, value in request.headers:
        if name in wanted:
            headers[name] = (
                value  # HTTPHeaders appends: repeated headers are signed as "v1,v2", as botocore does
            )
    url = f"{request.scheme}://{request.header('host') or ''}{request.raw_path or '/'}"
    if request.query_string:
        url += "?" + request.query_string
    aws_request = AWSRequest(method=request.method.upper(), url=url, headers=headers, data=request.body)
    aws_request.context["timestamp"] = amz_date
    signer = _signer_class()(Credentials(key.access_key_id, key.secret_access_key), service, region)
    canonical = signer.canonical_request(aws_request)
    return signer.signature(signer.string_to_sign(aws_request, canonical), aws_request)
