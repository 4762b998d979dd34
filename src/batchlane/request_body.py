"""Reading an HTTP request body under a size cap, shared by the serving container and the control plane.

The cap is enforced twice: by the declared ``Content-Length`` before anything is read, and while streaming (a
chunked body declares no length). Each app says how "too large" looks to its clients (``too_large``).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request

TooLarge = Callable[[str], BaseException]
"""Builds the error to raise from a description of the size: ``"7340033 bytes"`` or ``"more than 6291456 bytes"``."""


def check_declared_size(request: Request, limit: int, too_large: TooLarge) -> None:
    """Raise ``too_large`` when the declared ``Content-Length`` exceeds ``limit`` bytes (0: no limit)."""
    declared = request.headers.get("content-length", "")
    if limit and declared.isdigit() and int(declared) > limit:
        raise too_large(f"{int(declared)} bytes")


async def read_capped_body(request: Request, limit: int, too_large: TooLarge) -> bytes:
    """The request body; ``too_large`` once more than ``limit`` bytes (0: no limit) are declared or streamed."""
    check_declared_size(request, limit, too_large)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if limit and size > limit:
            raise too_large(f"more than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
