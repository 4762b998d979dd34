"""Content-type names and header parsing shared by the server, the codecs and the transform engine."""

from __future__ import annotations

JSON = "application/json"
JSONLINES = "application/jsonlines"
CSV = "text/csv"
TEXT = "text/plain"
NPY = "application/x-npy"
OCTET = "application/octet-stream"
ANY = "*/*"

# Spellings seen in the wild for JSON Lines; all normalise to JSONLINES.
JSONLINES_ALIASES = frozenset(
    {JSONLINES, "application/x-jsonlines", "application/jsonl", "application/x-ndjson"}
)


def normalize(content_type: str | None) -> str:
    """Lower-case media type without parameters (``"Text/CSV; charset=utf-8"`` -> ``"text/csv"``).

    Unlike the SageMaker inference toolkit, parameters such as ``charset`` do not make a type unknown.
    """
    if not content_type:
        return ""
    media = content_type.split(";", 1)[0].strip().lower()
    return JSONLINES if media in JSONLINES_ALIASES else media


def charset(content_type: str | None, default: str = "utf-8") -> str:
    """The ``charset`` parameter of a Content-Type header, or ``default``."""
    if content_type:
        for part in content_type.split(";")[1:]:
            name, _, value = part.partition("=")
            if name.strip().lower() == "charset" and value.strip():
                return value.strip().strip('"').lower()
    return default


def parse_accept(accept: str | None, default: str) -> list[str]:
    """Media types from an Accept header, best first (q-values honoured, ties keep header order).

    A missing header or a bare ``*/*`` becomes ``[default]`` as in the SageMaker toolkit.
    """
    if not accept or accept.strip() in ("", ANY):
        return [default]
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept.split(",")):
        fields = [f.strip() for f in part.split(";")]
        media = normalize(fields[0])
        if not media:
            continue
        quality = 1.0
        for param in fields[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            ranked.append((-quality, position, media))
    return [media for _, _, media in sorted(ranked)] or [default]
